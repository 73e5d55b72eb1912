"""What the SQLite backend promises beyond the shared contract: URLs, files and
directories, WAL and the schema version, the expiry sweep, index-only prefix scans,
expiry judged when a statement runs (not when it was queued behind a lock wait), lock
waits and retries that never land in another task's transaction, batches larger than
one statement, and clear errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import sessionkv
from sessionkv import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    SessionRegistry,
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


STEP_TIMEOUT = 60.0  # generous: a loaded 2-core CI machine


def rows_in_file(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {sql.TABLE}").fetchone()[0])


def value_in_file(path: Path, key: str) -> bytes | None:
    """What a fresh connection (another process) finds for ``key``, expired or not."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        row = conn.execute(f"SELECT value FROM {sql.TABLE} WHERE key = ?", (key.encode(),))
        found = row.fetchone()
    return None if found is None else bytes(found[0])


@contextlib.contextmanager
def another_writer(path: Path) -> Iterator[None]:
    """Another process's write transaction on the file, held until the block ends."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("COMMIT")
        holder.close()


class StatementWatch:
    """The statements a store's connection starts, in the order it runs them (sqlite3's
    trace callback, called on aiosqlite's worker thread as each statement begins)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self.started: list[str] = []

    @classmethod
    async def on(cls, store: SQLiteSessionKVStore) -> StatementWatch:
        watch = cls()
        await store._connection().set_trace_callback(watch._traced)
        return watch

    def _traced(self, statement: str) -> None:  # on the worker thread
        self._loop.call_soon_threadsafe(self._record, statement)

    def _record(self, statement: str) -> None:
        self.started.append(statement)
        self._changed.set()

    async def until_started(self, fragment: str) -> None:
        """Wait until the connection has started a statement containing ``fragment``."""
        while not any(fragment in statement for statement in self.started):
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), STEP_TIMEOUT)


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


def test_bad_urls_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="sqlite:///relative"):
        SQLiteSessionKVStore.from_url("sqlite://somehost/x.db")
    with pytest.raises(ConfigurationError, match="unknown option"):
        SQLiteSessionKVStore.from_url("sqlite:///x.db?colour=red")
    with pytest.raises(ConfigurationError):
        SQLiteSessionKVStore.from_url("sqlite:///x.db?busy_timeout=soon")


@pytest.mark.parametrize(
    "query",
    [
        "busy_timeout=0",
        "busy_timeout=-1",
        "busy_timeout=inf",
        "busy_timeout=nan",
        "busy_timeout=1e300",
        "timeout=0",
        "sweep_interval=0",
        "sweep_interval=inf",
        "sweep_batch=0",
        "sweep_batch=-5",
        "synchronous=BOGUS",
    ],
)
def test_option_values_out_of_range_are_configuration_errors(query: str) -> None:
    # a ConfigurationError is what the CLI reports in one line, and what
    # `except ConfigurationError` in a deployment's start-up code catches
    with pytest.raises(ConfigurationError, match=query.split("=")[0]):
        SQLiteSessionKVStore.from_url(f"sqlite:///x.db?{query}")


def test_option_values_in_the_constructor() -> None:
    for options in (
        {"busy_timeout": 0},
        {"sweep_interval": -1.0},
        {"sweep_batch": 0},
        {"synchronous": "sometimes"},
    ):
        with pytest.raises(ConfigurationError):
            SQLiteSessionKVStore("x.db", **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="path"):
        SQLiteSessionKVStore("")
    for options in (
        {"busy_timeout": "5"},
        {"sweep_batch": 2.5},
        {"sweep_batch": True},
        {"synchronous": 1},
        {"clock": 12.0},
    ):
        with pytest.raises(TypeError):
            SQLiteSessionKVStore("x.db", **options)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SQLiteSessionKVStore(42)  # type: ignore[arg-type]
    assert SQLiteSessionKVStore("x.db", synchronous="full", sweep_batch=1).path == "x.db"


def test_semantics_follow_the_path(tmp_path: Path) -> None:
    shared = SQLiteSessionKVStore(tmp_path / "kv.db").semantics
    private = SQLiteSessionKVStore(":memory:").semantics
    assert shared.shared_across_processes and not shared.shared_across_hosts
    assert not private.shared_across_processes and not private.shared_across_hosts
    for semantics in (shared, private):
        assert semantics.expiry_lag == 0 and semantics.atomic_mset
        assert semantics.atomic_compare_and_set and semantics.max_key_bytes == 1024


