"""Registry operations on the etcd store vs hand-built JSON-gateway requests doing the
same etcd work, in the same run against the same member.

Target (etcd issue): every registry operation within 1.5x of the hand-built requests
(``ratio`` column: store time / raw time). The raw side is the floor a client can reach
over the gateway: one aiohttp session, bodies built with ``json.dumps`` and base64 by
hand, one pre-granted lease, the same SessionInfo JSON. For reference the last rows time
etcd3-py's model layer (``AioClient.range``) on the two reads the issue measured.

Run: ``python benchmarks/bench_etcd.py`` (starts a private etcd on loopback with its
data in /dev/shm; ``--endpoint host:port`` uses a running one; ``--repeat``, ``--sessions``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _common import asks_to_close, close_request_for, rate, session_record, with_metrics

from sessionkv import EtcdSessionKVStore, SessionRegistry
from sessionkv.core.registry import escape_segment

Op = Callable[[], Awaitable[Any]]
TTL = 60
BIG_CALL = 100


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class RawGateway:
    """The same work as the registry, as plain gateway requests."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: str, namespace: str) -> None:
        self.session = session
        self.base = f"http://{endpoint}/v3"
        self.prefix = f"sessionkv/{escape_segment(namespace)}/".encode()
        self.lease = "0"

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(self.base + path, data=json.dumps(body)) as resp:
            answer: dict[str, Any] = json.loads(await resp.read())
            return answer

    def key(self, kind: str, call: str, session: str) -> str:
        return b64(self.prefix + f"{kind}/{call}/{session}".encode())

    async def grant(self) -> None:
        self.lease = (await self.post("/lease/grant", {"TTL": TTL + 1}))["ID"]

    async def register(self, call: str, session: str) -> None:
        """/kv/put of the record, on the lease."""
        value = b64(session_record(call, session, "raw"))
        await self.post(
            "/kv/put", {"key": self.key("s", call, session), "value": value, "lease": self.lease}
        )

    async def get_value(self, call: str, session: str) -> bytes | None:
        """/kv/range of the record: its stored bytes."""
        answer = await self.post("/kv/range", {"key": self.key("s", call, session)})
        kvs = answer.get("kvs")
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    async def get(self, call: str, session: str) -> dict[str, Any] | None:
        """/kv/range of the record, decoded."""
        answer = await self.post("/kv/range", {"key": self.key("s", call, session)})
        kvs = answer.get("kvs")
        if not kvs:
            return None
        record: dict[str, Any] = json.loads(base64.b64decode(kvs[0].get("value", "")))
        return record

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        """The values of ``keys``: one /kv/range for one key, else one /kv/txn of ranges."""
        if len(keys) == 1:
            answers = [await self.post("/kv/range", {"key": keys[0]})]
        else:
            ops = [{"request_range": {"key": key}} for key in keys]
            answer = await self.post("/kv/txn", {"success": ops})
            answers = [r["response_range"] for r in answer["responses"]]
        return [
            base64.b64decode(a["kvs"][0].get("value", "")) if a.get("kvs") else None
            for a in answers
        ]

    async def get_for_call(self, call: str) -> list[dict[str, Any]]:
        """/kv/range over the call's prefix."""
        start = self.prefix + f"s/{call}/".encode()
        end = start[:-1] + bytes([start[-1] + 1])
        answer = await self.post("/kv/range", {"key": b64(start), "range_end": b64(end)})
        return [json.loads(base64.b64decode(kv["value"])) for kv in answer.get("kvs", [])]

    async def update_metrics(self, call: str, session: str, metrics: dict[str, Any]) -> None:
        """/kv/range of the record, then a /kv/txn putting the new record if the value is
        still the one read (compare VALUE EQUAL)."""
        expected = await self.get_value(call, session)
        if expected is None:
            return
        key = self.key("s", call, session)
        value = b64(with_metrics(expected, metrics))
        put = {"key": key, "value": value, "lease": self.lease}
        compare = {"key": key, "target": "VALUE", "result": "EQUAL", "value": b64(expected)}
        await self.post("/kv/txn", {"compare": [compare], "success": [{"request_put": put}]})

    async def refresh(self, sessions: dict[str, str]) -> None:
        """One /kv/txn of nested transactions: each key, if it exists, put on the lease
        with its value kept."""
        ops = []
        for session, call in sessions.items():
            for kind in ("s", "c"):
                key = self.key(kind, call, session)
                compare = {"key": key, "target": "VERSION", "result": "GREATER", "version": 0}
                put = {"key": key, "lease": self.lease, "ignore_value": True}
                ops.append(
                    {"request_txn": {"compare": [compare], "success": [{"request_put": put}]}}
                )
        await self.post("/kv/txn", {"success": ops})

    async def request_close(self, call: str, session: str) -> None:
        """/kv/range of the record, then /kv/put of the close request naming its
        registration."""
        record = await self.get_value(call, session)
        if record is None:
            return
        value = b64(close_request_for("raw", record))
        await self.post(
            "/kv/put", {"key": self.key("c", call, session), "value": value, "lease": self.lease}
        )

    async def get_close_requests(self, sessions: dict[str, str]) -> list[str]:
        """The close keys in one read; if any is set, those sessions' records in another."""
        flags = await self.mget([self.key("c", c, s) for s, c in sessions.items()])
        pending = [(s, f) for s, f in zip(sessions, flags, strict=True) if f is not None]
        if not pending:
            return []
        records = await self.mget([self.key("s", sessions[s], s) for s, _ in pending])
        return [
            s
            for (s, flag), record in zip(pending, records, strict=True)
            if record is not None and asks_to_close(flag, record)
        ]

    async def remove(self, call: str, session: str) -> None:
        """One /kv/txn deleting the record and the close request."""
        ops = [{"request_delete_range": {"key": self.key(kind, call, session)}} for kind in "sc"]
        await self.post("/kv/txn", {"success": ops})


