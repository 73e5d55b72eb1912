"""Throughput of every SQLiteSessionKVStore and SessionRegistry operation next to raw
aiosqlite running the same SQL statements, in the same run, on the same machine.

Both sides use a WAL file with ``synchronous=NORMAL`` in a temporary directory and
issue their statements one at a time (sequential awaits), so the ratio is the cost of
the store's layer: validation, key encoding, error mapping, and for the registry its
JSON records. Calls of the two sides alternate one by one; each
figure is the best of several rounds.

    python benchmarks/bench_sqlite.py [--ops 3000] [--rounds 5] [--big 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
from _common import close_request, rate, session_record, with_metrics

from sessionkv import SessionInfo, SessionRegistry, SQLiteSessionKVStore
from sessionkv.backends import _sqlite_schema as sql
from sessionkv.contract_tests import ManualClock
from sessionkv.core.checks import prefix_upper_bound
from sessionkv.core.registry import escape_segment

NS = b"bench"
LONG = 3600.0
METRICS = {"rtt_ms": 12.5, "frames": 300, "loss": None}
Op = Callable[[int], Awaitable[Any]]
# The store table's data: 1000 keys, their 10 batches of 100, 100 prefixes of 10 keys.
KEYS = [f"key/{i:05d}" for i in range(1000)]
BKEYS = [k.encode() for k in KEYS]
VALUE = b"x" * 100
BATCHES = [[(KEYS[(i * 100 + j) % 1000], VALUE, LONG) for j in range(100)] for i in range(10)]
PREFIXES = [f"key/{i:03d}" for i in range(100)]


async def raw_connection(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None, cached_statements=256)
    await sql.install_clock(conn, time.time)  # the statements read skv_now(), as the store's do
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = NORMAL")
    for statement in sql.SCHEMA:
        await conn.execute(statement)
    return conn


def skey(call: str, session: str) -> bytes:
    return f"s/{escape_segment(call)}/{escape_segment(session)}".encode()


def ckey(call: str, session: str) -> bytes:
    return f"c/{escape_segment(call)}/{escape_segment(session)}".encode()


class Bench:
    def __init__(self, ops: int, rounds: int) -> None:
        self.ops, self.rounds = ops, rounds
        self.rows: list[tuple[str, float, float, str]] = []

    async def compare(self, name: str, mine: Op, raw: Op, unit: int = 1, note: str = "") -> None:
        """Ops/s (x ``unit`` rows per op) of both sides. Their calls alternate one by
        one, so a change in machine load hits both alike; the best round counts."""
        best_mine = best_raw = 0.0
        clock = time.perf_counter
        for _ in range(self.rounds):
            spent_mine = spent_raw = 0.0
            for i in range(self.ops):
                started = clock()
                await raw(i)
                middle = clock()
                await mine(i)
                spent_raw += middle - started
                spent_mine += clock() - middle
            best_raw = max(best_raw, self.ops / spent_raw)
            best_mine = max(best_mine, self.ops / spent_mine)
        self.rows.append((name, best_mine * unit, best_raw * unit, note))

    def table(self) -> str:
        lines = [
            "| operation | sessionkv ops/s | raw aiosqlite ops/s | raw / sessionkv |",
            "|---|---:|---:|---:|",
        ]
        for name, mine, raw, note in self.rows:
            label = f"{name} ({note})" if note else name
            lines.append(f"| {label} | {mine:,.0f} | {raw:,.0f} | {raw / mine:.2f}x |")
        return "\n".join(lines)


async def store_ops(bench: Bench, tmp: Path) -> None:
    store = SQLiteSessionKVStore(tmp / "store.db", namespace=NS.decode())
    conn = await raw_connection(tmp / "raw.db")
    await store.start()
    try:
        await fill_store(store, conn)
        await point_rows(bench, store, conn)
        await batch_rows(bench, store, conn)
        await prefix_rows(bench, store, conn)
        await expire_delete_rows(bench, store, conn)
        await executemany_row(bench, store, conn)
    finally:
        await store.close()
        await conn.close()


async def fill_store(store: SQLiteSessionKVStore, conn: aiosqlite.Connection) -> None:
    """The 1000 keys on both sides (not timed)."""
    await store.mset([(k, b"v" * 100, LONG) for k in KEYS])
    for start in range(0, 1000, 200):
        await conn.execute_fetchall(
            sql.mset_many(200),
            [p for k in BKEYS[start : start + 200] for p in (NS, k, b"v" * 100, LONG)],
        )


async def point_rows(bench: Bench, store: SQLiteSessionKVStore, conn: aiosqlite.Connection) -> None:
    await bench.compare(
        "set",
        lambda i: store.set(KEYS[i % 1000], VALUE, LONG),
        lambda i: conn.execute_fetchall(sql.SET, (NS, BKEYS[i % 1000], VALUE, LONG)),
    )
    await bench.compare(
        "set only_if_exists",
        lambda i: store.set(KEYS[i % 1000], VALUE, LONG, only_if_exists=True),
        lambda i: conn.execute_fetchall(sql.SET_IF_EXISTS, (VALUE, LONG, NS, BKEYS[i % 1000])),
    )
    await bench.compare(
        "get",
        lambda i: store.get(KEYS[i % 1000]),
        lambda i: conn.execute_fetchall(sql.GET, (NS, BKEYS[i % 1000])),
    )


async def batch_rows(bench: Bench, store: SQLiteSessionKVStore, conn: aiosqlite.Connection) -> None:
    await bench.compare(
        "mset",
        lambda i: store.mset(BATCHES[i % 10]),
        lambda i: conn.execute_fetchall(
            sql.mset_many(100),
            [p for k, v, t in BATCHES[i % 10] for p in (NS, k.encode(), v, t)],
        ),
        unit=100,
        note="rows/s, 100 per call",
    )
    batch_keys = [[k for k, _, _ in items] for items in BATCHES]
    await bench.compare(
        "mget",
        lambda i: store.mget(batch_keys[i % 10]),
        lambda i: conn.execute_fetchall(
            sql.mget_many(100), (NS, *(k.encode() for k in batch_keys[i % 10]))
        ),
        unit=100,
        note="rows/s, 100 per call",
    )


def range_params(prefix: str) -> tuple[bytes, bytes, bytes | None]:
    """(namespace, low, high) of the half-open key range of ``prefix``."""
    low = prefix.encode()
    return NS, low, prefix_upper_bound(low)


async def prefix_rows(
    bench: Bench, store: SQLiteSessionKVStore, conn: aiosqlite.Connection
) -> None:
    await bench.compare(
        "keys",
        lambda i: store.keys(PREFIXES[i % 100]),
        lambda i: conn.execute_fetchall(sql.KEYS_RANGE, range_params(PREFIXES[i % 100])),
        note="10 matches",
    )
    await bench.compare(
        "scan",
        lambda i: store.scan(PREFIXES[i % 100]),
        lambda i: conn.execute_fetchall(sql.SCAN_RANGE, range_params(PREFIXES[i % 100])),
        note="10 matches",
    )


async def expire_delete_rows(
    bench: Bench, store: SQLiteSessionKVStore, conn: aiosqlite.Connection
) -> None:
    await bench.compare(
        "expire",
        lambda i: store.expire(KEYS[i % 1000], KEYS[(i + 1) % 1000], ttl=LONG),
        lambda i: conn.execute_fetchall(
            sql.expire_many(2),
            (LONG, NS, BKEYS[i % 1000], BKEYS[(i + 1) % 1000]),
        ),
        note="2 keys",
    )
    await bench.compare(
        "delete",
        lambda i: store.delete([f"gone/{i}"]),
        lambda i: conn.execute_fetchall(sql.delete_many(1), (NS, f"gone/{i}".encode())),
        note="missing key",
    )


async def executemany_row(
    bench: Bench, store: SQLiteSessionKVStore, conn: aiosqlite.Connection
) -> None:
    """The usual hand-written batch, for reference: executemany in a transaction."""
    rows = [[(NS, k.encode(), v, t) for k, v, t in items] for items in BATCHES]

    async def executemany_batch(i: int) -> None:
        await conn.execute("BEGIN IMMEDIATE")
        await conn.executemany(sql.SET, rows[i % 10])
        await conn.execute("COMMIT")

    await bench.compare(
        "mset vs executemany",
        lambda i: store.mset(BATCHES[i % 10]),
        executemany_batch,
        unit=100,
        note="rows/s; raw = BEGIN, executemany 100, COMMIT",
    )


class Sessions:
    """1000 sessions, 10 per call. The values of the raw side are built here, untimed:
    its rows run the library's statements without its JSON work."""

    def __init__(self) -> None:
        self.calls = [f"call-{i % 100}" for i in range(1000)]
        self.sessions = [f"sess-{i}" for i in range(1000)]
        tokens = [f"{i:016x}" for i in range(1000)]  # each record's registration
        pairs = zip(self.calls, self.sessions, tokens, strict=True)
        self.records = [session_record(c, s, "node-a", t) for c, s, t in pairs]
        self.updated = [with_metrics(r, METRICS) for r in self.records]
        self.flags = [close_request("node-b", t) for t in tokens]


