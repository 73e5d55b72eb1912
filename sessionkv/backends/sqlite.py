"""SQLite store: one embedded file that several processes on one host share.

Every operation is one SQL statement on one aiosqlite connection (so one thread hop and
at most one commit); batches too large for one statement run in one ``BEGIN
IMMEDIATE`` transaction, so lock waits happen at ``BEGIN``, under the busy timeout.
The database runs in WAL mode: readers never block the writer, and a process killed
mid-write leaves every committed transaction intact. Expired rows are filtered at read
time against ``skv_now()``, the store's clock read by SQLite when the statement runs
(after any wait for another process's lock); a background sweep deletes them in
bounded batches through an index on the expiry time, one short write statement per
batch. Expiry times are wall-clock Unix times, the clock every process on the host
shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.checks import check_seconds, prefix_upper_bound
from ..core.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    StoreClosedError,
)
from ..core.imports import import_client
from ..core.store import SessionKVStore
from ..core.types import StoreSemantics
from ..core.urls import parse_store_url
from . import _sqlite_schema as sql
from . import declared_semantics

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["SQLiteSessionKVStore"]

log = logging.getLogger("sessionkv.sqlite")

MEMORY = ":memory:"
"""The ``path`` of a private in-memory database (``sqlite://`` as a URL)."""

_SHARED_FILE = declared_semantics("sqlite")
_IN_MEMORY = dataclasses.replace(_SHARED_FILE, shared_across_processes=False)

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_SWEEP_PAUSE = 0.005  # between sweep statements, so writers in other processes get the lock
# SQLite keeps its busy timeout in int milliseconds.
_MAX_BUSY_TIMEOUT = (2**31 - 1) / 1000

_T = TypeVar("_T")


def _is_sqlite_error(exc: BaseException) -> bool:
    return type(exc).__module__ == "sqlite3"


def _is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds a lock we need."""
    if not _is_sqlite_error(exc):
        return False
    name = getattr(exc, "sqlite_errorname", "")  # Python >= 3.11
    if name:
        return str(name).startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or "locked" in text


def _is_unwritable(exc: BaseException) -> bool:
    text = str(exc).lower()
    return _is_sqlite_error(exc) and (
        "unable to open" in text or "readonly" in text or "read-only" in text
    )


def _unique_encoded(keys: list[str]) -> list[bytes]:
    return list(dict.fromkeys([key.encode() for key in keys]))


def _chunks(items: list[bytes], size: int) -> list[list[bytes]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- letting a process exit with a store it never closed ------------------------------
#
# aiosqlite runs each connection on a worker thread that is not a daemon, and the
# interpreter waits for every non-daemon thread before it even runs atexit hooks: a
# connection never closed would keep its process alive for ever (and the base class's
# "never closed" warning, an atexit hook, would never show). So the worker is made a
# daemon before it starts. Should aiosqlite keep its thread where we cannot reach it,
# the fallback asks the workers of still-open connections to stop when the interpreter
# shuts its threads down (before it joins them).

_stop_at_shutdown: weakref.WeakSet[Any] = weakref.WeakSet()
_shutdown_hook_installed = False


def _worker_thread(conn: object) -> threading.Thread | None:
    if isinstance(conn, threading.Thread):  # older aiosqlite: the connection is the thread
        return conn
    thread = getattr(conn, "_thread", None)  # aiosqlite 0.22: it owns one
    return thread if isinstance(thread, threading.Thread) else None


def _let_process_exit_without_close(conn: aiosqlite.Connection) -> None:
    """Call before awaiting ``aiosqlite.connect(...)``, which starts the worker."""
    global _shutdown_hook_installed
    thread = _worker_thread(conn)
    if thread is not None and thread.ident is None:  # not started yet
        thread.daemon = True
        return
    register = getattr(threading, "_register_atexit", None)  # CPython >= 3.9
    if not callable(register) or not callable(getattr(conn, "stop", None)):
        log.debug("cannot make aiosqlite's worker a daemon; close the store before exit")
        return
    if not _shutdown_hook_installed:
        register(_stop_open_workers)
        _shutdown_hook_installed = True
    _stop_at_shutdown.add(conn)


def _stop_open_workers() -> None:
    for conn in list(_stop_at_shutdown):  # the stores that were never closed
        with contextlib.suppress(Exception):
            conn.stop()


class SQLiteSessionKVStore(SessionKVStore):
    """Keys in a SQLite file shared by the processes of one host (or ``":memory:"``).

    ``path`` is the database file (parent directories are created) or ``":memory:"``
    for a private in-memory database. ``busy_timeout`` is how long an operation waits
    for another process's write lock before raising
    :class:`~sessionkv.BackendTimeoutError`. ``sweep_interval`` is how often expired
    rows are deleted, ``sweep_batch`` how many rows each sweep statement deletes.
    ``synchronous`` is SQLite's durability level: ``"NORMAL"`` (default) survives any
    process crash, a power loss may drop the last commits; ``"FULL"`` also survives
    power loss, at the cost of an fsync per write. ``clock`` returns Unix time; SQLite
    calls it (on the connection's thread) each time a statement runs, and processes
    sharing a file must use the same clock.
    """

    # The declaration of its usual use, a file; an in-memory store narrows it (below).
    SEMANTICS = _SHARED_FILE

    def __init__(
        self,
        path: str | os.PathLike[str] = MEMORY,
        *,
        namespace: str = "",
        busy_timeout: float = 5.0,
        sweep_interval: float = 30.0,
        sweep_batch: int = 500,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(namespace=namespace)
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be str or os.PathLike, not {type(path).__name__}")
        path = os.fspath(path)
        if not isinstance(path, str):
            raise TypeError(f"path must be a str path, not {type(path).__name__}")
        if not path:
            raise ConfigurationError("path must be a non-empty file path or ':memory:'")
        self._path = path
        self._ns = namespace.encode()  # the base refused a namespace UTF-8 cannot encode
        self._busy_timeout = check_seconds("busy_timeout", busy_timeout)
        if self._busy_timeout > _MAX_BUSY_TIMEOUT:
            raise ConfigurationError(
                f"busy_timeout must be at most {_MAX_BUSY_TIMEOUT:g} s, not {busy_timeout!r}"
            )
        self._sweep_every = check_seconds("sweep_interval", sweep_interval)
        if isinstance(sweep_batch, bool) or not isinstance(sweep_batch, int):
            raise TypeError(f"sweep_batch must be an int, not {type(sweep_batch).__name__}")
        if sweep_batch < 1:
            raise ConfigurationError(f"sweep_batch must be >= 1, not {sweep_batch}")
        self._rows_per_sweep = sweep_batch
        if not isinstance(synchronous, str):
            raise TypeError(f"synchronous must be str, not {type(synchronous).__name__}")
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, not {synchronous!r}"
            )
        self._synchronous = synchronous.upper()
        if not callable(clock):
            raise TypeError("clock must be a callable returning Unix time in seconds")
        self._clock = clock
        self._conn: aiosqlite.Connection | None = None
        # Held by a multi-statement transaction from before its BEGIN is queued until
        # its COMMIT or ROLLBACK has run (or is at least queued, should a second
        # cancellation interrupt the rollback). A single statement goes straight to the
        # connection only while the lock is free (it is then queued ahead of any later
        # BEGIN); otherwise, and for every retry after SQLITE_BUSY, it waits for the
        # lock: so none lands inside another task's transaction on the shared connection.
        self._txn_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteSessionKVStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite://``
        (in-memory), with options such as ``?namespace=...&busy_timeout=10``."""
        parsed = parse_store_url(url)
        if parsed.scheme != "sqlite" or parsed.netloc:
            raise ConfigurationError(
                f"a SQLite URL is 'sqlite:///relative/path.db', 'sqlite:////absolute/path.db' "
                f"or 'sqlite://' (in-memory), not {parsed.redacted!r}"
            )
        # urlsplit keeps the slash after the authority: "/rel.db" -> "rel.db", "//abs" -> "/abs"
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        opts = parsed.options(
            options,
            allowed={
                "namespace": str,
                "busy_timeout": float,
                "timeout": float,
                "sweep_interval": float,
                "sweep_batch": int,
                "synchronous": str,
            },
        )
        if "timeout" in opts:  # the name other backends use for the same knob
            timeout = opts.pop("timeout")
            opts.setdefault("busy_timeout", timeout)
        return cls(path or MEMORY, **opts)

    @property
    def semantics(self) -> StoreSemantics:
        return _IN_MEMORY if self.in_memory else _SHARED_FILE

    @property
    def path(self) -> str:
        return self._path

    @property
    def in_memory(self) -> bool:
        return self._path == MEMORY

    @property
    def busy_timeout(self) -> float:
        """Seconds an operation waits for another connection's write lock."""
        return self._busy_timeout

    def _describe(self) -> str:
        path = getattr(self, "_path", None)
        return "" if path is None else f"path={path!r}"

    # -- lifecycle -----------------------------------------------------------------

    async def _start(self) -> None:
        aiosqlite = import_client("aiosqlite", backend="sqlite", extra="sqlite")
        if not self.in_memory:
            self._make_parent_directory()
            self._probe_open()
        conn = aiosqlite.connect(
            self._path,
            isolation_level=None,  # autocommit: we issue BEGIN IMMEDIATE ourselves
            timeout=self._busy_timeout,
            cached_statements=256,
        )
        _let_process_exit_without_close(conn)
        try:
            await conn  # starts the worker thread; aiosqlite stops it if this fails
        except Exception as exc:
            raise self._open_error(exc) from exc
        try:
            await self._prepare(conn)
        except BaseException as exc:  # failed or cancelled: release what we opened
            with contextlib.suppress(Exception):
                await conn.close()  # stops the worker even if cancelled again
            if isinstance(exc, Exception) and _is_unwritable(exc):
                raise self._open_error(exc) from exc
            raise
        self._conn = conn

    def _make_parent_directory(self) -> None:
        parent = os.path.dirname(os.path.abspath(self._path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot create the directory {parent!r} for the SQLite database "
                f"{self._path!r}: {exc.strerror or exc}"
            ) from exc

    def _probe_open(self) -> None:
        """Open the file once with the stdlib driver first: when aiosqlite's connect
        fails, its thread outlives the call and may report to a closed event loop."""
        import sqlite3

        try:
            sqlite3.connect(self._path).close()
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc

    def _open_error(self, exc: BaseException) -> BackendUnavailableError:
        name = os.path.basename(self._path)
        return BackendUnavailableError(
            f"cannot open the SQLite database {self._path!r} for writing ({exc}); the file "
            f"and its directory must be writable: SQLite also creates {name}-wal and "
            f"{name}-shm next to it"
        )

    async def _prepare(self, conn: aiosqlite.Connection) -> None:
        """The clock, pragmas, WAL and the schema; retried while another process holds
        a lock."""
        await sql.install_clock(conn, self._clock)
        await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        if not self.in_memory:
            await self._enable_wal(conn)
        await conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        if await self._schema_version(conn) == sql.SCHEMA_VERSION:
            return  # the common case: no write lock taken at start

        async def create(conn: aiosqlite.Connection) -> None:
            version = await self._schema_version(conn)
            if version > sql.SCHEMA_VERSION:
                return
            for statement in sql.SCHEMA:
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {sql.SCHEMA_VERSION}")

        await self._in_transaction(create, conn)
        version = await self._schema_version(conn)
        if version != sql.SCHEMA_VERSION:
            raise ConfigurationError(
                f"{self!r}: the database has schema version {version}, newer than this "
                f"sessionkv supports ({sql.SCHEMA_VERSION}); upgrade sessionkv"
            )

    async def _enable_wal(self, conn: aiosqlite.Connection) -> None:
        mode = await self._retrying(lambda: conn.execute_fetchall("PRAGMA journal_mode"))
        if str(next(iter(mode))[0]).lower() == "wal":
            return
        mode = await self._retrying(lambda: conn.execute_fetchall("PRAGMA journal_mode = WAL"))
        if str(next(iter(mode))[0]).lower() != "wal":
            raise BackendError(
                f"{self!r}: SQLite refused WAL mode (is {self._path!r} on a network "
                "file system?); processes could not share it safely"
            )

    @staticmethod
    async def _schema_version(conn: aiosqlite.Connection) -> int:
        rows = await conn.execute_fetchall("PRAGMA user_version")
        return int(next(iter(rows))[0])

    async def _close(self) -> None:
        # Statements already queued on the connection finish first; later ones find no
        # connection and raise StoreClosedError.
        conn, self._conn = self._conn, None
        if conn is not None:
            _stop_at_shutdown.discard(conn)
            await conn.close()

    # -- statements ----------------------------------------------------------------

    async def _retrying(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``attempt`` again while it fails with SQLITE_BUSY, for up to the busy
        timeout: the busy handler covers most lock waits, but SQLite skips it in a few
        cases (WAL recovery, switching journal mode) and fails at once."""
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.002
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if not _is_busy(exc) or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.1)

    def _connection(self) -> aiosqlite.Connection:
        conn = self._conn
        if conn is None:
            raise StoreClosedError(f"{self!r} is closed")
        return conn

    async def _statement(self, run: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        """``run`` one auto-committed statement, never inside another task's
        transaction (see ``_txn_lock``): a retry after SQLITE_BUSY is queued only once
        no transaction of this store is open or queued."""
        if not self._txn_lock.locked():
            try:
                return await run(self._connection())
            except Exception as exc:
                if not _is_busy(exc):
                    raise
        async with self._txn_lock:
            conn = self._connection()
            return await self._retrying(lambda: run(conn))

    async def _execute(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """One statement (a read or a write), auto-committed; its rows."""

        async def run(conn: aiosqlite.Connection) -> list[Any]:
            rows = await conn.execute_fetchall(statement, params)
            return rows  # type: ignore[return-value] # fetchall() is a list

        return await self._statement(run)

    async def _execute_counting(self, statement: str, params: Sequence[Any]) -> int:
        """One write statement, auto-committed; how many rows it changed."""

        async def run(conn: aiosqlite.Connection) -> int:
            cursor = await conn.execute(statement, params)
            return max(int(cursor.rowcount), 0)

        return await self._statement(run)

    async def _in_transaction(
        self,
        body: Callable[[aiosqlite.Connection], Awaitable[None]],
        conn: aiosqlite.Connection | None = None,
    ) -> None:
        """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction; roll back on any error."""

        async def attempt(conn: aiosqlite.Connection) -> None:
            try:
                # Inside the try: a cancelled BEGIN still runs on the connection's thread.
                await conn.execute("BEGIN IMMEDIATE")
                await body(conn)
                await conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")  # queued at once, even if cancelled
                raise

        async with self._txn_lock:
            in_use = conn or self._connection()
            await self._retrying(lambda: attempt(in_use))

    async def _write_batches(self, batches: list[tuple[str, Sequence[Any]]]) -> None:
        """Several statements atomically: one auto-commit if there is one, else a
        transaction."""
        if len(batches) == 1:
            await self._execute(*batches[0])
            return

        async def body(conn: aiosqlite.Connection) -> None:
            for statement, params in batches:
                await conn.execute(statement, params)

        await self._in_transaction(body)

    # -- primitives ------------------------------------------------------------------

    async def _set(self, key: str, value: bytes, ttl: float, only_if_exists: bool) -> None:
        if only_if_exists:
            await self._execute(sql.SET_IF_EXISTS, (value, ttl, self._ns, key.encode()))
        else:
            await self._execute(sql.SET, (self._ns, key.encode(), value, ttl))

    async def _compare_and_set(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        params = (value, ttl, self._ns, key.encode(), expected)
        return await self._execute_counting(sql.COMPARE_AND_SET, params) > 0

    async def _mset(self, items: list[tuple[str, bytes, float]]) -> None:
        rows_per_statement = sql.MAX_PARAMS // 4
        batches: list[tuple[str, Sequence[Any]]] = []
        for start in range(0, len(items), rows_per_statement):
            chunk = items[start : start + rows_per_statement]
            params: list[Any] = []
            for key, value, ttl in chunk:
                params += (self._ns, key.encode(), value, ttl)
            batches.append((sql.mset_many(len(chunk)), params))
        await self._write_batches(batches)

    async def _get(self, key: str) -> bytes | None:
        rows = await self._execute(sql.GET, (self._ns, key.encode()))
        return rows[0][0] if rows else None  # BLOBs come back as bytes

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        encoded = [key.encode() for key in keys]
        found: dict[bytes, bytes] = {}
        for chunk in _chunks(list(dict.fromkeys(encoded)), sql.MAX_PARAMS - 1):
            rows = await self._execute(sql.mget_many(len(chunk)), (self._ns, *chunk))
            found.update(rows)
        return [found.get(key) for key in encoded]

    def _range(self, prefix: str, statements: tuple[str, str, str]) -> tuple[str, tuple[Any, ...]]:
        """The statement and parameters for the half-open key range of ``prefix``."""
        if not prefix:
            return statements[0], (self._ns,)
        low = prefix.encode()
        high = prefix_upper_bound(low)
        if high is None:
            return statements[1], (self._ns, low)
        return statements[2], (self._ns, low, high)

    async def _keys(self, prefix: str) -> list[str]:
        statement, params = self._range(prefix, (sql.KEYS_ALL, sql.KEYS_FROM, sql.KEYS_RANGE))
        return [row[0].decode() for row in await self._execute(statement, params)]

    async def _scan(self, prefix: str) -> list[tuple[str, bytes]]:
        statement, params = self._range(prefix, (sql.SCAN_ALL, sql.SCAN_FROM, sql.SCAN_RANGE))
        return [(k.decode(), v) for k, v in await self._execute(statement, params)]

    async def _delete(self, keys: list[str]) -> None:
        unique = _unique_encoded(keys)
        chunks = _chunks(unique, sql.MAX_PARAMS - 1)
        await self._write_batches(
            [(sql.delete_many(len(chunk)), (self._ns, *chunk)) for chunk in chunks]
        )

    async def _expire(self, keys: list[str], ttl: float) -> None:
        chunks = _chunks(_unique_encoded(keys), sql.MAX_PARAMS - 2)
        await self._write_batches(
            [(sql.expire_many(len(chunk)), (ttl, self._ns, *chunk)) for chunk in chunks]
        )

    # -- expiry sweep ------------------------------------------------------------------

    async def purge_expired(self) -> int:
        """Delete every expired row (of every namespace in the file) now, ``sweep_batch``
        rows per auto-committed statement, with a short pause between statements so
        other processes' writers get the lock; returns how many rows it deleted."""
        await self._ensure_open()
        total = 0
        with self._errors:
            while True:
                deleted = await self._execute_counting(sql.SWEEP, (self._rows_per_sweep,))
                total += deleted
                if deleted < self._rows_per_sweep:
                    break
                await asyncio.sleep(_SWEEP_PAUSE)
        return total

    async def _sweep(self) -> int:
        return await self.purge_expired()

    # -- errors ------------------------------------------------------------------------

    def _translate_error(self, exc: Exception) -> BaseException:
        if _is_busy(exc):
            return BackendTimeoutError(
                f"{self!r}: the database stayed locked by another connection for longer "
                f"than busy_timeout={self._busy_timeout} s"
            )
        if _is_unwritable(exc):
            return self._open_error(exc)
        if _is_sqlite_error(exc):
            return BackendError(f"{self!r}: SQLite error: {type(exc).__name__}: {exc}")
        return super()._translate_error(exc)
