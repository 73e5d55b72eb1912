"""Registry operations on Redis next to raw redis-py sending the same commands, and
``get_for_call`` with 1k vs 1M other sessions in the server.

Starts its own ``redis-server`` on a free loopback port (no persistence). Part 1 times
every registry operation through ``SessionRegistry`` + ``RedisSessionKVStore`` and,
interleaved call by call, a hand-written redis-py function that builds the same keys
and JSON and sends the same commands (``EVALSHA`` of the store's scripts, ``GET``,
``MGET``); the last column is the plain command an application without an index would
send (``SET PX`` for register, ``SCAN MATCH`` + ``MGET`` for get_for_call, ...).
Targets: sessionkv / raw <= 1.2x; get_for_call(1M) / get_for_call(1k) <= 2.

Run: ``python benchmarks/bench_redis.py`` (``--repeat 2000 --sizes 1000,1000000``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from _common import asks_to_close, close_request_for, session_record, with_metrics

from sessionkv import RedisSessionKVStore, SessionRegistry
from sessionkv.backends import _redis_scripts as lua
from sessionkv.backends.redis import namespace_prefix
from sessionkv.contract_tests.servers.redis import start_redis

SESSIONS_IN_CALL = 10
TTL = 3600.0
TTL_MS = 3_600_000
Op = Callable[[], Awaitable[object]]
Case = tuple[str, Op, Op, Op | None]
Row = tuple[str, float, float, float | None]


async def _pair_us(lib: Op, raw: Op, repeat: int) -> tuple[float, float]:
    """Median µs of ``lib`` and ``raw``, alternating call by call so both see the same noise."""
    for _ in range(min(200, repeat)):
        await lib()
        await raw()
    lib_s: list[float] = []
    raw_s: list[float] = []
    clock = time.perf_counter
    for _ in range(repeat):
        t0 = clock()
        await lib()
        t1 = clock()
        await raw()
        t2 = clock()
        lib_s.append(t1 - t0)
        raw_s.append(t2 - t1)
    return statistics.median(lib_s) * 1e6, statistics.median(raw_s) * 1e6


async def _median_us(op: Op, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await op()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


class RawRedis:
    """The registry's work as hand-written redis-py calls: the keys, JSON and commands
    the library sends for the session ids the table uses; ``plain_*``: the command an
    application without the index would send instead."""

    def __init__(self, url: str, namespace: str, call: str, sessions: dict[str, str]) -> None:
        self.client = aioredis.Redis.from_url(url)
        p = namespace_prefix(namespace)
        self.idx, self.exp, self.data = p + b"idx", p + b"exp", p + b"k:"
        self.call = call
        self.sessions = sessions

    def skey(self, session: str) -> bytes:
        return f"s/{self.call}/{session}".encode()

    def ckey(self, session: str) -> bytes:
        return f"c/{self.call}/{session}".encode()

    async def evalsha(self, script: lua.Script, *args: object) -> object:
        return await self.client.evalsha(script.sha, 2, self.idx, self.exp, self.data, *args)  # type: ignore[arg-type]

    async def register(self, session: str) -> None:
        """EVALSHA WRITE of the new record."""
        record = session_record(self.call, session, "bench")
        await self.evalsha(lua.WRITE, b"0", self.skey(session), record, TTL_MS)

    async def plain_register(self, session: str) -> None:
        """SET PX."""
        record = session_record(self.call, session, "bench")
        await self.client.set(self.data + self.skey(session), record, px=TTL_MS)

    async def get(self, session: str) -> object:
        """GET."""
        got = await self.client.get(self.data + self.skey(session))
        return json.loads(got) if got is not None else None

    async def get_for_call(self) -> object:
        """EVALSHA SCAN over the call's lex range."""
        prefix = f"s/{self.call}/".encode()
        high = prefix[:-1] + bytes((prefix[-1] + 1,))
        flat = await self.evalsha(lua.SCAN, b"[" + prefix, b"(" + high, b"1")
        return [json.loads(v) for v in flat[1::2]]  # type: ignore[index]

    async def plain_get_for_call(self) -> object:
        """SCAN MATCH, then MGET."""
        match = self.data + f"s/{self.call}/*".encode()
        names = [k async for k in self.client.scan_iter(match=match, count=100)]
        return [json.loads(v) for v in await self.client.mget(names) if v is not None]

    async def update_metrics(self, session: str, metrics: dict[str, Any]) -> None:
        """GET the record, then EVALSHA COMPARE_AND_SET of it with the new metrics."""
        got = await self.client.get(self.data + self.skey(session))
        if got is not None:
            new = with_metrics(got, metrics)
            await self.evalsha(lua.COMPARE_AND_SET, self.skey(session), got, new, TTL_MS)

    async def refresh(self) -> None:
        """EVALSHA EXPIRE of every session and close key."""
        keys: list[bytes] = []
        for s in self.sessions:
            keys += (self.skey(s), self.ckey(s))
        await self.evalsha(lua.EXPIRE, TTL_MS, *keys)

    async def plain_refresh(self) -> None:
        """A pipeline of PEXPIREs."""
        async with self.client.pipeline(transaction=False) as pipe:
            for s in self.sessions:
                pipe.pexpire(self.data + self.skey(s), TTL_MS)
                pipe.pexpire(self.data + self.ckey(s), TTL_MS)
            await pipe.execute()

    async def request_close(self, session: str) -> None:
        """GET the record, then EVALSHA WRITE of the close key naming its registration."""
        got = await self.client.get(self.data + self.skey(session))
        if got is not None:
            request = close_request_for("bench", got)
            await self.evalsha(lua.WRITE, b"0", self.ckey(session), request, TTL_MS)

    async def get_close_requests(self) -> list[str]:
        """MGET of the close keys; if any is set, MGET of those sessions' records."""
        flags = await self.client.mget([self.data + self.ckey(s) for s in self.sessions])
        pending = [(s, f) for s, f in zip(self.sessions, flags, strict=True) if f is not None]
        if not pending:
            return []
        records = await self.client.mget([self.data + self.skey(s) for s, _ in pending])
        return [
            s
            for (s, flag), record in zip(pending, records, strict=True)
            if record is not None and asks_to_close(flag, record)
        ]

    async def remove(self, session: str) -> None:
        """EVALSHA DELETE of the session and close key."""
        await self.evalsha(lua.DELETE, self.skey(session), self.ckey(session))

    async def plain_remove(self, session: str) -> None:
        """DEL."""
        await self.client.delete(self.data + self.skey(session), self.data + self.ckey(session))


