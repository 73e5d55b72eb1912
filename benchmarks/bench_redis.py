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

import redis.asyncio as aioredis

from sessionkv import RedisSessionKVStore, SessionRegistry
from sessionkv.backends import _redis_scripts as lua
from sessionkv.backends.redis import namespace_prefix
from sessionkv.contract_tests.servers.redis import start_redis

SESSIONS_IN_CALL = 10
TTL = 3600.0
TTL_MS = 3_600_000
Op = Callable[[], Awaitable[object]]


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


def _record(call: str, session: str, node: str, metrics: dict[str, float] | None = None) -> bytes:
    data = {
        "session_id": session,
        "call_id": call,
        "node_id": node,
        "started_at": time.time(),
        "metrics_updated_at": time.time() if metrics is not None else None,
        "metrics": metrics or {},
    }
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


async def registry_table(url: str, repeat: int) -> list[tuple[str, float, float, float | None]]:
    namespace = "bench"
    raw = aioredis.Redis.from_url(url)
    p = namespace_prefix(namespace)
    idx, exp, data = p + b"idx", p + b"exp", p + b"k:"
    call = "the-call"
    sessions = {f"sess-{i}": call for i in range(SESSIONS_IN_CALL)}
    rows: list[tuple[str, float, float, float | None]] = []
    async with RedisSessionKVStore(url, namespace=namespace) as store:
        registry = SessionRegistry(store, node_id="bench", ttl=TTL)
        for session_id in sessions:
            await registry.register(call, session_id)

        def skey(session: str) -> bytes:
            return f"s/{call}/{session}".encode()

        def ckey(session: str) -> bytes:
            return f"c/{call}/{session}".encode()

        async def evalsha(script: lua.Script, *args: object) -> object:
            return await raw.evalsha(script.sha, 2, idx, exp, data, *args)  # type: ignore[arg-type]

        async def raw_register() -> None:
            await evalsha(lua.WRITE, b"0", skey("x"), _record(call, "x", "bench"), TTL_MS)

        async def plain_register() -> None:
            await raw.set(data + skey("x"), _record(call, "x", "bench"), px=TTL_MS)

        async def raw_get() -> object:
            got = await raw.get(data + skey("sess-1"))
            return json.loads(got) if got is not None else None

        async def raw_get_for_call() -> object:
            prefix = f"s/{call}/".encode()
            high = prefix[:-1] + bytes((prefix[-1] + 1,))
            flat = await evalsha(lua.SCAN, b"[" + prefix, b"(" + high, b"1")
            return [json.loads(v) for v in flat[1::2]]  # type: ignore[index]

        async def plain_get_for_call() -> object:
            names = [k async for k in raw.scan_iter(match=data + f"s/{call}/*".encode(), count=100)]
            return [json.loads(v) for v in await raw.mget(names) if v is not None]

        async def raw_update_metrics() -> None:
            got = await raw.get(data + skey("sess-2"))
            if got is not None:
                await evalsha(
                    lua.WRITE,
                    b"1",
                    skey("sess-2"),
                    _record(call, "sess-2", "bench", {"a": 1}),
                    TTL_MS,
                )

        async def raw_refresh() -> None:
            keys: list[bytes] = []
            for s in sessions:
                keys += (skey(s), ckey(s))
            await evalsha(lua.EXPIRE, TTL_MS, *keys)

        async def plain_refresh() -> None:
            async with raw.pipeline(transaction=False) as pipe:
                for s in sessions:
                    pipe.pexpire(data + skey(s), TTL_MS)
                    pipe.pexpire(data + ckey(s), TTL_MS)
                await pipe.execute()

        async def raw_request_close() -> None:
            flag = json.dumps({"requested_by": "bench", "requested_at": time.time()}).encode()
            await evalsha(lua.WRITE, b"0", ckey("sess-3"), flag, TTL_MS)

        async def raw_get_close_requests() -> list[str]:
            flags = await raw.mget([data + ckey(s) for s in sessions])
            return [s for s, f in zip(sessions, flags, strict=True) if f is not None]

        async def raw_remove() -> None:
            await evalsha(lua.DELETE, skey("gone"), ckey("gone"))

        async def plain_remove() -> None:
            await raw.delete(data + skey("gone"), data + ckey("gone"))

        cases: list[tuple[str, Op, Op, Op | None]] = [
            ("register", lambda: registry.register(call, "x"), raw_register, plain_register),
            ("get", lambda: registry.get(call, "sess-1"), raw_get, raw_get),
            (
                f"get_for_call ({SESSIONS_IN_CALL} sessions)",
                lambda: registry.get_for_call(call),
                raw_get_for_call,
                plain_get_for_call,
            ),
            (
                "update_metrics",
                lambda: registry.update_metrics(call, "sess-2", {"a": 1}),
                raw_update_metrics,
                None,
            ),
            (
                f"refresh ({SESSIONS_IN_CALL})",
                lambda: registry.refresh(sessions),
                raw_refresh,
                plain_refresh,
            ),
            (
                "request_close",
                lambda: registry.request_close(call, "sess-3"),
                raw_request_close,
                None,
            ),
            (
                f"get_close_requests ({SESSIONS_IN_CALL})",
                lambda: registry.get_close_requests(sessions),
                raw_get_close_requests,
                raw_get_close_requests,
            ),
            ("remove", lambda: registry.remove(call, "gone"), raw_remove, plain_remove),
        ]
        for name, lib_op, raw_op, plain_op in cases:
            lib_us, raw_us = await _pair_us(lib_op, raw_op, repeat)
            plain_us = None
            if plain_op is not None and plain_op is not raw_op:
                plain_us = await _median_us(plain_op, repeat)
            rows.append((name, lib_us, raw_us, plain_us))
        await store.delete(await store.keys(""))
    await raw.aclose()
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
    record = _record("other", "s", "n")
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