async def registry_ops(bench: Bench, tmp: Path) -> None:
    store = SQLiteSessionKVStore(tmp / "registry.db", namespace=NS.decode())
    conn = await raw_connection(tmp / "registry-raw.db")
    registry = SessionRegistry(store, node_id="node-a", ttl=LONG)
    await registry.start()
    try:
        data = Sessions()
        await record_rows(bench, registry, conn, data)
        await close_rows(bench, registry, conn, data)
        await listing_rows(bench, registry, conn, data)
        await bench.compare(
            "remove",
            lambda i: registry.remove("gone", f"s{i}"),
            lambda i: conn.execute_fetchall(
                sql.delete_many(2), (NS, skey("gone", f"s{i}"), ckey("gone", f"s{i}"))
            ),
        )
    finally:
        await registry.stop()
        await store.close()
        await conn.close()


async def record_rows(
    bench: Bench, registry: SessionRegistry, conn: aiosqlite.Connection, data: Sessions
) -> None:
    calls, sessions = data.calls, data.sessions
    await bench.compare(
        "register",
        lambda i: registry.register(calls[i % 1000], sessions[i % 1000]),
        lambda i: conn.execute_fetchall(
            sql.SET,
            (NS, skey(calls[i % 1000], sessions[i % 1000]), data.records[i % 1000], LONG),
        ),
    )
    await bench.compare(
        "get (registry)",
        lambda i: registry.get(calls[i % 1000], sessions[i % 1000]),
        lambda i: conn.execute_fetchall(sql.GET, (NS, skey(calls[i % 1000], sessions[i % 1000]))),
    )

    async def raw_update(i: int) -> bool:
        # GET, then COMPARE_AND_SET (one UPDATE ... WHERE value = ?) over the value read.
        key = skey(calls[i % 1000], sessions[i % 1000])
        rows = list(await conn.execute_fetchall(sql.GET, (NS, key)))
        if not rows:
            return False
        params = (data.updated[i % 1000], LONG, NS, key, rows[0][0])
        cursor = await conn.execute(sql.COMPARE_AND_SET, params)
        return cursor.rowcount > 0

    await bench.compare(
        "update_metrics",
        lambda i: registry.update_metrics(calls[i % 1000], sessions[i % 1000], METRICS),
        raw_update,
        note="get + compare-and-set",
    )
    await bench.compare(
        "refresh",
        lambda i: registry.refresh({sessions[i % 1000]: calls[i % 1000]}),
        lambda i: conn.execute_fetchall(
            sql.expire_many(2),
            (
                LONG,
                NS,
                skey(calls[i % 1000], sessions[i % 1000]),
                ckey(calls[i % 1000], sessions[i % 1000]),
            ),
        ),
        note="1 session",
    )