def _cases(registry: SessionRegistry, raw: RawRedis) -> list[Case]:
    """(row, sessionkv call, raw call, plain call or None) per registry operation."""
    call, sessions = raw.call, raw.sessions
    return [
        (
            "register",
            lambda: registry.register(call, "x"),
            lambda: raw.register("x"),
            lambda: raw.plain_register("x"),
        ),
        ("get", lambda: registry.get(call, "sess-1"), lambda: raw.get("sess-1"), None),
        (
            f"get_for_call ({SESSIONS_IN_CALL} sessions)",
            lambda: registry.get_for_call(call),
            raw.get_for_call,
            raw.plain_get_for_call,
        ),
        (
            "update_metrics",
            lambda: registry.update_metrics(call, "sess-2", {"a": 1}),
            lambda: raw.update_metrics("sess-2", {"a": 1}),
            None,
        ),
        (
            f"refresh ({SESSIONS_IN_CALL})",
            lambda: registry.refresh(sessions),
            raw.refresh,
            raw.plain_refresh,
        ),
        (
            "request_close",
            lambda: registry.request_close(call, "sess-3"),
            lambda: raw.request_close("sess-3"),
            None,
        ),
        (
            f"get_close_requests ({SESSIONS_IN_CALL})",
            lambda: registry.get_close_requests(sessions),
            raw.get_close_requests,
            None,
        ),
        (
            "remove",
            lambda: registry.remove(call, "gone"),
            lambda: raw.remove("gone"),
            lambda: raw.plain_remove("gone"),
        ),
    ]


async def _measure_row(case: Case, repeat: int) -> Row:
    name, lib_op, raw_op, plain_op = case
    lib_us, raw_us = await _pair_us(lib_op, raw_op, repeat)
    plain_us = None if plain_op is None else await _median_us(plain_op, repeat)
    return name, lib_us, raw_us, plain_us


