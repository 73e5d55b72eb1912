"""keys(prefix) and get_for_call on the memory store, with 1k vs 1M other keys.

Target (issue 2): the 1M figure within 2x of the 1k figure, i.e. the scan costs
O(log n + matches), not O(n). Run: ``python benchmarks/bench_memory.py``
(``--sizes 1000,1000000 --repeat 2000``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from sessionkv import InMemorySessionKVStore, SessionRegistry

SESSIONS_IN_CALL = 10


async def _fill(store: InMemorySessionKVStore, others: int) -> None:
    batch: list[tuple[str, bytes, float]] = []
    for i in range(others):
        batch.append((f"s/other-call-{i}/sess-{i}", b'{"x":1}', 3600.0))
        if len(batch) == 10_000:
            await store.mset(batch)
            batch.clear()
    if batch:
        await store.mset(batch)


async def _median_us(op: object, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await op()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


async def measure(others: int, repeat: int) -> tuple[float, float]:
    store = InMemorySessionKVStore()
    async with SessionRegistry(store, node_id="bench") as registry:
        await _fill(store, others)
        for i in range(SESSIONS_IN_CALL):
            await registry.register("the-call", f"sess-{i}")
        assert len(await registry.get_for_call("the-call")) == SESSIONS_IN_CALL
        keys_us = await _median_us(lambda: store.keys("s/the-call/"), repeat)
        gfc_us = await _median_us(lambda: registry.get_for_call("the-call"), repeat)
    return keys_us, gfc_us


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = [(n, *await measure(n, args.repeat)) for n in sizes]
    print(f"memory store, {SESSIONS_IN_CALL} sessions in the call, median of {args.repeat} calls")
    print("| other keys | keys(prefix) µs | get_for_call µs |")
    print("|---:|---:|---:|")
    for n, keys_us, gfc_us in rows:
        print(f"| {n:,} | {keys_us:.1f} | {gfc_us:.1f} |")
    base = rows[0]
    for n, keys_us, gfc_us in rows[1:]:
        print(
            f"ratio {n:,} / {base[0]:,}: keys {keys_us / base[1]:.2f}x, "
            f"get_for_call {gfc_us / base[2]:.2f}x (target <= 2x)"
        )


if __name__ == "__main__":
    asyncio.run(main())
