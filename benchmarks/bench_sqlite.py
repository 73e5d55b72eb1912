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

from sessionkv import SessionInfo, SessionRegistry, SQLiteSessionKVStore
from sessionkv.backends import _sqlite_schema as sql
from sessionkv.contract_tests import ManualClock
from sessionkv.core.checks import prefix_upper_bound
from sessionkv.core.registry import escape_segment

NS = b"bench"
LONG = 3600.0
Op = Callable[[int], Awaitable[Any]]


async def rate(op: Op, n: int) -> float:
    """Operations per second of ``n`` sequential calls."""
    started = time.perf_counter()
    for i in range(n):
        await op(i)
    return n / (time.perf_counter() - started)


async def raw_connection(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None, cached_statements=256)
    await sql.install_clock(conn, time.time)  # the statements read skv_now(), as the store's do
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = NORMAL")
    for statement in sql.SCHEMA:
        await conn.execute(statement)
    return conn


def record(call: str, session: str, node: str = "node-a") -> bytes:
    info = {
        "session_id": session,
        "call_id": call,
        "node_id": node,
        "started_at": time.time(),
        "metrics_updated_at": None,
        "metrics": {},
    }
    return json.dumps(info, separators=(",", ":")).encode()


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
        keys = [f"key/{i:05d}" for i in range(1000)]
        bkeys = [k.encode() for k in keys]
        await store.mset([(k, b"v" * 100, LONG) for k in keys])
        await conn.execute_fetchall(
            sql.mset_many(200), [p for k in bkeys[:200] for p in (NS, k, b"v" * 100, LONG)]
        )
        for start in range(200, 1000, 200):
            await conn.execute_fetchall(
                sql.mset_many(200),
                [p for k in bkeys[start : start + 200] for p in (NS, k, b"v" * 100, LONG)],
            )
        value = b"x" * 100

        await bench.compare(
            "set",
            lambda i: store.set(keys[i % 1000], value, LONG),
            lambda i: conn.execute_fetchall(sql.SET, (NS, bkeys[i % 1000], value, LONG)),
        )
        await bench.compare(
            "set only_if_exists",
            lambda i: store.set(keys[i % 1000], value, LONG, only_if_exists=True),
            lambda i: conn.execute_fetchall(sql.SET_IF_EXISTS, (value, LONG, NS, bkeys[i % 1000])),
        )
        await bench.compare(
            "get",
            lambda i: store.get(keys[i % 1000]),
            lambda i: conn.execute_fetchall(sql.GET, (NS, bkeys[i % 1000])),
        )
        batch_items = [
            [(keys[(i * 100 + j) % 1000], value, LONG) for j in range(100)] for i in range(10)
        ]
        await bench.compare(
            "mset",
            lambda i: store.mset(batch_items[i % 10]),
            lambda i: conn.execute_fetchall(
                sql.mset_many(100),
                [p for k, v, t in batch_items[i % 10] for p in (NS, k.encode(), v, t)],
            ),
            unit=100,
            note="rows/s, 100 per call",
        )
        batch_keys = [[k for k, _, _ in items] for items in batch_items]
        await bench.compare(
            "mget",
            lambda i: store.mget(batch_keys[i % 10]),
            lambda i: conn.execute_fetchall(
                sql.mget_many(100), (NS, *(k.encode() for k in batch_keys[i % 10]))
            ),
            unit=100,
            note="rows/s, 100 per call",
        )
        prefixes = [f"key/{i:03d}" for i in range(100)]  # 10 keys each
        await bench.compare(
            "keys",
            lambda i: store.keys(prefixes[i % 100]),
            lambda i: conn.execute_fetchall(
                sql.KEYS_RANGE,
                (
                    NS,
                    prefixes[i % 100].encode(),
                    prefix_upper_bound(prefixes[i % 100].encode()),
                ),
            ),
            note="10 matches",
        )
        await bench.compare(
            "scan",
            lambda i: store.scan(prefixes[i % 100]),
            lambda i: conn.execute_fetchall(
                sql.SCAN_RANGE,
                (
                    NS,
                    prefixes[i % 100].encode(),
                    prefix_upper_bound(prefixes[i % 100].encode()),
                ),
            ),
            note="10 matches",
        )
        await bench.compare(
            "expire",
            lambda i: store.expire(keys[i % 1000], keys[(i + 1) % 1000], ttl=LONG),
            lambda i: conn.execute_fetchall(
                sql.expire_many(2),
                (LONG, NS, bkeys[i % 1000], bkeys[(i + 1) % 1000]),
            ),
            note="2 keys",
        )
        await bench.compare(
            "delete",
            lambda i: store.delete([f"gone/{i}"]),
            lambda i: conn.execute_fetchall(sql.delete_many(1), (NS, f"gone/{i}".encode())),
            note="missing key",
        )
        # The usual hand-written batch, for reference: executemany in a transaction.
        rows = [[(NS, k.encode(), v, t) for k, v, t in items] for items in batch_items]

        async def executemany_batch(i: int) -> None:
            await conn.execute("BEGIN IMMEDIATE")
            await conn.executemany(sql.SET, rows[i % 10])
            await conn.execute("COMMIT")

        await bench.compare(
            "mset vs executemany",
            lambda i: store.mset(batch_items[i % 10]),
            executemany_batch,
            unit=100,
            note="rows/s; raw = BEGIN, executemany 100, COMMIT",
        )
    finally:
        await store.close()
        await conn.close()


