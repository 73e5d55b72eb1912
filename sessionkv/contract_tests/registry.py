"""The registry contract (README "The registry contract"): two registries with
different node ids sharing one backend, as two nodes of a cluster would. Inherit with
the store suite's fixtures."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from ..core.registry import SessionRegistry
from ..core.store import SessionKVStore
from ..core.types import SessionInfo, StoreSemantics
from ._base import LONG_TTL, AdvanceTime, Clock, ContractFixtures, StoreFactory

__all__ = ["TRICKY_IDS", "RegistryContractTests"]

# Ids that break naive key schemes: separators, escapes, wildcards, prefixes of each other.
TRICKY_IDS = [
    "a",
    "a/b",
    "a/",
    "/a",
    "a%",
    "a%2F",
    "a%2Fb",
    "a*",
    "a?",
    "a[b]",
    "a_",
    "a%25",
    "a\\",
    "a:b",
    "ab",
    "é",
    "日本",
    "😀",
    "a\x00",
    " ",
    "\U0010ffff",
]


class RegistryContractTests(ContractFixtures):
    """Inherit this and define a ``store_factory`` fixture to prove the registry on a backend."""

    @pytest_asyncio.fixture
    async def node_stores(
        self, store: SessionKVStore, store_factory: StoreFactory, namespace: str
    ) -> AsyncIterator[tuple[SessionKVStore, SessionKVStore]]:
        # Two connections where the backend is shared, else one store for both nodes.
        if not store.semantics.shared_across_processes:
            yield store, store
            return
        other = store_factory(namespace)
        await other.start()
        try:
            yield store, other
        finally:
            await other.close()

    @pytest.fixture
    def registry_ttl(self) -> float:
        return LONG_TTL

    @pytest_asyncio.fixture
    async def nodes(
        self, node_stores: tuple[SessionKVStore, SessionKVStore], registry_ttl: float
    ) -> AsyncIterator[tuple[SessionRegistry, SessionRegistry]]:
        # The fixtures own the stores: the registries must not close them.
        a = SessionRegistry(node_stores[0], node_id="node-a", ttl=registry_ttl, close_store=False)
        b = SessionRegistry(node_stores[1], node_id="node-b", ttl=registry_ttl, close_store=False)
        async with a, b:
            yield a, b

    # -- visibility across nodes ---------------------------------------------------------

    async def test_session_is_visible_to_other_node(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, b = nodes
        await a.register("call", "sess")
        info = await b.get("call", "sess")
        assert isinstance(info, SessionInfo), (
            "a session registered through one store must be visible through another store "
            "made by store_factory with the same namespace, when the store declares "
            "shared_across_processes=True (declare False if it is not shared)"
        )
        assert (info.call_id, info.session_id, info.node_id) == ("call", "sess", "node-a")
        assert info.metrics == {}, "a new registration has no metrics"
        assert info.metrics_updated_at == info.started_at, (
            "metrics_updated_at is a float: started_at until the first update_metrics"
        )
        assert await b.get("call", "other") is None
        assert await b.get("other", "sess") is None

    async def test_get_for_call_spans_nodes(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, b = nodes
        await a.register("call", "s1")
        await b.register("call", "s2")
        await b.register("call2", "s3")
        for registry in nodes:
            found = await registry.get_for_call("call")
            assert sorted((i.session_id, i.node_id) for i in found) == [
                ("s1", "node-a"),
                ("s2", "node-b"),
            ]
        assert await a.get_for_call("no-such-call") == []
        everything = await b.get_all()
        assert sorted((i.call_id, i.session_id) for i in everything) == [
            ("call", "s1"),
            ("call", "s2"),
            ("call2", "s3"),
        ], "get_all() must list every live session of every call"

    async def test_ids_with_any_characters_never_leak_between_calls(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, b = nodes
        for call_id in TRICKY_IDS:
            for session_id in TRICKY_IDS[:6]:
                await a.register(call_id, session_id)
        for call_id in TRICKY_IDS:
            found = await b.get_for_call(call_id)
            assert sorted(i.session_id for i in found) == sorted(TRICKY_IDS[:6]), (
                f"get_for_call({call_id!r}) is one keys/scan of a literal prefix: sessions of "
                "other calls leak in when the store matches the prefix as a pattern"
            )
            assert {i.call_id for i in found} == {call_id}
        # ("a", "b/c") and ("a/b", "c") must be two sessions.
        await a.register("x", "y/z")
        await a.register("x/y", "z")
        assert [i.session_id for i in await b.get_for_call("x")] == ["y/z"]
        assert [i.session_id for i in await b.get_for_call("x/y")] == ["z"]

    async def test_update_metrics_is_seen_by_other_node(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, b = nodes
        await a.register("call", "sess")
        await a.update_metrics("call", "sess", {"rtt_ms": 12.5, "frames": 300, "loss": None})
        info = await b.get("call", "sess")
        assert info is not None and info.metrics == {"rtt_ms": 12.5, "frames": 300, "loss": None}
        assert info.metrics_updated_at is not None and info.metrics_updated_at >= info.started_at
        await a.update_metrics("call", "sess", {"frames": 301})
        info = await b.get("call", "sess")
        assert info is not None and info.metrics == {"frames": 301}

    async def test_update_metrics_never_creates_a_session(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, b = nodes
        await a.update_metrics("call", "ghost", {"x": 1})
        assert await b.get("call", "ghost") is None
        await a.register("call", "gone")
        await b.remove("call", "gone")
        await a.update_metrics("call", "gone", {"x": 1})
        assert await a.get("call", "gone") is None
        assert await a.get_for_call("call") == []

    async def test_close_request_crosses_nodes(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, b = nodes
        mine = {"s1": "call", "s2": "call", "s3": "other-call"}
        for session_id, call_id in mine.items():
            await a.register(call_id, session_id)
        assert await a.get_close_requests(mine) == []
        await b.request_close("call", "s2")
        await b.request_close("other-call", "s1")  # same session id, another call
        assert await a.get_close_requests(mine) == ["s2"]
        assert await a.get_close_requests({}) == []

    async def test_remove_deletes_record_and_close_request(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, b = nodes
        await a.register("call", "sess")
        await b.request_close("call", "sess")
        await a.remove("call", "sess")
        assert await b.get("call", "sess") is None
        await a.register("call", "sess")
        assert await a.get_close_requests({"sess": "call"}) == []
        await a.remove("call", "never-registered")  # a no-op, not an error

    # -- TTL and refresh --------------------------------------------------------------------

    async def test_unrefreshed_session_expires_refreshed_one_lives(
        self,
        node_stores: tuple[SessionKVStore, SessionKVStore],
        short_ttl: float,
        semantics: StoreSemantics,
        clock: Clock,
        advance_time: AdvanceTime,
    ) -> None:
        # Refreshing every quarter TTL tolerates a stall of three quarters of one, so on
        # a real clock the TTL is long enough that a loaded machine cannot fail it.
        ttl = semantics.effective_ttl(max(short_ttl, 1.5))
        a = SessionRegistry(node_stores[0], node_id="node-a", ttl=ttl)
        b = SessionRegistry(node_stores[1], node_id="node-b", ttl=ttl)
        await a.register("call", "kept")
        await a.register("call", "dropped")
        await b.request_close("call", "kept")
        registered = clock()
        deadline = registered + semantics.max_lifetime(ttl)
        while clock() < deadline:  # refresh "kept" well within each TTL
            await a.refresh({"kept": "call"})
            await advance_time(ttl / 4)
        await a.refresh({"kept": "call"})
        assert [i.session_id for i in await b.get_for_call("call")] == ["kept"]
        assert await b.get("call", "dropped") is None
        assert await a.get_close_requests({"kept": "call", "dropped": "call"}) == ["kept"]
        # refresh never resurrects an expired or removed session
        await a.refresh({"dropped": "call"})
        await b.remove("call", "kept")
        await a.refresh({"kept": "call"})
        assert await b.get_for_call("call") == []
        assert await a.get_close_requests({"kept": "call", "dropped": "call"}) == []

    # -- arguments ---------------------------------------------------------------------------

    async def test_bad_ids_are_rejected(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, _ = nodes
        with pytest.raises(ValueError):
            await a.register("", "sess")
        with pytest.raises(ValueError):
            await a.register("call", "")
        with pytest.raises(TypeError):
            await a.register(1, "sess")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await a.get_for_call(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await a.refresh([("sess", "call")])  # type: ignore[arg-type, unused-ignore]
        with pytest.raises(TypeError):
            await a.update_metrics("call", "sess", {"x": "text"})
        assert await a.get_for_call("call") == []

    async def test_ttl_and_node_id_defaults(self, store: SessionKVStore) -> None:
        for bad in (0, -1, 0.0):
            with pytest.raises(ValueError, match="ttl must be > 0"):
                SessionRegistry(store, ttl=bad)
        registry = SessionRegistry(store)
        assert str(uuid.UUID(registry.node_id)) == registry.node_id
        assert registry.node_id != SessionRegistry(store).node_id

    # -- lifecycle rules (README "Use it") --------------------------------------------------------

    async def test_close_request_for_a_missing_session_changes_nothing(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, b = nodes
        await b.request_close("call", "never")  # never registered
        await a.register("call", "never")
        await a.register("call", "gone")
        await a.remove("call", "gone")
        await b.request_close("call", "gone")  # late: after the remove
        await a.register("call", "gone")
        assert await a.get_close_requests({"never": "call", "gone": "call"}) == [], (
            "a close request belongs to the registration it was made for: a request for "
            "a session that was not registered must not close a later session with that id"
        )

    async def test_register_again_starts_without_a_close_request(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, b = nodes
        await a.register("call", "s")
        await b.request_close("call", "s")
        assert await a.get_close_requests({"s": "call"}) == ["s"]
        await b.register("call", "s")  # the session moved to node b
        assert await b.get_close_requests({"s": "call"}) == [], (
            "register starts a session with no pending close request"
        )

    async def test_update_metrics_never_overwrites_a_newer_registration(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, b = nodes
        await a.register("call", "moving")

        async def updates() -> None:
            for i in range(40):
                await a.update_metrics("call", "moving", {"i": i})

        async def moves() -> None:
            for _ in range(20):
                await b.remove("call", "moving")
                await b.register("call", "moving")

        await asyncio.gather(updates(), moves())
        info = await a.get("call", "moving")
        assert info is not None and info.node_id == "node-b", (
            "update_metrics wrote an older registration's record over a newer one (the "
            f"session now shows {info.node_id if info else None!r}): it must write with "
            "compare_and_set against the record it read, and the store's compare_and_set "
            "must be atomic"
        )

    async def test_update_metrics_takes_a_mapping_or_to_dict(
        self, nodes: tuple[SessionRegistry, SessionRegistry]
    ) -> None:
        a, b = nodes

        class AgentMetrics:  # what Vision-Agents passes
            def to_dict(self) -> dict[str, float | None]:
                return {"latency_ms": 41.5, "jitter": None}

        await a.register("call", "s")
        await a.update_metrics("call", "s", AgentMetrics())
        info = await b.get("call", "s")
        assert info is not None and info.metrics == {"latency_ms": 41.5, "jitter": None}
        assert info.metrics_updated_at >= info.started_at

    @pytest.mark.parametrize(
        "metrics",
        [{"x": math.nan}, {"x": math.inf}, {"x": -math.inf}, {"\ud800": 1}, {"": 1}],
        ids=["nan", "inf", "-inf", "surrogate-name", "empty-name"],
    )
    async def test_unstorable_metrics_are_value_errors_whether_or_not_the_session_exists(
        self, nodes: tuple[SessionRegistry, SessionRegistry], metrics: dict[str, float]
    ) -> None:
        a, _ = nodes
        with pytest.raises(ValueError):
            await a.update_metrics("call", "missing", metrics)
        await a.register("call", "s")
        with pytest.raises(ValueError):
            await a.update_metrics("call", "s", metrics)
        info = await a.get("call", "s")
        assert info is not None and info.metrics == {}

    @pytest.mark.parametrize("bad", ["", "\ud800", "a\udfffb"], ids=["empty", "surrogate", "inner"])
    async def test_unstorable_ids_are_value_errors_on_every_path(
        self, nodes: tuple[SessionRegistry, SessionRegistry], store: SessionKVStore, bad: str
    ) -> None:
        a, _ = nodes
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: a.register(bad, "s"),
            lambda: a.register("c", bad),
            lambda: a.get("c", bad),
            lambda: a.remove(bad, "s"),
            lambda: a.update_metrics("c", bad, {}),
            lambda: a.request_close("c", bad),
            lambda: a.get_close_requests({bad: "c"}),
            lambda: a.refresh({"s": bad}),
            lambda: a.get_for_call(bad),
        ]
        for call in calls:
            with pytest.raises(ValueError):
                await call()
        with pytest.raises(ValueError):
            SessionRegistry(store, node_id=bad, close_store=False)

    async def test_ids_too_long_for_the_store_are_refused_clearly(
        self, nodes: tuple[SessionRegistry, SessionRegistry], semantics: StoreSemantics
    ) -> None:
        a, _ = nodes
        long_id = "x" * semantics.max_key_bytes
        with pytest.raises(ValueError, match=str(semantics.max_key_bytes)):
            await a.register("call", long_id)
        with pytest.raises(ValueError, match=str(semantics.max_key_bytes)):
            await a.get(long_id, "s")
        fitting = "y" * (semantics.max_key_bytes // 2 - 8)
        await a.register(fitting, fitting)
        assert [i.session_id for i in await a.get_for_call(fitting)] == [fitting]