def test_repr_names_path_and_namespace(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    text = repr(SQLiteSessionKVStore(path, namespace="ns"))
    assert text == f"SQLiteSessionKVStore(path={str(path)!r}, namespace='ns', state=new)"


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


def test_reads_use_the_primary_key_and_the_sweep_uses_the_expiry_index() -> None:
    conn = sqlite3.connect(":memory:")
    conn.create_function("skv_now", 0, lambda: 1.0, deterministic=True)
    for statement in sql.SCHEMA:
        conn.execute(statement)

    def plan(statement: str, params: tuple[object, ...]) -> str:
        rows = conn.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
        return " | ".join(str(row[-1]) for row in rows)

    ns, ttl = b"ns", 60.0
    for statement, params in [
        (sql.GET, (ns, b"k")),
        (sql.KEYS_ALL, (ns,)),
        (sql.KEYS_RANGE, (ns, b"a", b"b")),
        (sql.KEYS_FROM, (ns, b"\xff")),
        (sql.SCAN_RANGE, (ns, b"a", b"b")),
        (sql.SCAN_FROM, (ns, b"\xff")),
        (sql.mget_many(3), (ns, b"a", b"b", b"c")),
        (sql.expire_many(2), (ttl, ns, b"a", b"b")),
        (sql.delete_many(2), (ns, b"a", b"b")),
        (sql.SET_IF_EXISTS, (b"v", ttl, ns, b"k")),
        (sql.COMPARE_AND_SET, (b"v", ttl, ns, b"k", b"old")),
    ]:
        text = plan(statement, params)
        assert "PRIMARY KEY" in text and "expires_at" not in text, (statement, text)
        assert "LIKE" not in statement
    assert "USING COVERING INDEX sessionkv_entries_expires_at" in plan(sql.SWEEP, (10,))


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


# -- expiry is judged when a statement runs ------------------------------------------------
#
# A statement can wait up to busy_timeout for another process's write lock, and every
# later operation of the store queues behind it on the one connection. "Now" must be
# the time the statement runs, not the time it was called: the tests below queue
# operations while another connection holds the lock, let the TTLs run out on the
# store's (manual) clock while they wait, then release the lock.

T0 = 1_700_000_000.0


@pytest.mark.asyncio
async def test_refresh_waiting_for_the_lock_never_revives_what_expired_meanwhile(
    tmp_path: Path,
) -> None:
    clock = ManualClock(start=T0)
    path = tmp_path / "kv.db"
    async with SQLiteSessionKVStore(path, clock=clock, busy_timeout=STEP_TIMEOUT) as store:
        await store.mset([(key, b"v", 10) for key in ("refreshed", "rewritten", "swapped")])
        watch = await StatementWatch.on(store)
        with another_writer(path):
            refresh = asyncio.ensure_future(store.expire("refreshed", ttl=60))
            rewrite = asyncio.ensure_future(store.set("rewritten", b"new", 60, only_if_exists=True))
            swap = asyncio.ensure_future(store.compare_and_set("swapped", b"v", b"new", 60))
            await watch.until_started("UPDATE")  # the first waits for the lock, the rest behind
            clock.advance(11)  # every TTL runs out while they wait
        await refresh
        await rewrite
        swapped = await swap
        for key in ("refreshed", "rewritten", "swapped"):
            assert await store.get(key) is None, f"{key!r} expired while waiting, then came back"
            assert value_in_file(path, key) == b"v", "an expired row was written over"
        assert swapped is False, "compare_and_set reported a write over an expired key"


@pytest.mark.asyncio
async def test_registry_refresh_after_a_lock_wait_never_resurrects_a_session(
    tmp_path: Path,
) -> None:
    clock = ManualClock(start=T0)
    path = tmp_path / "kv.db"
    node_a = SQLiteSessionKVStore(path, clock=clock, busy_timeout=STEP_TIMEOUT)
    node_b = SQLiteSessionKVStore(path, clock=clock)
    async with (
        SessionRegistry(node_a, node_id="a", ttl=10) as a,
        SessionRegistry(node_b, node_id="b", ttl=10) as b,
    ):
        await a.register("call", "s1")
        await a.register("call", "s2")
        clock.advance(8)  # 2 s of life left: a refresh now would give 10 s more
        watch = await StatementWatch.on(node_a)
        with another_writer(path):
            refresh = asyncio.ensure_future(a.refresh({"s1": "call", "s2": "call"}))
            metrics = asyncio.ensure_future(a.update_metrics("call", "s2", {"rtt": 1}))
            await watch.until_started("UPDATE")
            clock.advance(3)  # ... but they expire while the refresh waits for the lock
            assert await b.get_for_call("call") == []
        await refresh
        await metrics
        assert await b.get_for_call("call") == [], "refresh() resurrected expired sessions"


@pytest.mark.asyncio
async def test_a_write_that_waited_for_the_lock_is_not_born_expired(tmp_path: Path) -> None:
    clock = ManualClock(start=T0)
    path = tmp_path / "kv.db"
    async with SQLiteSessionKVStore(path, clock=clock, busy_timeout=STEP_TIMEOUT) as store:
        watch = await StatementWatch.on(store)
        with another_writer(path):
            single = asyncio.ensure_future(store.set("born", b"v", 10))
            batch = asyncio.ensure_future(store.mset([("batch", b"v", 10)]))
            await watch.until_started("INSERT")
            clock.advance(20)  # longer than the TTL: a TTL counted from the call is over
        await single
        await batch
        assert await store.mget(["born", "batch"]) == [b"v", b"v"]
        clock.advance(9.9)
        assert await store.mget(["born", "batch"]) == [b"v", b"v"]
        clock.advance(0.2)
        assert await store.mget(["born", "batch"]) == [None, None]


@pytest.mark.asyncio
async def test_a_read_queued_behind_a_lock_wait_returns_no_expired_value(
    tmp_path: Path,
) -> None:
    clock = ManualClock(start=T0)
    path = tmp_path / "kv.db"
    async with SQLiteSessionKVStore(path, clock=clock, busy_timeout=STEP_TIMEOUT) as store:
        await store.mset([("k", b"v", 10), ("other/k", b"v", 10)])
        watch = await StatementWatch.on(store)
        with another_writer(path):
            write = asyncio.ensure_future(store.set("unrelated", b"x", 60))
            reads = asyncio.gather(store.get("k"), store.mget(["k"]), store.scan(""))
            await watch.until_started("INSERT")  # the reads queue behind this write
            clock.advance(11)
        await write
        # declared expiry_lag is 0: a read answered after the TTL never returns the key
        assert await reads == [None, [None], [("unrelated", b"x")]]


@pytest.mark.asyncio
async def test_compare_and_set_is_atomic_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "kv.db"
    async with SQLiteSessionKVStore(path) as a, SQLiteSessionKVStore(path) as b:
        for round_ in range(5):
            await a.set("k", b"start", 60)
            racers = [
                (a if i % 2 else b).compare_and_set("k", b"start", b"w%d" % i, 60)
                for i in range(16)
            ]
            won = await asyncio.gather(*racers)
            assert sum(won) == 1, f"round {round_}: {sum(won)} of 16 writers won"
            assert await b.get("k") == b"w%d" % won.index(True)


# -- retries after SQLITE_BUSY -------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_retried_statement_never_runs_inside_another_tasks_transaction(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kv.db"
    keys = [f"b{i:04d}" for i in range(3000)]  # several statements: one transaction
    async with SQLiteSessionKVStore(path, busy_timeout=1.0) as store:
        await store.set("warm", b"", 60)
        watch = await StatementWatch.on(store)
        with another_writer(path):
            single = asyncio.ensure_future(store.set("single", b"acknowledged", 60))
            batch = asyncio.ensure_future(store.mset([(k, b"x", 60) for k in keys]))
            # the single INSERT fails with SQLITE_BUSY after busy_timeout; then the
            # connection runs the batch's BEGIN IMMEDIATE, queued behind it
            await watch.until_started("BEGIN IMMEDIATE")
            await asyncio.sleep(0.05)  # a store that retries at once has queued it by now
        await single  # acknowledged ...
        batch.cancel()  # ... and then the batch is cancelled (a wait_for timeout, say)
        with contextlib.suppress(asyncio.CancelledError, BackendTimeoutError):
            await batch
        assert await store.get("single") == b"acknowledged"
    assert value_in_file(path, "single") == b"acknowledged", (
        "set() returned, then its write was rolled back with another task's transaction"
    )
    assert rows_in_file(path) in (2, 2 + len(keys))  # the batch: all or nothing


# -- start, close and exit ---------------------------------------------------------------


def _worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "connection_worker" in t.name}


