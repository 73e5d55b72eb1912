"""The SQLite backend shared by real OS processes on one file: concurrent registries,
a registry pair across two processes, a writer killed with SIGKILL mid-write, and
processes that exit (or are stopped with SIGTERM) without closing their store."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

import sessionkv
from sessionkv import SessionRegistry, SQLiteSessionKVStore

pytestmark = [pytest.mark.sqlite, pytest.mark.asyncio]

WORKER = str(Path(__file__).with_name("sqlite_workers.py"))
# The workers import the very sessionkv this process imported (install or source tree).
SESSIONKV_ROOT = str(Path(sessionkv.__file__).resolve().parent.parent)
STEP_TIMEOUT = 60.0  # generous: a loaded 2-core CI machine starts Python slowly


async def spawn(*args: str, python_flags: tuple[str, ...] = ()) -> asyncio.subprocess.Process:
    path = os.pathsep.join(filter(None, [SESSIONKV_ROOT, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *python_flags,
        WORKER,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), STEP_TIMEOUT)
    if not line:
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode(errors="replace")
        raise AssertionError(f"worker ended early (status {await proc.wait()}):\n{err}")
    return line.decode().strip()


async def send(proc: asyncio.subprocess.Process, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line.encode() + b"\n")
    await proc.stdin.drain()


async def finish(proc: asyncio.subprocess.Process) -> str:
    """Wait for a clean exit; return stderr (which must not mention a locked database)."""
    _, err = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT)
    text = err.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "locked" not in text.lower(), text
    return text


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


async def test_four_processes_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    nodes, sessions = [f"node-{i}" for i in range(4)], 200
    procs = [await spawn("churn", str(path), node, str(sessions)) for node in nodes]
    try:
        for proc in procs:  # every worker is connected before any starts writing
            assert await read_line(proc) == "ready"
        for proc in procs:
            await send(proc, "go")
        reports = [json.loads(await read_line(proc)) for proc in procs]
        for proc in procs:
            await finish(proc)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert [r["node"] for r in reports] == nodes
    assert all(sessions <= r["seen"] <= sessions * len(nodes) for r in reports)

    store = SQLiteSessionKVStore(path, namespace="registry")
    async with store, SessionRegistry(store, node_id="checker") as registry:
        found = await registry.get_for_call("shared-call")
    expected = {
        (f"{node}/{i}", node, i) for node in nodes for i in range(sessions)
    }  # every write of every process landed, the last metrics update included
    assert {(s.session_id, s.node_id, s.metrics.get("n")) for s in found} == expected
    assert all(s.metrics.get("final") == 1 for s in found)
    assert integrity(path) == "ok"


async def test_registry_pair_across_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "nodes.db"
    proc = await spawn("node", str(path))
    store = SQLiteSessionKVStore(path, namespace="two-nodes")
    try:
        async with store, SessionRegistry(store, node_id="parent", ttl=120) as registry:
            assert await read_line(proc) == "registered"
            # the child's session is visible here, with the child's node id
            seen = await registry.get_for_call("call")
            assert [(s.session_id, s.node_id) for s in seen] == [("child-session", "child")]
            await registry.register("call", "parent-session")
            await registry.request_close("call", "child-session")
            await send(proc, "go")
            # ... and this process's session and close request are visible there
            parent = json.loads(await read_line(proc))
            assert (parent["session_id"], parent["node_id"]) == ("parent-session", "parent")
            assert json.loads(await read_line(proc)) == ["child-session"]
            assert await read_line(proc) == "removed"
            await finish(proc)
            assert await registry.get("call", "child-session") is None
            assert await registry.get_close_requests({"child-session": "call"}) == []
            assert [s.session_id for s in await registry.get_for_call("call")] == ["parent-session"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.slow
async def test_writer_killed_mid_write_keeps_every_commit(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    proc = await spawn("writer", str(path))
    committed: list[int] = []
    try:
        while len(committed) < 150:
            committed.append(int(await read_line(proc)))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # lines printed before the kill are commits too
    committed += [int(line) for line in out.decode().split()]
    assert committed == list(range(len(committed)))

    assert integrity(path) == "ok"
    payload = bytes(range(256)) * 16
    async with SQLiteSessionKVStore(path, namespace="crash") as store:
        for batch in committed:
            keys = [f"b{batch}/{j}" for j in range(20)]
            assert await store.mget(keys) == [payload] * 20, batch
            assert await store.get(f"single/{batch}") == b"%d" % batch
        # the file takes writes again after the crash
        await store.set("after-crash", b"ok", 60)
        assert await store.get("after-crash") == b"ok"
    assert integrity(path) == "ok"


# Seconds from the worker's last step to its end. It takes a fraction of a second; a
# process kept alive by a store's thread never ends.
EXIT_TIMEOUT = 20.0


@pytest.mark.parametrize("where", ["file", "memory"])
@pytest.mark.parametrize("ending", ["return", "sigterm", "return, aiosqlite hides its thread"])
async def test_a_process_that_never_closes_its_store_exits_and_says_so(
    tmp_path: Path, where: str, ending: str
) -> None:
    path = str(tmp_path / "kv.db") if where == "file" else ":memory:"
    args = ["abandon", path, ending.split(",")[0]]
    if "hides" in ending:
        args.append("hide-thread")
    # -X dev shows ResourceWarning, as a developer's run or a test run would
    proc = await spawn(*args, python_flags=("-X", "dev"))
    try:
        assert await read_line(proc) == "ready"
        if ending == "sigterm":
            proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            _, err = await asyncio.wait_for(proc.communicate(), EXIT_TIMEOUT)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"the process was still alive {EXIT_TIMEOUT} s after it should have "
                "exited: an unclosed store kept it running"
            ) from None
        took = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode(errors="replace")
    assert proc.returncode == 0, text
    assert took < EXIT_TIMEOUT
    # the warning names the store that was left open
    assert f"SQLiteSessionKVStore(path={path!r}, namespace='abandoned', state=open)" in text, text
    assert "ResourceWarning" in text and "was never closed" in text, text
    if where == "file":  # every acknowledged write is in the file
        store = SQLiteSessionKVStore(path, namespace="abandoned")
        async with store, SessionRegistry(store, node_id="checker") as registry:
            assert [s.session_id for s in await registry.get_for_call("call")] == ["session"]