async def close_rows(
    bench: Bench, registry: SessionRegistry, conn: aiosqlite.Connection, data: Sessions
) -> None:
    calls, sessions = data.calls, data.sessions

    async def raw_request_close(i: int) -> None:
        # GET of the session record; if it is there, SET of its close request.
        call, session = calls[i % 1000], sessions[i % 1000]
        if await conn.execute_fetchall(sql.GET, (NS, skey(call, session))):
            await conn.execute_fetchall(
                sql.SET, (NS, ckey(call, session), data.flags[i % 1000], LONG)
            )

    await bench.compare(
        "request_close",
        lambda i: registry.request_close(calls[i % 1000], sessions[i % 1000]),
        raw_request_close,
        note="get + set",
    )

    async def raw_close_requests(i: int) -> object:
        # MGET of the close key; when a request is pending, MGET of the session record.
        call, session = calls[i % 1000], sessions[i % 1000]
        if await conn.execute_fetchall(sql.mget_many(1), (NS, ckey(call, session))):
            return await conn.execute_fetchall(sql.mget_many(1), (NS, skey(call, session)))
        return None

    await bench.compare(
        "get_close_requests",
        lambda i: registry.get_close_requests({sessions[i % 1000]: calls[i % 1000]}),
        raw_close_requests,
        note="1 session, its request pending: 2 reads",
    )
    # The request_close row left those requests pending: both sides took the 2-read path.
    assert await registry.get_close_requests({sessions[0]: calls[0]}) == [sessions[0]]
    assert await raw_close_requests(0)