async def per_second(op: Op, repeat: int) -> float:
    """Median rate of ``op`` over 5 rounds of ``repeat // 5`` sequential calls."""
    n = max(1, repeat // 5)
    return statistics.median([await rate(op, n) for _ in range(5)])


async def side_by_side(ours: Op, theirs: Op, repeat: int) -> tuple[float, float]:
    """Median rates of both over 5 interleaved rounds, so a busy moment on the machine
    hits both sides alike."""
    n = max(1, repeat // 5)
    rounds = [(await rate(ours, n), await rate(theirs, n)) for _ in range(5)]
    return statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds)


async def run(endpoint: str, repeat: int, sessions: int) -> list[tuple[str, float, float]]:
    store = EtcdSessionKVStore(endpoint, namespace="bench-store")
    connector = aiohttp.TCPConnector(limit=64)
    async with (
        store,
        SessionRegistry(store, node_id="bench", ttl=TTL) as registry,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        raw = RawGateway(session, endpoint, "bench-raw")
        await raw.grant()
        mine = {f"sess-{i}": "the-call" for i in range(sessions)}
        await fill(registry, raw, mine)
        rows = []
        for name, ours, theirs in pairs(registry, raw, mine):
            await ours()  # warm up: connections, the lease for this TTL
            await theirs()
            rows.append((name, *await side_by_side(ours, theirs, repeat)))
        # Every session of ``mine`` has a pending request (see fill), so both sides of
        # the get_close_requests row read the close keys, then all the records.
        assert await raw.get_close_requests(mine) == list(mine)
        assert await registry.get_close_requests(mine) == list(mine)
        rows.extend(await etcd3py_reference(endpoint, store, registry, repeat))
        await store.delete(await store.keys(""))
        return rows


async def fill(registry: SessionRegistry, raw: RawGateway, mine: dict[str, str]) -> None:
    """Both sides: ``mine``, each with a close request pending, and ``BIG_CALL``
    sessions of another call (not timed)."""
    for session_id, call_id in mine.items():
        await registry.register(call_id, session_id)
        await raw.register(call_id, session_id)
        await registry.request_close(call_id, session_id)
        await raw.request_close(call_id, session_id)
    for i in range(BIG_CALL):
        await registry.register("big-call", f"sess-{i}")
        await raw.register("big-call", f"sess-{i}")


def pairs(
    registry: SessionRegistry, raw: RawGateway, mine: dict[str, str]
) -> list[tuple[str, Op, Op]]:
    """(row, sessionkv call, raw call) per registry operation."""
    metrics = {"rtt_ms": 12.5, "frames": 300, "loss": None}
    return [
        ("register", lambda: registry.register("c2", "s"), lambda: raw.register("c2", "s")),
        (
            "get",
            lambda: registry.get("the-call", "sess-0"),
            lambda: raw.get("the-call", "sess-0"),
        ),
        (
            f"get_for_call ({len(mine)} sessions)",
            lambda: registry.get_for_call("the-call"),
            lambda: raw.get_for_call("the-call"),
        ),
        (
            f"get_for_call ({BIG_CALL} sessions)",
            lambda: registry.get_for_call("big-call"),
            lambda: raw.get_for_call("big-call"),
        ),
        (
            "update_metrics",
            lambda: registry.update_metrics("the-call", "sess-0", metrics),
            lambda: raw.update_metrics("the-call", "sess-0", metrics),
        ),
        (
            f"refresh ({len(mine)} sessions)",
            lambda: registry.refresh(mine),
            lambda: raw.refresh(mine),
        ),
        (
            "request_close",
            lambda: registry.request_close("c2", "s"),
            lambda: raw.request_close("c2", "s"),
        ),
        (
            f"get_close_requests ({len(mine)})",
            lambda: registry.get_close_requests(mine),
            lambda: raw.get_close_requests(mine),
        ),
        ("remove", lambda: registry.remove("c3", "s"), lambda: raw.remove("c3", "s")),
    ]


async def etcd3py_reference(
    endpoint: str, store: EtcdSessionKVStore, registry: SessionRegistry, repeat: int
) -> list[tuple[str, float, float]]:
    from sessionkv.backends._etcd_transport import _client_class

    host, port = endpoint.rsplit(":", 1)
    client = _client_class()(host=host, port=int(port))
    try:
        prefix = b"sessionkv/bench-store/s/big-call/"
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        one = b"sessionkv/bench-store/s/big-call/sess-0"
        models_scan = await per_second(lambda: client.range(prefix, range_end=end), repeat // 5)
        models_get = await per_second(lambda: client.range(one), repeat)
    finally:
        await client.close()
    ours_scan = await per_second(lambda: store.scan("s/big-call/"), repeat)
    ours_get = await per_second(lambda: store.get("s/big-call/sess-0"), repeat)
    return [
        (f"store.scan ({BIG_CALL} keys) vs etcd3-py AioClient.range", ours_scan, models_scan),
        ("store.get vs etcd3-py AioClient.range (1 key)", ours_get, models_get),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", help="host:port of a running etcd (default: start one)")
    parser.add_argument("--repeat", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=10)
    args = parser.parse_args()
    cluster = None
    endpoint = args.endpoint
    if endpoint is None:
        from sessionkv.contract_tests.servers.etcd import start_etcd

        cluster = start_etcd(1)
        endpoint = cluster.endpoint
    try:
        rows = asyncio.run(run(endpoint, args.repeat, args.sessions))
    finally:
        if cluster is not None:
            cluster.stop()
    rounds = f"median of 5 interleaved rounds of {args.repeat // 5}"
    print(f"etcd at {endpoint}, sequential calls, {rounds}")
    print(
        "| registry operation | sessionkv ops/s | raw gateway ops/s | time ratio (target <= 1.5) |"
    )
    print("|---|---:|---:|---:|")
    for name, ours, raw in rows[:-2]:
        print(f"| {name} | {ours:,.0f} | {raw:,.0f} | {raw / ours:.2f} |")
    print()
    print("| reference | sessionkv ops/s | etcd3-py models ops/s | speed-up |")
    print("|---|---:|---:|---:|")
    for name, ours, models in rows[-2:]:
        print(f"| {name} | {ours:,.0f} | {models:,.0f} | {ours / models:.1f}x |")


if __name__ == "__main__":
    main()
