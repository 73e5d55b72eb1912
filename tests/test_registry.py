"""Registry behaviour beyond the shared contract: ownership, key scheme, records."""

from __future__ import annotations

import json

import pytest

from sessionkv import InMemorySessionKVStore, SessionInfo, SessionRegistry


@pytest.mark.asyncio
async def test_stop_closes_the_store_given_or_made() -> None:
    async with SessionRegistry() as own:
        store = own.store
    assert store.closed
    given = InMemorySessionKVStore()
    async with SessionRegistry(given):
        pass
    assert given.closed, "the seed: stop() closes the storage backend, given or made"


@pytest.mark.asyncio
async def test_close_store_false_leaves_a_shared_store_open() -> None:
    shared = InMemorySessionKVStore()
    async with SessionRegistry(shared, close_store=False), SessionRegistry(
        shared, close_store=False
    ) as second:
        await second.register("call", "s")
    assert not shared.closed
    assert await shared.keys("") == ["s/call/s"]
    await shared.close()


@pytest.mark.asyncio
async def test_records_are_json_session_info() -> None:
    store = InMemorySessionKVStore()
    async with store, SessionRegistry(store, node_id="n1") as registry:
        await registry.register("call", "sess")
        ((key, raw),) = await store.scan("")
        assert key == "s/call/sess"
        assert SessionInfo.from_dict(json.loads(raw)).node_id == "n1"


@pytest.mark.asyncio
async def test_unreadable_record_is_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    store = InMemorySessionKVStore()
    async with store, SessionRegistry(store) as registry:
        await registry.register("call", "good")
        await store.set("s/call/bad", b"not json", 30)
        assert [i.session_id for i in await registry.get_for_call("call")] == ["good"]
        assert "s/call/bad" in caplog.text


def test_session_info_round_trip_and_unknown_keys() -> None:
    info = SessionInfo("s", "c", "n", 1.0, 2.0, {"a": 1})
    data = info.to_dict()
    assert SessionInfo.from_dict({**data, "future_field": True}) == info
    for key in ("session_id", "call_id", "node_id", "started_at", "metrics_updated_at"):
        broken = dict(data)
        del broken[key]
        with pytest.raises(TypeError, match=key):
            SessionInfo.from_dict(broken)
    assert SessionInfo.from_dict({k: v for k, v in data.items() if k != "metrics"}).metrics == {}


@pytest.mark.parametrize("ttl", [float("nan"), float("inf")])
def test_ttl_must_be_finite(ttl: float) -> None:
    with pytest.raises(ValueError):
        SessionRegistry(ttl=ttl)


def test_bad_node_id_and_store() -> None:
    with pytest.raises(ValueError):
        SessionRegistry(node_id="")
    with pytest.raises(TypeError):
        SessionRegistry(store="memory://")  # type: ignore[arg-type]
