"""What the SQLite backend promises beyond the shared contract: URLs, files and
directories, WAL and the schema version, the expiry sweep, index-only prefix scans,
lock waits, batches larger than one statement, and clear errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import sessionkv
from sessionkv import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    SQLiteSessionKVStore,
    create_store,
)
from sessionkv.backends import _sqlite_schema as sql
from sessionkv.contract_tests import ManualClock

pytestmark = pytest.mark.sqlite


# Child interpreters import the very sessionkv this process imported.
CHILD_ENV = dict(
    os.environ,
    PYTHONPATH=os.pathsep.join(
        filter(
            None,
            [str(Path(sessionkv.__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")],
        )
    ),
)


def rows_in_file(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {sql.TABLE}").fetchone()[0])


# -- URLs and construction ------------------------------------------------------------


@pytest.mark.asyncio
async def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = create_store("sqlite:///data/rel.db?namespace=a%2Fb&busy_timeout=2")
    absolute = create_store(f"sqlite:///{tmp_path}/abs.db", sweep_interval=7)
    memory = create_store("sqlite://")
    assert isinstance(relative, SQLiteSessionKVStore)
    assert (relative.path, relative.namespace) == ("data/rel.db", "a/b")
    assert isinstance(absolute, SQLiteSessionKVStore) and absolute.path == f"{tmp_path}/abs.db"
    assert isinstance(memory, SQLiteSessionKVStore) and memory.in_memory
    assert relative.busy_timeout == 2.0 and memory.busy_timeout == 5.0
    aliased = create_store("sqlite://?timeout=3")
    assert isinstance(aliased, SQLiteSessionKVStore) and aliased.busy_timeout == 3.0
    async with relative, absolute:
        await relative.set("k", b"v", 60)
        await absolute.set("k", b"w", 60)
    assert (tmp_path / "data" / "rel.db").is_file() and (tmp_path / "abs.db").is_file()


def test_bad_urls_and_options() -> None:
    with pytest.raises(ConfigurationError, match="sqlite:///relative"):
        SQLiteSessionKVStore.from_url("sqlite://somehost/x.db")
    with pytest.raises(ConfigurationError, match="unknown option"):
        SQLiteSessionKVStore.from_url("sqlite:///x.db?colour=red")
    with pytest.raises(ConfigurationError):
        SQLiteSessionKVStore.from_url("sqlite:///x.db?busy_timeout=soon")
    with pytest.raises(ValueError):
        SQLiteSessionKVStore("x.db", synchronous="sometimes")
    with pytest.raises(ValueError):
        SQLiteSessionKVStore("x.db", busy_timeout=0)
    with pytest.raises(TypeError):
        SQLiteSessionKVStore(42)  # type: ignore[arg-type]


def test_semantics_follow_the_path(tmp_path: Path) -> None:
    shared = SQLiteSessionKVStore(tmp_path / "kv.db").semantics
    private = SQLiteSessionKVStore(":memory:").semantics
    assert shared.shared_across_processes and not shared.shared_across_hosts
    assert not private.shared_across_processes and not private.shared_across_hosts
    assert shared.expiry_lag == 0 and shared.atomic_mset


def test_repr_names_path_and_namespace(tmp_path: Path) -> None:
    text = repr(SQLiteSessionKVStore(tmp_path / "kv.db", namespace="ns"))
    assert "kv.db" in text and "'ns'" in text


# -- files, WAL, schema -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_parent_directories_are_created_and_wal_is_on(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "kv.db"
    async with SQLiteSessionKVStore(path) as store:
        await store.set("k", b"v", 60)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == sql.SCHEMA_VERSION


@pytest.mark.asyncio
async def test_data_survives_reopening(tmp_path: Path) -> None:
    async with SQLiteSessionKVStore(tmp_path / "kv.db", namespace="n") as store:
        await store.mset([("a", b"1", 60), ("b", b"", 60)])
    async with SQLiteSessionKVStore(tmp_path / "kv.db", namespace="n") as store:
        assert await store.scan("") == [("a", b"1"), ("b", b"")]


@pytest.mark.asyncio
async def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {sql.SCHEMA_VERSION + 1}")
    store = SQLiteSessionKVStore(path)
    with pytest.raises(ConfigurationError, match="upgrade sessionkv"):
        await store.start()
    await store.close()


@pytest.mark.asyncio
async def test_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("not a directory")
    store = SQLiteSessionKVStore(tmp_path / "plain-file" / "kv.db")
    with pytest.raises(BackendUnavailableError, match="cannot create the directory"):
        await store.set("k", b"v", 60)
    await store.close()
    (tmp_path / "a-directory.db").mkdir()
    store = SQLiteSessionKVStore(tmp_path / "a-directory.db")
    with pytest.raises(BackendUnavailableError, match="must be writable"):
        await store.start()
    await store.close()


@pytest.mark.asyncio
async def test_a_file_that_is_not_a_database_is_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    store = SQLiteSessionKVStore(path)
    with pytest.raises(BackendError, match="not a database"):
        await store.start()
    await store.close()


# -- expiry ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sweep_reclaims_expired_rows_in_batches(tmp_path: Path) -> None:
    clock = ManualClock(start=1_700_000_000.0)
    path = tmp_path / "kv.db"
    async with (
        SQLiteSessionKVStore(path, namespace="a", clock=clock, sweep_batch=7) as a,
        SQLiteSessionKVStore(path, namespace="b", clock=clock) as b,
    ):
        await a.mset([(f"short/{i}", b"x", 10) for i in range(50)])
        await a.mset([(f"long/{i}", b"x", 1000) for i in range(5)])
        await b.set("short", b"x", 10)
        clock.advance(5)
        assert await a.purge_expired() == 0
        clock.advance(6)
        # expired rows are never read, swept or not
        assert await a.keys("") == [f"long/{i}" for i in range(5)]
        assert rows_in_file(path) == 56
        assert await a.purge_expired() == 51  # every namespace in the file, 7 at a time
        assert rows_in_file(path) == 5
        assert await b.get("short") is None


@pytest.mark.asyncio
async def test_background_sweep_runs_on_its_interval(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    async with SQLiteSessionKVStore(path, sweep_interval=0.05) as store:
        await store.mset([(f"k{i}", b"x", 0.05) for i in range(100)])
        await store.set("kept", b"x", 60)
        deadline = asyncio.get_running_loop().time() + 10
        while rows_in_file(path) > 1:
            assert asyncio.get_running_loop().time() < deadline, "the sweep never ran"
            await asyncio.sleep(0.05)
        assert await store.keys("") == ["kept"]


# -- prefix scans ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_prefix_no_key_can_have_is_an_empty_result() -> None:
    async with SQLiteSessionKVStore(":memory:") as store:
        await store.set("a", b"v", 60)
        assert await store.keys("a\ud800") == []
        assert await store.scan("\udfff") == []


def test_prefix_upper_bound() -> None:
    assert sql.prefix_upper_bound(b"") is None
    assert sql.prefix_upper_bound(b"\xff\xff") is None
    assert sql.prefix_upper_bound(b"ab") == b"ac"
    assert sql.prefix_upper_bound(b"a\xff") == b"b"
    assert sql.prefix_upper_bound(b"a\x00") == b"a\x01"
    top = "a\U0010ffff".encode()
    assert sql.prefix_upper_bound(top) == b"a\xf4\x8f\xbf\xc0"


def test_reads_use_the_primary_key_and_the_sweep_uses_the_expiry_index() -> None:
    conn = sqlite3.connect(":memory:")
    for statement in sql.SCHEMA:
        conn.execute(statement)

    def plan(statement: str, params: tuple[object, ...]) -> str:
        rows = conn.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
        return " | ".join(str(row[-1]) for row in rows)

    ns, now = b"ns", 1.0
    for statement, params in [
        (sql.GET, (ns, b"k", now)),
        (sql.KEYS_RANGE, (ns, b"a", b"b", now)),
        (sql.KEYS_FROM, (ns, b"\xff", now)),
        (sql.SCAN_RANGE, (ns, b"a", b"b", now)),
        (sql.mget_many(3), (ns, now, b"a", b"b", b"c")),
        (sql.expire_many(2), (2.0, ns, now, b"a", b"b")),
        (sql.delete_many(2), (ns, b"a", b"b")),
    ]:
        text = plan(statement, params)
        assert "PRIMARY KEY" in text and "expires_at" not in text, (statement, text)
        assert "LIKE" not in statement
    assert "USING COVERING INDEX sessionkv_entries_expires_at" in plan(sql.SWEEP, (now, 10))


# -- batches, concurrency, locks -----------------------------------------------------------


@pytest.mark.asyncio
async def test_batches_larger_than_one_statement(tmp_path: Path) -> None:
    clock = ManualClock(start=1_700_000_000.0)
    async with SQLiteSessionKVStore(tmp_path / "kv.db", clock=clock) as store:
        keys = [f"k{i:05d}" for i in range(2600)]
        others = [store.set(f"other{i}", b"o", 60) for i in range(50)]
        # a multi-statement transaction and single statements interleaved on one connection
        await asyncio.gather(store.mset([(k, k.encode(), 60) for k in keys]), *others)
        assert await store.mget(keys) == [k.encode() for k in keys]
        assert len(await store.keys("other")) == 50
        await store.expire(*keys[:2000], ttl=1)
        clock.advance(2)
        assert await store.keys("k") == keys[2000:]
        await store.delete([*keys, "missing"])
        assert await store.keys("k") == []


@pytest.mark.asyncio
async def test_waits_for_another_writer_then_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    async with (
        SQLiteSessionKVStore(path, busy_timeout=30) as store,
        SQLiteSessionKVStore(path) as reader,
    ):
        await store.set("k", b"before", 60)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction
        try:
            write = asyncio.ensure_future(store.set("k", b"after", 60))
            done, _ = await asyncio.wait({write}, timeout=0.3)
            assert not done, "the write went through while another connection held the lock"
            assert await reader.get("k") == b"before"  # WAL: readers are not blocked
        finally:
            holder.execute("COMMIT")
            holder.close()
        await write
        assert await store.get("k") == b"after"


@pytest.mark.asyncio
async def test_lock_held_past_busy_timeout_is_a_timeout_error(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    async with SQLiteSessionKVStore(path, busy_timeout=0.2) as store:
        await store.set("k", b"v", 60)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(BackendTimeoutError, match="busy_timeout") as caught:
                await store.mset([(f"k{i}", b"v", 60) for i in range(600)])
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await store.set("k2", b"v", 60)  # the store is still usable
        assert await store.keys("") == ["k", "k2"]


# -- packaging ---------------------------------------------------------------------------


def test_module_imports_without_aiosqlite_and_names_the_extra(tmp_path: Path) -> None:
    script = (
        "import sys, asyncio\n"
        "sys.modules['aiosqlite'] = None\n"
        "from sessionkv.backends.sqlite import SQLiteSessionKVStore\n"
        "from sessionkv import MissingExtraError\n"
        f"store = SQLiteSessionKVStore({str(tmp_path / 'kv.db')!r})\n"
        "try:\n"
        "    asyncio.run(store.start())\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=CHILD_ENV
    )
    assert 'pip install "sessionkv[sqlite]"' in out.stdout


@pytest.mark.asyncio
@pytest.mark.parametrize("steps", [0, 1, 3, 8, 30])
async def test_cancelled_batch_is_all_or_nothing_and_leaves_no_transaction(
    tmp_path: Path, steps: int
) -> None:
    path = tmp_path / "kv.db"
    async with SQLiteSessionKVStore(path) as store, SQLiteSessionKVStore(path) as other:
        keys = [f"k{i:05d}" for i in range(2600)]  # several statements, one transaction
        batch = asyncio.ensure_future(store.mset([(k, b"v", 60) for k in keys]))
        for _ in range(steps):
            await asyncio.sleep(0)
        batch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await batch
        assert len(await other.keys("k")) in (0, len(keys))
        # the connection is back in autocommit: this write is visible to another one
        await store.set("after", b"x", 60)
        assert await other.get("after") == b"x"


_AS_ANOTHER_USER = """
import asyncio, os, sys, sqlite3
import aiosqlite
from sessionkv import SQLiteSessionKVStore, BackendUnavailableError
if os.geteuid() == 0:  # root writes anywhere: drop to nobody, after the imports
    os.setgid(65534)
    os.setuid(65534)