async def registry_ops(bench: Bench, tmp: Path) -> None:
    store = SQLiteSessionKVStore(tmp / "registry.db", namespace=NS.decode())
    conn = await raw_connection(tmp / "registry-raw.db")
    registry = SessionRegistry(store, node_id="node-a", ttl=LONG)
    await registry.start()
    try:
        calls = [f"call-{i % 100}" for i in range(1000)]
        sessions = [f"sess-{i}" for i in range(1000)]
        records = [record(c, s) for c, s in zip(calls, sessions, strict=True)]
        metrics = {"rtt_ms": 12.5, "frames": 300, "loss": None}

        await bench.compare(
            "register",
            lambda i: registry.register(calls[i % 1000], sessions[i % 1000]),
            lambda i: conn.execute_fetchall(
                sql.SET,
                (NS, skey(calls[i % 1000], sessions[i % 1000]), records[i % 1000], LONG),
            ),
        )
        await bench.compare(
            "get (registry)",
            lambda i: registry.get(calls[i % 1000], sessions[i % 1000]),
            lambda i: conn.execute_fetchall(
                sql.GET, (NS, skey(calls[i % 1000], sessions[i % 1000]))
            ),
        )

        async def raw_update(i: int) -> None:
            key = skey(calls[i % 1000], sessions[i % 1000])
            rows = list(await conn.execute_fetchall(sql.GET, (NS, key)))
            if rows:
                await conn.execute_fetchall(sql.SET_IF_EXISTS, (records[i % 1000], LONG, NS, key))

        await bench.compare(
            "update_metrics",
            lambda i: registry.update_metrics(calls[i % 1000], sessions[i % 1000], metrics),
            raw_update,
            note="get + conditional set",
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
        flag = json.dumps({"requested_by": "node-b", "requested_at": 0.0}).encode()
        await bench.compare(
            "request_close",
            lambda i: registry.request_close(calls[i % 1000], sessions[i % 1000]),
            lambda i: conn.execute_fetchall(
                sql.SET, (NS, ckey(calls[i % 1000], sessions[i % 1000]), flag, LONG)
            ),
        )
        await bench.compare(
            "get_close_requests",
            lambda i: registry.get_close_requests({sessions[i % 1000]: calls[i % 1000]}),
            lambda i: conn.execute_fetchall(
                sql.mget_many(1), (NS, ckey(calls[i % 1000], sessions[i % 1000]))
            ),
            note="1 session",
        )
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
                batch.append((f"s/{call}/{session}", record(call, session), LONG))
                if len(batch) == 240:
                    await store.mset(batch)
                    batch = []
            if batch:
                await store.mset(batch)
            for j in range(10):
                await registry.register("the-call", f"sess-{j}")
            assert len(await registry.get_for_call("the-call")) == 10
            listing = registry.get_for_call
            samples = [await rate(lambda i, f=listing: f("the-call"), ops) for _ in range(3)]
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
