"""Fixtures shared by the store and registry suites; a backend's test class overrides
``store_factory`` (required) and, for a fake clock, ``clock`` and ``advance_time``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

import pytest
import pytest_asyncio

from ..core.store import SessionKVStore
from ..core.types import StoreSemantics
from .clock import ManualClock

StoreFactory = Callable[[str], SessionKVStore]
"""Makes a new, unstarted store in the given namespace. Two stores made with one
namespace must share data when the store declares ``shared_across_processes``."""

StoreURLFactory = Callable[[str], str]
"""The URL of the store in the given namespace, for ``create_store`` in a child process."""

Clock = Callable[[], float]
AdvanceTime = Callable[[float], Awaitable[None]]

# TTLs the suites use: short ones for timing checks (raised to what the backend
# honours), long ones for everything that must not expire during a test.
SHORT_TTL = 0.6
LONG_TTL = 300.0


class ContractFixtures:
    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio, pytest.mark.contract]

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        pytest.fail(
            f"{type(self).__name__} must define a `store_factory` fixture returning "
            "`lambda namespace: YourStore(..., namespace=namespace)`; see the backend guide",
            pytrace=False,
        )

    @pytest.fixture
    def store_url(self) -> StoreURLFactory | None:
        """``lambda namespace: "yourscheme://...?namespace=" + namespace``: the URL of the
        store ``store_factory`` makes, which ``create_store`` opens in another process.
        Required when the store declares ``shared_across_processes``: the suite then
        proves the claim from a second OS process."""
        return None

    @pytest.fixture
    def clock(self) -> Clock:
        """The time source the store's TTLs follow (override with a fake clock)."""
        return time.monotonic

    @pytest.fixture
    def advance_time(self) -> AdvanceTime:
        """How the suite lets time pass (override to move a fake clock)."""
        return asyncio.sleep

    @pytest.fixture
    def namespace(self) -> str:
        return f"contract-{uuid.uuid4().hex[:12]}"

    @pytest_asyncio.fixture
    async def store(
        self, store_factory: StoreFactory, namespace: str
    ) -> AsyncIterator[SessionKVStore]:
        store = store_factory(namespace)
        if not isinstance(store, SessionKVStore):
            pytest.fail(
                f"store_factory returned {type(store).__name__}, not a SessionKVStore subclass",
                pytrace=False,
            )
        await store.start()
        try:
            yield store
        finally:
            await _cleanup(store, store_factory, namespace)

    @pytest.fixture
    def semantics(self, store: SessionKVStore) -> StoreSemantics:
        return store.semantics

    @pytest.fixture
    def short_ttl(self, semantics: StoreSemantics) -> float:
        """A TTL short enough to wait out, long enough for the backend to honour."""
        return semantics.effective_ttl(max(SHORT_TTL, semantics.min_ttl))


class ManualClockFixtures:
    """Mix in before the suites for a store with an injectable clock: the suite then
    moves a :class:`~sessionkv.contract_tests.ManualClock` instead of sleeping.
    ``store_factory`` takes the ``clock`` fixture and passes it to the store::

        class TestMyStore(ManualClockFixtures, StoreContractTests, RegistryContractTests):
            @pytest.fixture
            def store_factory(self, clock):
                return lambda namespace: MyStore(namespace=namespace, clock=clock)
    """

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def advance_time(self, clock: ManualClock) -> AdvanceTime:
        return clock.sleep


async def _cleanup(store: SessionKVStore, factory: StoreFactory, namespace: str) -> None:
    """Leave a shared server as the test found it: delete the namespace's keys."""
    if store.closed:
        if not store.semantics.shared_across_processes:
            return
        store = factory(namespace)
    try:
        keys = await store.keys("")
        if keys:
            await store.delete(keys)
    finally:
        await store.close()


async def wait_past(clock: Clock, advance_time: AdvanceTime, since: float, lifetime: float) -> None:
    """Let time pass until ``lifetime`` seconds after ``since`` (plus a hair)."""
    remaining = since + lifetime - clock()
    if remaining > 0:
        await advance_time(remaining + 0.02)
