"""Worker processes for the SQLite multi-process tests: ``python sqlite_workers.py <mode> ...``.

Each mode talks to the test over stdin/stdout, one line per step, so the test can line
the processes up ("ready" ... "go") and know exactly what each one committed. Any
exception ends the process with a traceback on stderr and a non-zero status.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import types

from sessionkv import SessionRegistry, SQLiteSessionKVStore

SHARED_CALL = "shared-call"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def read_line() -> str:
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


async def churn(path: str, node: str, sessions: int) -> None:
    """Register, update, refresh and read sessions, many at a time, against a file that
    other churn workers hammer too; short-lived keys keep the expiry sweep busy."""
    store = SQLiteSessionKVStore(path, namespace="registry", sweep_interval=0.05)
    scratch = SQLiteSessionKVStore(path, namespace=f"scratch-{node}", sweep_interval=0.05)
    async with store, scratch, SessionRegistry(store, node_id=node, ttl=120) as registry:
        say("ready")
        if await read_line() != "go":
            raise SystemExit("expected 'go'")
        ids = [f"{node}/{i}" for i in range(sessions)]
        mine = dict.fromkeys(ids, SHARED_CALL)
        for start in range(0, sessions, 10):
            batch = ids[start : start + 10]
            await asyncio.gather(*(registry.register(SHARED_CALL, s) for s in batch))
            await scratch.mset([(f"tmp/{s}", b"x" * 100, 0.01) for s in batch])
            await asyncio.gather(
                *(registry.update_metrics(SHARED_CALL, s, {"n": i}) for i, s in enumerate(batch))
            )
            await registry.refresh(mine)
            listed = await registry.get_for_call(SHARED_CALL)
            seen = {info.session_id for info in listed}
            missing = set(ids[: start + len(batch)]) - seen
            if missing:
                raise AssertionError(f"{node} lost its own sessions: {sorted(missing)[:5]}")
        for i, session_id in enumerate(ids):
            await registry.update_metrics(SHARED_CALL, session_id, {"n": i, "final": 1})
        await registry.refresh(mine)
        say(json.dumps({"node": node, "seen": len(await registry.get_for_call(SHARED_CALL))}))


async def writer(path: str) -> None:
    """Write batches forever, printing each batch number once its commit returned."""
    async with SQLiteSessionKVStore(path, namespace="crash") as store:
        payload = bytes(range(256)) * 16  # 4 KiB: each batch spans many pages
        batch = 0
        while True:
            await store.mset([(f"b{batch}/{j}", payload, 300.0) for j in range(20)])
            await store.set(f"single/{batch}", b"%d" % batch, 300.0)
            say(str(batch))
            batch += 1


async def node(path: str) -> None:
    """The far end of the two-process registry test (see test_sqlite_processes)."""
    store = SQLiteSessionKVStore(path, namespace="two-nodes")
    async with store, SessionRegistry(store, node_id="child", ttl=120) as registry:
        await registry.register("call", "child-session")
        say("registered")
        if await read_line() != "go":
            raise SystemExit("expected 'go'")
        parent = await registry.get("call", "parent-session")
        say(json.dumps(None if parent is None else parent.to_dict()))
        say(json.dumps(await registry.get_close_requests({"child-session": "call"})))
        await registry.remove("call", "child-session")
        say("removed")


async def abandon(path: str, ending: str) -> None:
    """A node that never closes its store (nor stops its registry). ``ending`` is
    ``return`` (the program just ends) or ``sigterm`` (it refreshes its session until
    SIGTERM, which a handler turns into ``SystemExit``, as servers commonly do)."""
    store = SQLiteSessionKVStore(path, namespace="abandoned", sweep_interval=0.05)
    registry = SessionRegistry(store, node_id="abandoning", ttl=60)
    await registry.register("call", "session")
    if ending == "return":
        say("ready")
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    say("ready")
    while True:
        await registry.refresh({"session": "call"})
        await asyncio.sleep(0.05)


def hide_aiosqlite_thread() -> None:
    """Make aiosqlite look like a version that keeps its worker thread where the store
    cannot reach it, to exercise the store's fallback."""
    import aiosqlite.core

    original = aiosqlite.core.Connection.__init__

    def init(self: aiosqlite.core.Connection, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self._thread = types.SimpleNamespace(start=self._thread.start)  # type: ignore[assignment]

    aiosqlite.core.Connection.__init__ = init  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "churn":
        asyncio.run(churn(args[0], args[1], int(args[2])))
    elif mode == "writer":
        asyncio.run(writer(args[0]))
    elif mode == "node":
        asyncio.run(node(args[0]))
    elif mode == "abandon":
        if "hide-thread" in args[2:]:
            hide_aiosqlite_thread()
        asyncio.run(abandon(args[0], args[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