async def listing_rows(
    bench: Bench, registry: SessionRegistry, conn: aiosqlite.Connection, data: Sessions
) -> None:
    calls = data.calls
    await bench.compare(
        "get_for_call",
        lambda i: registry.get_for_call(calls[i % 100]),
        lambda i: conn.execute_fetchall(
            sql.SCAN_RANGE,
            (NS, f"s/{calls[i % 100]}/".encode(), f"s/{calls[i % 100]}0".encode()),
        ),
        note="10 sessions per call",
    )

    async def raw_listing_decoded(i: int) -> list[SessionInfo]:
        prefix = f"s/{calls[i % 100]}/"
        rows = await conn.execute_fetchall(
            sql.SCAN_RANGE, (NS, prefix.encode(), f"s/{calls[i % 100]}0".encode())
        )
        return [SessionInfo.from_dict(json.loads(value)) for _, value in rows]

    await bench.compare(
        "get_for_call vs raw + JSON decode",
        lambda i: registry.get_for_call(calls[i % 100]),
        raw_listing_decoded,
        note="raw side also builds the 10 SessionInfo",
    )


async def get_for_call_scaling(tmp: Path, ops: int, big: int) -> list[tuple[int, float]]:
    """get_for_call of a 10-session call among ``others`` sessions of other calls."""
    results = []
    for others in (1000, big):
        path = tmp / f"scale-{others}.db"
        async with SQLiteSessionKVStore(path, namespace="scale") as store:
            registry = SessionRegistry(store, node_id="node-a", ttl=LONG)
            batch: list[tuple[str, bytes, float]] = []
            for i in range(others):
                call, session = f"call-{i // 10:06d}", f"sess-{i}"
                batch.append((f"s/{call}/{session}", session_record(call, session, "node-a"), LONG))
                if len(batch) == 240:
                    await store.mset(batch)
                    batch = []
            if batch:
                await store.mset(batch)
            for j in range(10):
                await registry.register("the-call", f"sess-{j}")
            assert len(await registry.get_for_call("the-call")) == 10
            listing = registry.get_for_call
            samples = [await rate(lambda f=listing: f("the-call"), ops) for _ in range(3)]
            results.append((others, max(samples)))
    return results


async def sweep_under_load(tmp: Path, big: int) -> str:
    """Sweep ``big`` expired rows while another connection keeps writing: how long the
    sweep takes and how long the writer's single-row sets wait meanwhile."""
    clock = ManualClock(start=time.time())
    path = tmp / "sweep.db"
    async with (
        SQLiteSessionKVStore(path, namespace="swept", clock=clock, sweep_interval=3600) as swept,
        SQLiteSessionKVStore(path, namespace="writer") as writer,
    ):
        for start in range(0, big, 240):
            rows = range(start, min(start + 240, big))
            await swept.mset([(f"s/call-{j // 10}/sess-{j}", b"x" * 150, 10.0) for j in rows])
        clock.advance(20)
        waits: list[float] = []
        sweeping = True

        async def write_meanwhile() -> None:
            i = 0
            while sweeping:
                started = time.perf_counter()
                await writer.set(f"k{i % 100}", b"v", LONG)
                waits.append(time.perf_counter() - started)
                i += 1

        task = asyncio.ensure_future(write_meanwhile())
        started = time.perf_counter()
        swept_rows = await swept.purge_expired()
        elapsed = time.perf_counter() - started
        sweeping = False
        await task
    waits.sort()
    return (
        f"sweep of {swept_rows:,} expired rows (batches of 500): {elapsed:.2f} s; "
        f"meanwhile another connection did {len(waits):,} sets, wait p50 "
        f"{waits[len(waits) // 2] * 1e3:.2f} ms, p99 {waits[int(len(waits) * 0.99)] * 1e3:.2f} ms, "
        f"max {waits[-1] * 1e3:.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds, best kept")
    parser.add_argument("--big", type=int, default=100_000, help="sessions for the scaling row")
    args = parser.parse_args()
    bench = Bench(args.ops, args.rounds)
    with tempfile.TemporaryDirectory(prefix="sessionkv-bench-") as tmp:
        await store_ops(bench, Path(tmp))
        await registry_ops(bench, Path(tmp))
        scaling = await get_for_call_scaling(Path(tmp), args.ops, args.big)
        sweep = await sweep_under_load(Path(tmp), args.big)
    print(
        f"SQLite {aiosqlite.sqlite_version}, aiosqlite {aiosqlite.__version__}, "
        f"{args.ops} sequential ops x best of {args.rounds} rounds\n"
    )
    print(bench.table())
    ratios = [raw / mine for name, mine, raw, _ in bench.rows if " vs " not in name]
    print(f"\nmedian raw/sessionkv: {statistics.median(ratios):.2f}x, worst {max(ratios):.2f}x")
    print("\n| get_for_call, 10 sessions, among | ops/s | time vs 1k |")
    print("|---|---:|---:|")
    base = scaling[0][1]
    for others, ops in scaling:
        print(f"| {others:,} other sessions | {ops:,.0f} | {base / ops:.2f}x |")
    print(f"\n{sweep}")


if __name__ == "__main__":
    asyncio.run(main())
