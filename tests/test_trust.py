"""Regression tests for the core items of the outside review (REVIEW.md section C,
FAULTS.md F2/F3/F6/F7): each failed on 0.1.0. Backend-specific items live in each
backend's test module; contract properties in the shipped contract suite."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import subprocess
import sys
import warnings
from typing import Any

import pytest

from sessionkv import (
    BackendUnavailableError,
    InMemorySessionKVStore,
    InvalidKeyError,
    InvalidTTLError,
    SessionKVWarning,
    SessionRegistry,
    SQLiteSessionKVStore,
    StoreClosedError,
)
from sessionkv.core.periodic import PeriodicTask

pytestmark = pytest.mark.asyncio


class SlowStart(InMemorySessionKVStore):
    """Connecting takes until `opened` is set, as a real server round trip would."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = asyncio.Event()
        self.released = 0

    async def _start(self) -> None:
        await self.opened.wait()

    async def _close(self) -> None:
        self.released += 1
        await super()._close()


async def test_c1_close_during_start_releases_and_never_reopens() -> None:
    store = SlowStart()
    starting = asyncio.ensure_future(store.start())
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0)
    store.opened.set()
    await closing
    with pytest.raises(StoreClosedError):
        await starting
    assert store.closed and store.released == 1, "what start() opened must be released"
    assert store._sweeper is None, "no background task may survive the close"
    with pytest.raises(StoreClosedError):
        await store.set("k", b"v", 10)


class Unreachable(InMemorySessionKVStore):
    """Its server is down: connecting takes a while, then fails."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def _start(self) -> None:
        self.attempts += 1
        await asyncio.sleep(0.05)
        raise ConnectionRefusedError("down")


async def test_concurrent_first_operations_share_one_start_attempt() -> None:
    store = Unreachable()
    results = await asyncio.gather(*(store.get(f"k{i}") for i in range(50)), return_exceptions=True)
    assert store.attempts == 1, "a dead server must cost one timeout, not one per caller"
    assert all(isinstance(r, BackendUnavailableError) for r in results), results[:3]
    with pytest.raises(BackendUnavailableError):
        await store.get("k")  # a later call tries again
    assert store.attempts == 2
    await store.close()


async def test_a_cancelled_first_caller_leaves_the_start_to_the_others() -> None:
    store = SlowStart()
    first = asyncio.ensure_future(store.set("a", b"1", 10))
    second = asyncio.ensure_future(store.set("b", b"2", 10))
    await asyncio.sleep(0)
    first.cancel()
    store.opened.set()
    await second
    assert await store.get("b") == b"2" and not store.closed
    await store.close()


class BreaksWhenClosed(InMemorySessionKVStore):
    """An operation that is in flight while the store closes, then fails as drivers do."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = asyncio.Event()
        self.proceed = asyncio.Event()

    async def _get(self, key: str) -> bytes | None:
        self.in_flight.set()
        await self.proceed.wait()
        raise RuntimeError("Cannot operate on a closed database.")


async def test_c12_operation_in_flight_during_close_is_store_closed_error() -> None:
    store = BreaksWhenClosed()
    reading = asyncio.ensure_future(store.get("k"))
    await store.in_flight.wait()
    await store.close()
    store.proceed.set()
    with pytest.raises(StoreClosedError) as caught:
        await reading
    assert isinstance(caught.value.__cause__, RuntimeError)


async def test_c17_periodic_stop_keeps_the_callers_cancellation() -> None:
    async def slow_job() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.2)  # unwinding takes a while

    task = PeriodicTask("test", 0.001, slow_job, jitter=0)
    task.start()
    await asyncio.sleep(0.05)  # let the job start
    after_stop: list[str] = []

    async def closer() -> None:
        await task.stop()
        after_stop.append("ran")

    closing = asyncio.ensure_future(closer())
    await asyncio.sleep(0.01)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert after_stop == [], "code after stop() ran although its task was cancelled"


