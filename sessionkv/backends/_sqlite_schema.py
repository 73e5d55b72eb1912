"""The SQL of the SQLite backend: schema, versioning and every statement the store runs.

Kept apart from the store so the benchmark can run exactly these statements on raw
aiosqlite. Keys and namespaces are BLOBs of UTF-8 bytes: BLOB comparison is
``memcmp``, so key order is code-point order and NUL survives. Reads filter expired
rows with ``+expires_at``: the unary plus keeps the planner on the primary key
(namespace, key) instead of the expiry index, which only the sweep should use.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = [
    "GET",
    "KEYS_ALL",
    "KEYS_FROM",
    "KEYS_RANGE",
    "MAX_PARAMS",
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
    "mget_many",
    "mset_many",
    "prefix_upper_bound",
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

_UPSERT_TAIL = (
    " ON CONFLICT (namespace, key) DO UPDATE"
    " SET value = excluded.value, expires_at = excluded.expires_at"
)

# (namespace, key, value, expires_at)
SET = f"INSERT INTO {TABLE} (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)" + _UPSERT_TAIL

# (value, expires_at, namespace, key, now)
SET_IF_EXISTS = (
    f"UPDATE {TABLE} SET value = ?, expires_at = ?"
    " WHERE namespace = ? AND key = ? AND expires_at > ?"
)

# (namespace, key, now)
GET = f"SELECT value FROM {TABLE} WHERE namespace = ? AND key = ? AND +expires_at > ?"

# (namespace, now) / (namespace, low, now) / (namespace, low, high, now)
KEYS_ALL = f"SELECT key FROM {TABLE} WHERE namespace = ? AND +expires_at > ? ORDER BY key"
KEYS_FROM = (
    f"SELECT key FROM {TABLE} WHERE namespace = ? AND key >= ? AND +expires_at > ? ORDER BY key"
)
KEYS_RANGE = (
    f"SELECT key FROM {TABLE}"
    " WHERE namespace = ? AND key >= ? AND key < ? AND +expires_at > ? ORDER BY key"
)
SCAN_ALL = KEYS_ALL.replace("SELECT key ", "SELECT key, value ", 1)
SCAN_FROM = KEYS_FROM.replace("SELECT key ", "SELECT key, value ", 1)
SCAN_RANGE = KEYS_RANGE.replace("SELECT key ", "SELECT key, value ", 1)

# (now, limit): a bounded batch found through the expiry index.
SWEEP = (
    f"DELETE FROM {TABLE} WHERE (namespace, key) IN"
    f" (SELECT namespace, key FROM {TABLE} WHERE expires_at <= ? LIMIT ?)"
)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


@lru_cache(maxsize=256)
def mget_many(count: int) -> str:
    """(namespace, now, *keys) -> rows of (key, value)."""
    return (
        f"SELECT key, value FROM {TABLE}"
        f" WHERE namespace = ? AND +expires_at > ? AND key IN ({_marks(count)})"
    )


@lru_cache(maxsize=256)
def delete_many(count: int) -> str:
    """(namespace, *keys)."""
    return f"DELETE FROM {TABLE} WHERE namespace = ? AND key IN ({_marks(count)})"


@lru_cache(maxsize=256)
def expire_many(count: int) -> str:
    """(expires_at, namespace, now, *keys); only live rows get the new expiry."""
    return (
        f"UPDATE {TABLE} SET expires_at = ?"
        f" WHERE namespace = ? AND expires_at > ? AND key IN ({_marks(count)})"
    )


@lru_cache(maxsize=256)
def mset_many(count: int) -> str:
    """(namespace, key, value, expires_at) * count, in one statement: atomic and one
    commit; a later row with the same key updates the earlier one, so it wins."""
    rows = ", ".join(["(?, ?, ?, ?)"] * count)
    return f"INSERT INTO {TABLE} (namespace, key, value, expires_at) VALUES {rows}" + _UPSERT_TAIL


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with ``prefix``,
    or ``None`` when there is none (empty prefix, or only 0xFF bytes)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))
