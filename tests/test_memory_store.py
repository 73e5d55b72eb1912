"""What the memory backend promises beyond the contract: memory is reclaimed."""

from __future__ import annotations

import asyncio

import pytest

from sessionkv import ConfigurationError, InMemorySessionKVStore, create_store
from sessionkv.contract_tests import ManualClock

pytestmark = pytest.mark.memory


@pytest.mark.asyncio
async def test_purge_frees_expired_entries_only() -> None:
    clock = ManualClock()
    async with InMemorySessionKVStore(clock=clock) as store:
        await store.mset([(f"short{i}", b"x", 1.0) for i in range(5000)])
        await store.mset([(f"long{i}", b"x", 100.0) for i in range(10)])
        clock.advance(0.5)
        assert await store.purge_expired() == 0
        clock.advance(1.0)
        assert await store.purge_expired() == 5000
        assert await store.purge_expired() == 0
        assert len(store._entries) == len(store._index) == 10
        assert len(await store.keys("long")) == 10


@pytest.mark.asyncio
async def test_refreshed_and_rewritten_keys_are_not_purged() -> None:
    clock = ManualClock()
    async with InMemorySessionKVStore(clock=clock) as store:
        await store.mset([("refreshed", b"r", 1.0), ("rewritten", b"w", 1.0)])
        await store.expire("refreshed", ttl=10.0)
        await store.set("rewritten", b"w2", 10.0)
        clock.advance(2.0)
        assert await store.purge_expired() == 0
        assert await store.mget(["refreshed", "rewritten"]) == [b"r", b"w2"]


@pytest.mark.asyncio
async def test_stale_expiry_entries_do_not_pile_up() -> None:
    clock = ManualClock()
    async with InMemorySessionKVStore(clock=clock) as store:
        await store.set("k", b"v", 1.0)
        for _ in range(10_000):
            await store.expire("k", ttl=1.0)
        await store.purge_expired()
        assert len(store._expiries) <= 2 * len(store._entries) + 1024


@pytest.mark.asyncio
async def test_background_sweep_reclaims_without_reads() -> None:
    async with InMemorySessionKVStore(sweep_interval=0.01) as store:
        await store.mset([(f"k{i}", b"x", 0.01) for i in range(100)])
        deadline = asyncio.get_running_loop().time() + 5
        while store._entries and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert not store._entries and not store._index


@pytest.mark.asyncio
async def test_close_releases_everything() -> None:
    store = InMemorySessionKVStore()
    await store.set("k", b"v", 10)
    await store.close()
    assert not store._entries and store._sweeper is None


def test_url_forms() -> None:
    store = create_store("memory://?namespace=ns&sweep_interval=0.5")
    assert isinstance(store, InMemorySessionKVStore) and store.namespace == "ns"
    for bad in ("memory://host", "memory:///path"):
        with pytest.raises(ConfigurationError):
            create_store(bad)


@pytest.mark.parametrize("interval", [0, -1])
def test_sweep_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ValueError):
        InMemorySessionKVStore(sweep_interval=interval)