async def test_c5_late_close_request_never_closes_a_new_session() -> None:
    async with SessionRegistry(node_id="n") as registry:
        await registry.request_close("call", "s1")  # never registered
        assert await registry.store.keys("c/") == [], "a request for nothing writes nothing"
        await registry.register("call", "s1")
        assert await registry.get_close_requests({"s1": "call"}) == []
        await registry.remove("call", "s1")
        await registry.request_close("call", "s1")  # late: after the remove
        await registry.register("call", "s1")
        assert await registry.get_close_requests({"s1": "call"}) == []


class Interleaving(InMemorySessionKVStore):
    """Runs `during_read` while a read is in flight: the window a network round trip
    opens between update_metrics' read and its write (REVIEW.md C6)."""

    during_read: Any = None

    async def _get(self, key: str) -> bytes | None:
        value = await super()._get(key)
        hook, self.during_read = self.during_read, None
        if hook is not None:
            await hook()
        return value


async def test_c6_update_metrics_never_writes_over_a_newer_registration() -> None:
    store = Interleaving()
    node_a = SessionRegistry(store, node_id="node-a", close_store=False)
    node_b = SessionRegistry(store, node_id="node-b", close_store=False)
    await node_a.register("call", "s")

    async def migrate() -> None:
        await node_b.remove("call", "s")
        await node_b.register("call", "s")

    store.during_read = migrate
    await node_a.update_metrics("call", "s", {"rtt": 1})
    info = await node_b.get("call", "s")
    assert info is not None and info.node_id == "node-b" and info.metrics == {}
    await store.close()


async def test_c6_update_metrics_retries_when_only_the_metrics_changed() -> None:
    store = Interleaving()
    registry = SessionRegistry(store, node_id="n")
    await registry.register("call", "s")

    async def concurrent_update() -> None:
        await registry.update_metrics("call", "s", {"other": 2})

    store.during_read = concurrent_update
    await registry.update_metrics("call", "s", {"mine": 1})
    info = await registry.get("call", "s")
    assert info is not None and info.metrics == {"mine": 1}, "the later update is not lost"
    await registry.stop()


@pytest.mark.parametrize("record", [b"[]", b"null", b"42", b'"text"', b'{"metrics": null}'])
async def test_c16_a_record_that_is_not_a_session_never_breaks_a_listing(
    record: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with SessionRegistry() as registry:
        await registry.register("call", "good")
        await registry.store.set("s/call/bad", record, 30)
        assert [i.session_id for i in await registry.get_for_call("call")] == ["good"]
        assert await registry.get("call", "bad") is None
        assert [i.session_id for i in await registry.get_all()] == ["good"]
        assert "s/call/bad" in caplog.text


async def test_f2_a_ttl_too_big_for_a_float_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="finite"):
        SessionRegistry(ttl=10**400)
    async with InMemorySessionKVStore() as store:
        with pytest.raises(InvalidTTLError):
            await store.set("k", b"v", 10**400)
        with pytest.raises(InvalidTTLError):
            await store.expire("k", ttl=10**400)
        with pytest.raises(InvalidTTLError):
            await store.mset([("k", b"v", 10**400)])


async def test_f3_lone_surrogates_are_refused_the_same_way_everywhere() -> None:
    with pytest.raises(InvalidKeyError):
        SessionRegistry(node_id="\ud800")
    async with SessionRegistry() as registry:
        for call in (
            registry.register("c", "\ud800"),
            registry.get("c", "\ud800"),
            registry.remove("c", "\ud800"),
            registry.update_metrics("c", "missing", {"\ud800": 1}),
        ):
            with pytest.raises(InvalidKeyError):
                await call


async def test_f6_a_callers_exception_is_not_a_backend_error() -> None:
    class Explodes:
        def __bool__(self) -> bool:
            raise RuntimeError("caller bug")

    async with InMemorySessionKVStore() as store:
        with pytest.raises(RuntimeError, match="caller bug"):
            await store.set("k", b"v", 5, only_if_exists=Explodes())  # type: ignore[arg-type]


