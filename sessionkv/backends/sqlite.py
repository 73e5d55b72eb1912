"""SQLite store: one embedded file that several processes on one host share.

Every operation is one SQL statement on one aiosqlite connection (so one thread hop and
at most one commit); batches too large for one statement run in one ``BEGIN
IMMEDIATE`` transaction, so lock waits happen at ``BEGIN``, under the busy timeout.
The database runs in WAL mode: readers never block the writer, and a process killed
mid-write leaves every committed transaction intact. Expired rows are filtered at read
time; a background sweep deletes them in bounded batches through an index on the
expiry time, one short write transaction per batch. Expiry times are wall-clock Unix
times, the clock every process on the host shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    SessionKVError,
    StoreClosedError,
)
from ..core.periodic import PeriodicTask
from ..core.imports import import_client
from ..core.store import SessionKVStore
from ..core.types import StoreSemantics
from ..core.urls import parse_store_url
from . import _sqlite_schema as sql

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["MEMORY", "SQLiteSessionKVStore"]

log = logging.getLogger("sessionkv.sqlite")

MEMORY = ":memory:"
"""The ``path`` of a private in-memory database (``sqlite://`` as a URL)."""

_SHARED_FILE = StoreSemantics(
    ttl_resolution=0.0,
    min_ttl=0.0,
    expiry_lag=0.0,  # reads filter on the expiry time: the sweep only frees space
    shared_across_processes=True,
    shared_across_hosts=False,
    atomic_mset=True,
    scan_cost="O(log n + k)",
)
_IN_MEMORY = dataclasses.replace(_SHARED_FILE, shared_across_processes=False)

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_SWEEP_PAUSE = 0.005  # between sweep batches, so writers in other processes get the lock

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


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be > 0")
    return float(value)


class SQLiteSessionKVStore(SessionKVStore):
    """Keys in a SQLite file shared by the processes of one host (or ``":memory:"``).

    ``path`` is the database file (parent directories are created) or ``":memory:"``
    for a private in-memory database. ``busy_timeout`` is how long an operation waits
    for another process's write lock before raising
    :class:`~sessionkv.BackendTimeoutError`. ``sweep_interval`` is how often expired
    rows are deleted, ``sweep_batch`` rows per write transaction. ``synchronous`` is
    SQLite's durability level: ``"NORMAL"`` (default) survives any process crash, a
    power loss may drop the last commits; ``"FULL"`` also survives power loss, at the
    cost of an fsync per write. ``clock`` returns Unix time; processes sharing a file
    must use the same clock.
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
        self._path = os.fspath(path)
        if not isinstance(self._path, str) or not self._path:
            raise ValueError("path must be a non-empty file path or ':memory:'")
        try:
            self._ns = namespace.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"namespace {namespace!r} is not encodable as UTF-8") from None
        self._busy_timeout = _positive("busy_timeout", busy_timeout)
        self._sweep_interval = _positive("sweep_interval", sweep_interval)
        if isinstance(sweep_batch, bool) or not isinstance(sweep_batch, int):
            raise TypeError("sweep_batch must be an int")
        if sweep_batch < 1:
            raise ValueError("sweep_batch must be >= 1")
        self._sweep_batch = sweep_batch
        if not isinstance(synchronous, str) or synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, not {synchronous!r}")
        self._synchronous = synchronous.upper()
        if not callable(clock):
            raise TypeError("clock must be a callable returning Unix time in seconds")
        self._clock = clock
        self._conn: aiosqlite.Connection | None = None
        # Held for a multi-statement transaction; single statements wait for it, so none
        # lands inside another task's transaction on the shared connection.
        self._txn_lock = asyncio.Lock()
        self._sweeper = PeriodicTask(
            f"sessionkv sqlite sweep {id(self):x}", self._sweep_interval, self.purge_expired
        )

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

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={self._path!r}, namespace={self.namespace!r}, "
            f"state={self._state.value})"
        )

    # -- lifecycle -----------------------------------------------------------------

    async def _start(self) -> None:
        aiosqlite = import_client("aiosqlite", backend="sqlite", extra="sqlite")
        if not self.in_memory:
            self._make_parent_directory()
            self._probe_open()
        try:
            conn = await aiosqlite.connect(
                self._path,
                isolation_level=None,  # autocommit: we issue BEGIN IMMEDIATE ourselves
                timeout=self._busy_timeout,
                cached_statements=256,
            )
        except Exception as exc:
            raise self._open_error(exc) from exc
        try:
            await self._prepare(conn)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, Exception) and _is_unwritable(exc):
                raise self._open_error(exc) from exc
            raise
        self._conn = conn
        self._sweeper.start()

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
        """Pragmas, WAL and the schema; retried while another process holds a lock."""
        await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        if not self.in_memory:
            mode = await self._retrying(lambda: conn.execute_fetchall("PRAGMA journal_mode"))
            if str(next(iter(mode))[0]).lower() != "wal":
                mode = await self._retrying(
                    lambda: conn.execute_fetchall("PRAGMA journal_mode = WAL")
                )
                if str(next(iter(mode))[0]).lower() != "wal":
                    raise BackendError(
                        f"{self!r}: SQLite refused WAL mode (is {self._path!r} on a network "
                        "file system?); processes could not share it safely"
                    )
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

        await self._in_transaction(conn, create)
        version = await self._schema_version(conn)
        if version != sql.SCHEMA_VERSION:
            raise ConfigurationError(
                f"{self!r}: the database has schema version {version}, newer than this "
                f"sessionkv supports ({sql.SCHEMA_VERSION}); upgrade sessionkv"
            )

    @staticmethod
    async def _schema_version(conn: aiosqlite.Connection) -> int:
        rows = await conn.execute_fetchall("PRAGMA user_version")
        return int(next(iter(rows))[0])

    async def _close(self) -> None:
        await self._sweeper.stop()
        conn, self._conn = self._conn, None
        if conn is not None:
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

    async def _fetch(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """One statement, auto-committed, in one hop to the connection's thread."""
        if self._txn_lock.locked():
            async with self._txn_lock:
                return await self._fetch_now(statement, params)
        return await self._fetch_now(statement, params)

    async def _fetch_now(self, statement: str, params: Sequence[Any]) -> list[Any]:
        conn = self._connection()
        try:
            rows = await conn.execute_fetchall(statement, params)
        except Exception as exc:
            if not _is_busy(exc):
                raise
            rows = await self._retrying(lambda: conn.execute_fetchall(statement, params))
        return rows  # type: ignore[return-value] # fetchall() is a list

    async def _in_transaction(
        self,
        conn: aiosqlite.Connection,
        body: Callable[[aiosqlite.Connection], Awaitable[None]],
    ) -> None:
        """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction; roll back on any error."""

        async def attempt() -> None:
            try:
                # Inside the try: a cancelled BEGIN still runs on the connection's thread.
                await conn.execute("BEGIN IMMEDIATE")
                await body(conn)
                await conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
                raise

        async with self._txn_lock:
            await self._retrying(attempt)

    async def _write_batches(self, batches: list[tuple[str, Sequence[Any]]]) -> None:
        """Several statements atomically: one auto-commit if there is one, else a
        transaction."""
        if len(batches) == 1:
            await self._fetch(*batches[0])
            return

        async def body(conn: aiosqlite.Connection) -> None:
            for statement, params in batches:
                await conn.execute(statement, params)

        await self._in_transaction(self._connection(), body)

    # -- primitives ------------------------------------------------------------------

    async def _set(self, key: str, value: bytes, ttl: float, only_if_exists: bool) -> None:
        now = self._clock()
        if only_if_exists:
            params: tuple[Any, ...] = (value, now + ttl, self._ns, key.encode(), now)
            await self._fetch(sql.SET_IF_EXISTS, params)
        else:
            await self._fetch(sql.SET, (self._ns, key.encode(), value, now + ttl))

    async def _mset(self, items: list[tuple[str, bytes, float]]) -> None:
        now = self._clock()
        rows_per_statement = sql.MAX_PARAMS // 4
        batches: list[tuple[str, Sequence[Any]]] = []
        for start in range(0, len(items), rows_per_statement):
            chunk = items[start : start + rows_per_statement]
            params: list[Any] = []
            for key, value, ttl in chunk:
                params += (self._ns, key.encode(), value, now + ttl)
            batches.append((sql.mset_many(len(chunk)), params))
        await self._write_batches(batches)

    async def _get(self, key: str) -> bytes | None:
        rows = await self._fetch(sql.GET, (self._ns, key.encode(), self._clock()))
        return rows[0][0] if rows else None  # BLOBs come back as bytes

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        encoded = [key.encode() for key in keys]
        now = self._clock()
        found: dict[bytes, bytes] = {}
        for chunk in _chunks(list(dict.fromkeys(encoded)), sql.MAX_PARAMS - 2):
            rows = await self._fetch(sql.mget_many(len(chunk)), (self._ns, now, *chunk))
            found.update(rows)
        return [found.get(key) for key in encoded]

    def _range(self, prefix: str, statements: tuple[str, str, str]) -> tuple[str, tuple[Any, ...]]:
        """The statement and parameters for the half-open key range of ``prefix``."""
        now = self._clock()
        if not prefix:
            return statements[0], (self._ns, now)
        low = prefix.encode()
        high = sql.prefix_upper_bound(low)
        if high is None:
            return statements[1], (self._ns, low, now)
        return statements[2], (self._ns, low, high, now)

    async def _keys(self, prefix: str) -> list[str]:
        statement, params = self._range(prefix, (sql.KEYS_ALL, sql.KEYS_FROM, sql.KEYS_RANGE))
        return [row[0].decode() for row in await self._fetch(statement, params)]

    async def _scan(self, prefix: str) -> list[tuple[str, bytes]]:
        statement, params = self._range(prefix, (sql.SCAN_ALL, sql.SCAN_FROM, sql.SCAN_RANGE))
        return [(k.decode(), v) for k, v in await self._fetch(statement, params)]

    async def _delete(self, keys: list[str]) -> None:
        unique = _unique_encoded(keys)
        if len(unique) < sql.MAX_PARAMS:  # the usual case: one statement
            await self._fetch(sql.delete_many(len(unique)), (self._ns, *unique))
            return
        await self._write_batches(
            [
                (sql.delete_many(len(chunk)), (self._ns, *chunk))
                for chunk in _chunks(unique, sql.MAX_PARAMS - 1)
            ]
        )

    async def _expire(self, keys: list[str], ttl: float) -> None:
        unique = _unique_encoded(keys)
        now = self._clock()
        await self._write_batches(
            [
                (sql.expire_many(len(chunk)), (now + ttl, self._ns, now, *chunk))
                for chunk in _chunks(unique, sql.MAX_PARAMS - 3)
            ]
        )

    # -- expiry sweep ------------------------------------------------------------------

    async def purge_expired(self) -> int:
        """Delete every expired row (of every namespace in the file) now, in batches of
        ``sweep_batch`` rows, one short write transaction each; returns how many."""
        await self._ensure_open()
        total = 0
        try:
            while True:
                async with self._txn_lock:  # never inside another task's transaction
                    cursor = await self._retrying(self._sweep_batch_once)
                deleted = max(cursor.rowcount, 0)
                total += deleted
                if deleted < self._sweep_batch:
                    return total
                await asyncio.sleep(_SWEEP_PAUSE)
        except SessionKVError:
            raise
        except Exception as exc:
            raise self._translate_error(exc) from exc

    def _sweep_batch_once(self) -> Awaitable[aiosqlite.Cursor]:
        return self._connection().execute(sql.SWEEP, (self._clock(), self._sweep_batch))

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
