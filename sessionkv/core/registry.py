"""`SessionRegistry`: the sessions of every node, kept in one shared store.

Key scheme (inside the store's namespace)::

    s/<call>/<session>   the session record (JSON of SessionInfo), TTL = registry ttl
    c/<call>/<session>   a close request for that session, same TTL

Each id is escaped (``%`` -> ``%25``, ``/`` -> ``%2F``) so no id can contain the
separator: ``s/<call>/`` is a prefix of exactly one call's sessions, whatever
characters the ids hold, and the escaping is reversible, so distinct ids never collide.

Every record carries a random ``registration`` token, and a close request names the
registration it was made for: a request that outlives its session (removed, expired,
registered again) never closes the next session with the same ids.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
import uuid
import warnings
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from .checks import check_text, escape_segment, utf8_length
from .errors import InvalidKeyError, SessionKVError, SessionKVWarning
from .store import SessionKVStore
from .types import Metrics, SessionInfo

__all__ = ["SessionRegistry", "escape_segment"]

log = logging.getLogger("sessionkv.registry")

_CAS_ATTEMPTS = 16
"""Rounds ``update_metrics`` retries when another writer changed the record between
its read and its write; each lost round means another update of the same session
landed, so this is only reached under pathological contention."""
_INT_RANGE = (-(2**63), 2**64)


def _check_ttl(ttl: object) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    try:
        seconds = float(ttl)
    except OverflowError:
        raise ValueError("ttl must be finite") from None
    if not seconds > 0:
        raise ValueError("ttl must be > 0")
    if not math.isfinite(seconds):
        raise ValueError("ttl must be finite")
    return seconds


def _check_metrics(metrics: object) -> Metrics:
    """A copy of ``metrics`` (a mapping, or an object whose ``to_dict()`` returns one)
    whose every value any strict JSON reader accepts."""
    to_dict = getattr(metrics, "to_dict", None)
    if not isinstance(metrics, Mapping) and callable(to_dict):
        metrics = to_dict()
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"metrics must be a mapping or have to_dict(), not {type(metrics).__name__}"
        )
    checked: Metrics = {}
    for name, value in metrics.items():
        check_text("metric name", name)
        if value is None:
            pass
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"metric {name!r} must be finite (JSON has no {value!r})")
        elif isinstance(value, int) and not isinstance(value, bool):
            if not _INT_RANGE[0] <= value < _INT_RANGE[1]:
                raise ValueError(f"metric {name!r} is out of the 64-bit range")
        else:
            raise TypeError(
                f"metric {name!r} must be int, float or None, not {type(value).__name__}"
            )
        checked[name] = value
    return checked


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _registration(record: dict[str, Any]) -> str:
    """The registration a record belongs to (records written before 0.2 have no token:
    their node and start time identify them)."""
    token = record.get("registration")
    if isinstance(token, str):
        return token
    return f"{record.get('node_id')}@{record.get('started_at')!r}"


class SessionRegistry:
    """Registers the sessions this node hosts; lists, closes and reads any node's.

    ``store`` defaults to :func:`~sessionkv.create_store` (``$SESSIONKV_URL`` if set,
    else this process's memory). :meth:`stop` (and leaving ``async with``) closes the
    store, given or made; pass ``close_store=False`` for a store several registries
    share, and close it yourself. Sessions live ``ttl`` seconds unless :meth:`refresh`
    keeps them alive.
    """

    def __init__(
        self,
        store: SessionKVStore | None = None,
        *,
        node_id: str | None = None,
        ttl: float = 30.0,
        close_store: bool = True,
    ) -> None:
        self._ttl = _check_ttl(ttl)
        if store is not None and not isinstance(store, SessionKVStore):
            raise TypeError(f"store must be a SessionKVStore, not {type(store).__name__}")
        self._node_id = str(uuid.uuid4()) if node_id is None else check_text("node_id", node_id)
        if store is None:
            from .plugins import create_store

            store = create_store()
        self._store = store
        self._close_store = bool(close_store)

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def effective_ttl(self) -> float:
        """The TTL the store really applies for :attr:`ttl` (raised to its minimum,
        rounded to its resolution); see ``store.semantics``."""
        return self._store.semantics.effective_ttl(self._ttl)

    @property
    def store(self) -> SessionKVStore:
        return self._store

    def __repr__(self) -> str:
        return f"SessionRegistry(node_id={self._node_id!r}, ttl={self._ttl}, store={self._store!r})"

    async def start(self) -> None:
        await self._store.start()
        semantics = self._store.semantics
        if semantics.effective_ttl(self._ttl) > self._ttl + max(semantics.ttl_resolution, 0.001):
            warnings.warn(
                f"SessionRegistry(ttl={self._ttl:g}) on {self._store!r}: the store applies "
                f"a TTL of {semantics.effective_ttl(self._ttl):g} s (its minimum is "
                f"{semantics.min_ttl:g} s), so sessions live up to "
                f"{semantics.max_lifetime(self._ttl):g} s",
                SessionKVWarning,
                stacklevel=2,
            )

    async def stop(self) -> None:
        """Close the store (unless made with ``close_store=False``)."""
        if self._close_store:
            await self._store.close()

    async def __aenter__(self) -> SessionRegistry:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- keys ---------------------------------------------------------------------

    def _keys(self, call_id: object, session_id: object) -> tuple[str, str]:
        """The session and close-request keys of checked ids."""
        call = escape_segment(check_text("call_id", call_id))
        session = escape_segment(check_text("session_id", session_id))
        tail = f"/{call}/{session}"
        limit = self._store.semantics.max_key_bytes
        if len(tail) + 1 > limit // 4:  # only long ids need the exact count
            size = utf8_length(tail)
            if size is not None and size + 1 > limit:
                raise InvalidKeyError(
                    f"call_id and session_id are too long: together (escaped) they take "
                    f"{size - 2} bytes, and {self._store!r} holds keys of at most {limit} "
                    "bytes (StoreSemantics.max_key_bytes)"
                )
        return "s" + tail, "c" + tail

    @staticmethod
    def _load(key: str, raw: bytes) -> dict[str, Any] | None:
        try:
            data: Any = json.loads(raw)
        except ValueError as exc:
            log.warning("skipping unreadable session record %r: %s", key, exc)
            return None
        if not isinstance(data, dict):
            log.warning("skipping session record %r: not a JSON object", key)
            return None
        return data

    def _decode(self, key: str, raw: bytes) -> SessionInfo | None:
        data = self._load(key, raw)
        if data is None:
            return None
        try:
            return SessionInfo.from_dict(data)
        except (TypeError, ValueError) as exc:
            # One bad record (another writer, a partial migration) must not hide the rest.
            log.warning("skipping unreadable session record %r: %s", key, exc)
            return None

    # -- operations -----------------------------------------------------------------

    async def register(self, call_id: str, session_id: str) -> None:
        """Record that this node hosts ``session_id`` of ``call_id`` (upsert). The new
        registration has no pending close request, whatever was asked of an earlier one."""
        session_key, _ = self._keys(call_id, session_id)
        now = time.time()
        record = {
            "session_id": session_id,
            "call_id": call_id,
            "node_id": self._node_id,
            "started_at": now,
            "metrics_updated_at": now,
            "metrics": {},
            "registration": secrets.token_hex(8),
        }
        await self._store.set(session_key, _encode(record), self._ttl)

    async def remove(self, call_id: str, session_id: str) -> None:
        """Delete the session record and its close request."""
        await self._store.delete(list(self._keys(call_id, session_id)))

    async def get(self, call_id: str, session_id: str) -> SessionInfo | None:
        """The session, registered by any node, or ``None`` if missing or expired."""
        key, _ = self._keys(call_id, session_id)
        raw = await self._store.get(key)
        return None if raw is None else self._decode(key, raw)

    async def get_for_call(self, call_id: str) -> list[SessionInfo]:
        """Every live session of ``call_id`` across all nodes: one prefix scan."""
        call = escape_segment(check_text("call_id", call_id))
        return await self._scan_sessions(f"s/{call}/")

    async def get_all(self) -> list[SessionInfo]:
        """Every live session of every call on every node: one scan of the whole
        registry, for operators' tools rather than a node's hot path."""
        return await self._scan_sessions("s/")

    async def _scan_sessions(self, prefix: str) -> list[SessionInfo]:
        found = [self._decode(key, raw) for key, raw in await self._store.scan(prefix)]
        return [info for info in found if info is not None]

    async def update_metrics(self, call_id: str, session_id: str, metrics: Any) -> None:
        """Replace the session's metrics (a mapping of name to ``int | float | None``, or
        an object with ``to_dict()``). A missing or expired session stays absent, and a
        newer registration of the same ids is never written over."""
        key, _ = self._keys(call_id, session_id)
        checked = _check_metrics(metrics)
        registration: str | None = None
        for _ in range(_CAS_ATTEMPTS):
            raw = await self._store.get(key)
            record = None if raw is None else self._load(key, raw)
            if raw is None or record is None:
                return
            if registration is None:
                registration = _registration(record)
            elif _registration(record) != registration:
                return  # removed and registered again meanwhile: the new record stands
            record["metrics"] = checked
            record["metrics_updated_at"] = time.time()
            if await self._store.compare_and_set(key, raw, _encode(record), self._ttl):
                return
        raise SessionKVError(
            f"update_metrics({call_id!r}, {session_id!r}): the record kept changing under "
            f"{_CAS_ATTEMPTS} attempts; another writer updates it in a tight loop"
        )

    async def refresh(self, sessions: dict[str, str]) -> None:
        """Give each session (``session_id -> call_id``) and its close request a full
        TTL again, in one store call. Expired or removed sessions stay absent."""
        keys: list[str] = []
        for session_id, call_id in self._check_sessions(sessions):
            keys.extend(self._keys(call_id, session_id))
        if keys:
            await self._store.expire(*keys, ttl=self._ttl)

    async def request_close(self, call_id: str, session_id: str) -> None:
        """Ask the node hosting the session to close it (seen by
        :meth:`get_close_requests`). A session that is not registered is left alone:
        the request belongs to the registration it was made for."""
        session_key, close_key = self._keys(call_id, session_id)
        raw = await self._store.get(session_key)
        record = None if raw is None else self._load(session_key, raw)
        if record is None:
            return
        request = {
            "requested_by": self._node_id,
            "requested_at": time.time(),
            "registration": _registration(record),
        }
        await self._store.set(close_key, _encode(request), self._ttl)

    async def get_close_requests(self, sessions: dict[str, str]) -> list[str]:
        """The ids among ``sessions`` (``session_id -> call_id``) with a pending close
        request, in input order: one batch read (two when a request is pending)."""
        pairs = self._check_sessions(sessions)
        if not pairs:
            return []
        keys = [self._keys(c, s) for s, c in pairs]
        flags = await self._store.mget([close_key for _, close_key in keys])
        pending = [i for i, flag in enumerate(flags) if flag is not None]
        if not pending:
            return []
        records = await self._store.mget([keys[i][0] for i in pending])
        closing: list[str] = []
        for i, raw in zip(pending, records, strict=True):
            flag = flags[i]
            if raw is None or flag is None:
                continue
            record = self._load(keys[i][0], raw)
            request = self._load(keys[i][1], flag)
            if record is None or request is None:
                continue
            wanted = request.get("registration")
            if wanted is None or wanted == _registration(record):
                closing.append(pairs[i][0])
        return closing

    @staticmethod
    def _check_sessions(sessions: object) -> list[tuple[str, str]]:
        if not isinstance(sessions, dict):
            raise TypeError(
                f"sessions must be a dict of session_id -> call_id, not {type(sessions).__name__}"
            )
        return list(sessions.items())