async def test_f7_records_are_strict_json() -> None:
    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    async with SessionRegistry() as registry:
        await registry.register("c", "s")
        with pytest.raises(ValueError):
            await registry.update_metrics("c", "s", {"x": math.nan})
        await registry.update_metrics("c", "s", {"x": 1.5, "big": 2**63})
        ((_, raw),) = await registry.store.scan("s/")
        assert json.loads(raw, parse_constant=refuse)["metrics"] == {"x": 1.5, "big": 2**63}


async def test_registry_without_a_store_follows_sessionkv_url(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONKV_URL", f"sqlite:///{tmp_path}/env.db")
    async with SessionRegistry() as registry:
        assert isinstance(registry.store, SQLiteSessionKVStore)
        await registry.register("c", "s")
    assert registry.store.closed
    monkeypatch.delenv("SESSIONKV_URL")
    async with SessionRegistry() as registry:
        assert isinstance(registry.store, InMemorySessionKVStore)


class CoarseStore(InMemorySessionKVStore):
    SEMANTICS = dataclasses.replace(
        InMemorySessionKVStore.SEMANTICS, ttl_resolution=1.0, min_ttl=2.0, expiry_lag=1.0
    )


async def test_c7_a_ttl_below_the_stores_minimum_is_visible() -> None:
    registry = SessionRegistry(CoarseStore(), ttl=0.5)
    with pytest.warns(SessionKVWarning, match=r"applies a TTL of 2 s.*up to 3 s"):
        await registry.start()
    assert registry.effective_ttl == 2.0
    await registry.stop()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with SessionRegistry(CoarseStore(), ttl=3.0) as fine:  # whole seconds: silent
            assert fine.effective_ttl == 3.0


async def test_metrics_updated_at_is_started_at_until_the_first_update() -> None:
    async with SessionRegistry() as registry:
        await registry.register("c", "s")
        info = await registry.get("c", "s")
        assert info is not None and isinstance(info.metrics_updated_at, float)
        assert info.metrics_updated_at == info.started_at


def _exit_script(url: str) -> str:
    return (
        "import asyncio, sessionkv\n"
        "async def main():\n"
        f"    store = sessionkv.create_store({url!r})\n"
        "    await store.set('k', b'v', 60)\n"
        "    registry = sessionkv.SessionRegistry(store)\n"
        "    await registry.register('c', 's')\n"
        "    # never closed: a crashed or careless caller\n"
        "asyncio.run(main())\n"
        "print('main returned', flush=True)\n"
    )


def _assert_exits_with_warning(url: str, store_name: str) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-W", "always::ResourceWarning", "-c", _exit_script(url)],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"a process that left {store_name} open hung at exit: {exc.stdout!r}")
    assert done.returncode == 0, done.stderr
    assert "main returned" in done.stdout
    assert "ResourceWarning" in done.stderr and store_name in done.stderr, done.stderr


@pytest.mark.sqlite
async def test_no_hang_at_exit_sqlite(tmp_path: Any) -> None:
    _assert_exits_with_warning(f"sqlite:///{tmp_path}/exit.db", "SQLiteSessionKVStore")


@pytest.mark.memory
async def test_no_hang_at_exit_memory() -> None:
    _assert_exits_with_warning("memory://", "InMemorySessionKVStore")


@pytest.mark.redis
async def test_no_hang_at_exit_redis(redis_server: Any) -> None:
    _assert_exits_with_warning(redis_server.url, "RedisSessionKVStore")


@pytest.mark.etcd
async def test_no_hang_at_exit_etcd(etcd_server: Any) -> None:
    _assert_exits_with_warning(etcd_server.url, "EtcdSessionKVStore")


async def test_unreachable_server_error_is_not_closed_error() -> None:
    assert not issubclass(BackendUnavailableError, StoreClosedError)