async def registry_table(url: str, repeat: int) -> list[Row]:
    namespace, call = "bench", "the-call"
    sessions = {f"sess-{i}": call for i in range(SESSIONS_IN_CALL)}
    raw = RawRedis(url, namespace, call, sessions)
    async with RedisSessionKVStore(url, namespace=namespace) as store:
        registry = SessionRegistry(store, node_id="bench", ttl=TTL)
        for session_id in sessions:
            await registry.register(call, session_id)
        rows = [await _measure_row(case, repeat) for case in _cases(registry, raw)]
        # The request_close row left one request pending, so both sides of the
        # get_close_requests row read the close keys, then that one session's record.
        assert await raw.get_close_requests() == ["sess-3"]
        assert await registry.get_close_requests(sessions) == ["sess-3"]
        await store.delete(await store.keys(""))
    await raw.client.aclose()
    return rows


async def scale_rows(
    url: str, sizes: list[int], repeat: int, reference_repeat: int
) -> list[tuple[int, float, float | None]]:
    """get_for_call latency with n other sessions in the namespace (so in its index),
    and the SCAN MATCH reference with the same data."""
    rows: list[tuple[int, float, float | None]] = []
    raw = aioredis.Redis.from_url(url)
    data = namespace_prefix("scale") + b"k:"
    async with RedisSessionKVStore(url, namespace="scale", timeout=60) as store:
        registry = SessionRegistry(store, node_id="bench", ttl=TTL)
        for i in range(SESSIONS_IN_CALL):
            await registry.register("the-call", f"sess-{i}")
        filled = 0
        for n in sizes:
            await _fill_more(store, filled, n)
            filled = n
            assert len(await registry.get_for_call("the-call")) == SESSIONS_IN_CALL
            gfc_us = await _median_us(lambda: registry.get_for_call("the-call"), repeat)

            async def reference() -> object:
                names = [k async for k in raw.scan_iter(match=data + b"s/the-call/*", count=100)]
                return await raw.mget(names)

            ref_us = await _median_us(reference, reference_repeat) if reference_repeat else None
            rows.append((n, gfc_us, ref_us))
        await raw.flushdb()
    await raw.aclose()
    return rows


async def _fill_more(store: RedisSessionKVStore, start: int, stop: int) -> None:
    record = session_record("other", "s", "n")
    for low in range(start, stop, 10_000):
        await store.mset(
            [
                (f"s/other-call-{i}/sess-{i}", record, TTL)
                for i in range(low, min(low + 10_000, stop))
            ]
        )


def _fmt(us: float | None) -> str:
    if us is None:
        return "—"
    return f"{us / 1000:,.1f} ms" if us >= 10_000 else f"{us:.0f} µs"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument(
        "--reference-repeat", type=int, default=3, help="SCAN MATCH calls per size (0: skip)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    server = start_redis()
    try:
        version = await _server_version(server.url)
        print(f"redis-server {version} on 127.0.0.1:{server.port}, redis-py {_redis_py()}")
        rows = await registry_table(server.url, args.repeat)
        print(f"\nRegistry operations, median of {args.repeat} calls (interleaved with raw)")
        print("| operation | sessionkv | raw redis-py, same commands | ratio | plain, no index |")
        print("|---|---:|---:|---:|---:|")
        for name, lib_us, raw_us, plain_us in rows:
            ratio = f"{lib_us / raw_us:.2f}x"
            print(f"| {name} | {_fmt(lib_us)} | {_fmt(raw_us)} | {ratio} | {_fmt(plain_us)} |")
        scale = await scale_rows(server.url, sizes, min(args.repeat, 1000), args.reference_repeat)
        print(
            f"\nget_for_call ({SESSIONS_IN_CALL} sessions) with n other sessions in the namespace"
        )
        print("| other sessions | sessionkv (ZRANGEBYLEX index) | reference: SCAN MATCH + MGET |")
        print("|---:|---:|---:|")
        for n, gfc_us, ref_us in scale:
            print(f"| {n:,} | {_fmt(gfc_us)} | {_fmt(ref_us)} |")
        base = scale[0]
        for n, gfc_us, _ in scale[1:]:
            print(f"ratio {n:,} / {base[0]:,}: {gfc_us / base[1]:.2f}x (target <= 2)")
    finally:
        server.close()


async def _server_version(url: str) -> str:
    client = aioredis.Redis.from_url(url)
    info = await client.info("server")
    await client.aclose()
    return str(info["redis_version"])


def _redis_py() -> str:
    import redis

    return str(redis.__version__)


if __name__ == "__main__":
    asyncio.run(main())