@pytest.mark.asyncio
@pytest.mark.parametrize("where", ["file", "memory"])
async def test_cancelled_or_closed_start_leaves_no_worker_thread(
    tmp_path: Path, where: str
) -> None:
    before = _worker_threads()
    path = str(tmp_path / "kv.db") if where == "file" else ":memory:"
    outcomes: list[str] = []
    steps = 0
    # interrupt start() after 0, 7, 14, ... event-loop steps, by cancel() and by close()
    # in turn, until one start finishes first: every point of a start is covered,
    # however fast or slow the machine is
    while "started" not in outcomes:
        assert steps < 100_000, f"start() never finished: {outcomes[-5:]}"
        store = SQLiteSessionKVStore(path)
        starting = asyncio.ensure_future(store.start())
        for _ in range(steps):
            await asyncio.sleep(0)
        if len(outcomes) % 2:
            starting.cancel()
        else:
            await store.close()
        try:
            await starting
            outcomes.append("started")
        except (asyncio.CancelledError, sessionkv.StoreClosedError) as exc:
            outcomes.append(type(exc).__name__)
        await store.close()
        assert store.closed
        steps += 7
    assert {"CancelledError", "StoreClosedError"} <= set(outcomes), outcomes
    for thread in _worker_threads() - before:
        thread.join(STEP_TIMEOUT)
        assert not thread.is_alive(), "a cancelled or closed start leaked its worker thread"


@pytest.mark.asyncio
async def test_worker_threads_are_daemons(tmp_path: Path) -> None:
    # what lets a process that never closed its store exit (test_sqlite_processes)
    before = _worker_threads()
    async with SQLiteSessionKVStore(tmp_path / "kv.db") as a, SQLiteSessionKVStore() as b:
        await a.set("k", b"v", 60)
        await b.set("k", b"v", 60)
        mine = _worker_threads() - before
        assert len(mine) == 2 and all(thread.daemon for thread in mine)


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
