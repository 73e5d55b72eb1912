"""The SQL of the SQLite backend: schema, versioning and every statement the store runs.

Kept apart from the store so the benchmark can run exactly these statements on raw
aiosqlite. Keys and namespaces are BLOBs of UTF-8 bytes: BLOB comparison is
``memcmp``, so key order is code-point order and NUL survives. Reads filter expired
rows with ``+expires_at``: the unary plus keeps the planner on the primary key
(namespace, key) instead of the expiry index, which only the sweep should use.

"Now" is never a parameter: every statement reads it from :data:`NOW` (``skv_now()``,
the store's clock registered on the connection by :func:`install_clock`), so expiry is
judged at the moment the statement runs, after it got its locks, not when the caller
queued it (a statement can wait up to the busy timeout for another process's write
lock). TTLs are parameters; statements compute ``skv_now() + ttl`` themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiosqlite

__all__ = [
    "COMPARE_AND_SET",
    "GET",
    "KEYS_ALL",
    "KEYS_FROM",
    "KEYS_RANGE",
    "MAX_PARAMS",
    "NOW",
    "SCAN_ALL",
    "SCAN_FROM",
    "SCAN_RANGE",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SET",
    "SET_IF_EXISTS",
    "SWEEP",
    "TABLE",
    "delete_many",
    "expire_many",
    "install_clock",
    "mget_many",
    "mset_many",
]

TABLE = "sessionkv_entries"

SCHEMA_VERSION = 1
"""Stored in ``PRAGMA user_version``; a later release migrates from it."""

SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " namespace BLOB NOT NULL,"
    " key BLOB NOT NULL,"
    " value BLOB NOT NULL,"
    " expires_at REAL NOT NULL,"
    " PRIMARY KEY (namespace, key)"
    ") WITHOUT ROWID",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expires_at ON {TABLE} (expires_at)",
)

# SQLite before 3.32 allows 999 bound parameters per statement; stay under it everywhere.
MAX_PARAMS = 999

NOW = "skv_now()"
"""The current Unix time as the statement runs (see :func:`install_clock`)."""


async def install_clock(conn: aiosqlite.Connection, clock: Callable[[], float]) -> None:
    """Register ``clock`` as ``skv_now()`` on an aiosqlite connection.

    It is declared deterministic on purpose: SQLite then evaluates it once per
    statement execution (a factored constant, computed after the statement's
    ``Transaction`` step has taken its locks) instead of once per row, so one statement
    sees one "now", the one current when it actually ran."""
    await conn.create_function("skv_now", 0, clock, deterministic=True)


_UPSERT_TAIL = (
    " ON CONFLICT (namespace, key) DO UPDATE"
    " SET value = excluded.value, expires_at = excluded.expires_at"
)

# (namespace, key, value, ttl)
SET = (
    f"INSERT INTO {TABLE} (namespace, key, value, expires_at) VALUES (?, ?, ?, {NOW} + ?)"
    + _UPSERT_TAIL
)

# (value, ttl, namespace, key): only over a live row, never creating one.
SET_IF_EXISTS = (
    f"UPDATE {TABLE} SET value = ?, expires_at = {NOW} + ?"
    f" WHERE namespace = ? AND key = ? AND +expires_at > {NOW}"
)

# (value, ttl, namespace, key, expected): check and write in one statement.
COMPARE_AND_SET = (
    f"UPDATE {TABLE} SET value = ?, expires_at = {NOW} + ?"
    f" WHERE namespace = ? AND key = ? AND value = ? AND +expires_at > {NOW}"
)

# (namespace, key)
GET = f"SELECT value FROM {TABLE} WHERE namespace = ? AND key = ? AND +expires_at > {NOW}"

# (namespace,) / (namespace, low) / (namespace, low, high)
KEYS_ALL = f"SELECT key FROM {TABLE} WHERE namespace = ? AND +expires_at > {NOW} ORDER BY key"
KEYS_FROM = (
    f"SELECT key FROM {TABLE} WHERE namespace = ? AND key >= ? AND +expires_at > {NOW} ORDER BY key"
)
KEYS_RANGE = (
    f"SELECT key FROM {TABLE}"
    f" WHERE namespace = ? AND key >= ? AND key < ? AND +expires_at > {NOW} ORDER BY key"
)
SCAN_ALL = KEYS_ALL.replace("SELECT key ", "SELECT key, value ", 1)
SCAN_FROM = KEYS_FROM.replace("SELECT key ", "SELECT key, value ", 1)
SCAN_RANGE = KEYS_RANGE.replace("SELECT key ", "SELECT key, value ", 1)

# (limit,): a bounded batch of expired rows, found through the expiry index.
SWEEP = (
    f"DELETE FROM {TABLE} WHERE (namespace, key) IN"
    f" (SELECT namespace, key FROM {TABLE} WHERE expires_at <= {NOW} LIMIT ?)"
)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


@lru_cache(maxsize=256)
def mget_many(count: int) -> str:
    """(namespace, *keys) -> rows of (key, value)."""
    return (
        f"SELECT key, value FROM {TABLE}"
        f" WHERE namespace = ? AND +expires_at > {NOW} AND key IN ({_marks(count)})"
    )


@lru_cache(maxsize=256)
def delete_many(count: int) -> str:
    """(namespace, *keys)."""
    return f"DELETE FROM {TABLE} WHERE namespace = ? AND key IN ({_marks(count)})"


@lru_cache(maxsize=256)
def expire_many(count: int) -> str:
    """(ttl, namespace, *keys); only live rows get the new expiry."""
    return (
        f"UPDATE {TABLE} SET expires_at = {NOW} + ?"
        f" WHERE namespace = ? AND +expires_at > {NOW} AND key IN ({_marks(count)})"
    )


@lru_cache(maxsize=256)
def mset_many(count: int) -> str:
    """(namespace, key, value, ttl) * count, in one statement: atomic and one commit; a
    later row with the same key updates the earlier one, so it wins."""
    rows = ", ".join([f"(?, ?, ?, {NOW} + ?)"] * count)
    return f"INSERT INTO {TABLE} (namespace, key, value, expires_at) VALUES {rows}" + _UPSERT_TAIL