async def attempt(path):
    store = SQLiteSessionKVStore(path)
    try:
        await store.set("k", b"v", 60)
        return "written"
    except BackendUnavailableError as exc:
        return str(exc)
    finally:
        await store.close()

for path in sys.argv[1:]:
    print(asyncio.run(attempt(path)).replace(chr(10), " "))
"""


def test_read_only_file_and_directory_are_clear_errors() -> None:
    import shutil
    import tempfile

    # Not tmp_path: its parents are private to this user, and the check runs as nobody.
    base = Path(tempfile.mkdtemp(prefix="sessionkv-ro-"))
    try:
        base.chmod(0o777)
        ro_file = base / "ro.db"
        with sqlite3.connect(ro_file) as conn:
            conn.execute("CREATE TABLE t (x)")
        ro_file.chmod(0o444)
        ro_dir = base / "ro-dir"
        ro_dir.mkdir(mode=0o555)
        ro_dir.chmod(0o555)
        out = subprocess.run(
            [sys.executable, "-c", _AS_ANOTHER_USER, str(ro_file), str(ro_dir / "kv.db")],
            capture_output=True,
            text=True,
            check=True,
            env=CHILD_ENV,
        ).stdout.splitlines()
        assert len(out) == 2, out
        for line, path in zip(out, [ro_file, ro_dir / "kv.db"], strict=True):
            assert str(path) in line and "must be writable" in line, line
    finally:
        shutil.rmtree(base, ignore_errors=True)
