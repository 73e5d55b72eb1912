"""What the abstract base does once for every backend: lifecycle, declarations and
error mapping. The stores here are minimal subclasses, as a third party would write."""

from __future__ import annotations

import asyncio

import pytest

from sessionkv import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    InMemorySessionKVStore,
    SessionKVStore,
    StoreClosedError,
    StoreSemantics,
)


class Undeclared(InMemorySessionKVStore):
    SEMANTICS = None


class Failing(InMemorySessionKVStore):
    """Raises what a driver would raise, to check the mapping into sessionkv's tree."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def _get(self, key: str) -> bytes | None:
        raise self.error


@pytest.mark.asyncio
async def test_store_without_semantics_is_told_what_to_declare() -> None:
    store = Undeclared()
    with pytest.raises(ConfigurationError, match=r"SEMANTICS = StoreSemantics\(\.\.\.\)"):
        await store.start()
    with pytest.raises(ConfigurationError, match="declares no semantics"):
        await store.get("k")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError("refused"), BackendUnavailableError),
        (asyncio.TimeoutError(), BackendTimeoutError),
        (TimeoutError("slow"), BackendTimeoutError),
        (KeyError("driver bug"), BackendError),
    ],
)
async def test_driver_errors_are_mapped_with_their_cause(
    error: Exception, expected: type[Exception]
) -> None:
    store = Failing(error)
    with pytest.raises(expected) as caught:
        await store.get("k")
    assert caught.value.__cause__ is error
    assert isinstance(caught.value, RuntimeError)
    await store.close()


@pytest.mark.asyncio
async def test_timeout_error_is_also_a_builtin_timeout() -> None:
    with pytest.raises(TimeoutError):
        await Failing(asyncio.TimeoutError()).get("k")


@pytest.mark.asyncio
async def test_concurrent_first_operations_start_once() -> None:
    starts = 0

    class Counting(InMemorySessionKVStore):
        async def _start(self) -> None:
            nonlocal starts
            starts += 1
            await asyncio.sleep(0)
            await super()._start()

    store = Counting()
    await asyncio.gather(*(store.set(f"k{i}", b"", 10) for i in range(20)))
    assert starts == 1
    assert len(await store.keys("k")) == 20
    await store.close()


@pytest.mark.asyncio
async def test_close_before_start_never_opens() -> None:
    store = InMemorySessionKVStore()
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.get("k")


def test_semantics_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        StoreSemantics(-1, 0, 0, False, False, True)


def test_effective_ttl_rounds_up_then_applies_the_minimum() -> None:
    etcd_like = StoreSemantics(1.0, 2.0, 1.0, True, True, False)
    assert etcd_like.effective_ttl(0.6) == 2.0
    assert etcd_like.effective_ttl(2.0) == 2.0
    assert etcd_like.effective_ttl(2.1) == 3.0
    assert etcd_like.max_lifetime(2.1) == 4.0
    exact = InMemorySessionKVStore.SEMANTICS
    assert exact is not None and exact.effective_ttl(0.25) == 0.25


def test_abstract_primitives_must_be_written() -> None:
    class Incomplete(SessionKVStore):
        SEMANTICS = InMemorySessionKVStore.SEMANTICS

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]
