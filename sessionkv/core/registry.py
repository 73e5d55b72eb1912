"""`SessionRegistry`: the sessions of every node, kept in one shared store.

Key scheme (inside the store's namespace)::

    s/<call>/<session>   the session record (JSON of SessionInfo), TTL = registry ttl
    c/<call>/<session>   a close request for that session, same TTL

Each id is escaped (``%`` -> ``%25``, ``/`` -> ``%2F``) so no id can contain the
separator: ``s/<call>/`` is a prefix of exactly one call's sessions, whatever
characters the ids hold, and the escaping is reversible, so distinct ids never collide.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from types import TracebackType
from typing import Any

from .store import SessionKVStore
from .types import Metrics, SessionInfo

__all__ = ["SessionRegistry", "escape_segment"]

log = logging.getLogger("sessionkv.registry")


def escape_segment(text: str) -> str:
    """Make ``text`` safe as one ``/``-separated key segment (reversible, injective)."""
    if "%" in text:
        text = text.replace("%", "%25")
    if "/" in text:
        text = text.replace("/", "%2F")
    return text


def _check_id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    return value


def _check_metrics(metrics: object) -> Metrics:
    if not isinstance(metrics, dict):
        raise TypeError(f"metrics must be a dict, not {type(metrics).__name__}")
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"metric names must be str, not {type(name).__name__}")
        if value is not None and not isinstance(value, (int, float)):
            raise TypeError(
                f"metric {name!r} must be int, float or None, not {type(value).__name__}"
            )
    return dict(metrics)


def _encode(info: SessionInfo) -> bytes:
    return json.dumps(info.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


class SessionRegistry:
    """Registers the sessions this node hosts; lists, closes and reads any node's.

    ``store`` defaults to a fresh :class:`~sessionkv.InMemorySessionKVStore` (one
    process only); pass a shared store for several nodes. The registry starts the store
    it is given but closes only a store it created: a store you pass in is yours to
    close (``async with store, SessionRegistry(store) as registry: ...``).
    Sessions live ``ttl`` seconds unless :meth:`refresh` keeps them alive.
    """

    def __init__(
        self,
        store: SessionKVStore | None = None,
        *,
        node_id: str | None = None,
        ttl: float = 30.0,
    ) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
        if not ttl > 0:
            raise ValueError("ttl must be > 0")
        if not math.isfinite(ttl):
            raise ValueError("ttl must be finite")
        if store is not None and not isinstance(store, SessionKVStore):
            raise TypeError(f"store must be a SessionKVStore, not {type(store).__name__}")
        self._owns_store = store is None
        if store is None:
            from ..backends.memory import InMemorySessionKVStore

            store = InMemorySessionKVStore()
        self._store = store
        self._node_id = str(uuid.uuid4()) if node_id is None else _check_id("node_id", node_id)
        self._ttl = float(ttl)

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def store(self) -> SessionKVStore:
        return self._store

    def __repr__(self) -> str:
        return f"SessionRegistry(node_id={self._node_id!r}, ttl={self._ttl}, store={self._store!r})"

    async def start(self) -> None:
        await self._store.start()

    async def stop(self) -> None:
        if self._owns_store:
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

    @staticmethod
    def _session_key(call_id: str, session_id: str) -> str:
        return f"s/{escape_segment(call_id)}/{escape_segment(session_id)}"

    @staticmethod
    def _close_key(call_id: str, session_id: str) -> str:
        return f"c/{escape_segment(call_id)}/{escape_segment(session_id)}"

    def _decode(self, key: str, raw: bytes) -> SessionInfo | None:
        try:
            data: Any = json.loads(raw)
            return SessionInfo.from_dict(data)
        except (ValueError, TypeError) as exc:
            # One bad record (another writer, a partial migration) must not hide the rest.
            log.warning("skipping unreadable session record %r: %s", key, exc)
            return None

    # -- operations -----------------------------------------------------------------

    async def register(self, call_id: str, session_id: str) -> None:
        """Record that this node hosts ``session_id`` of ``call_id`` (upsert)."""
        call_id, session_id = _check_id("call_id", call_id), _check_id("session_id", session_id)
        info = SessionInfo(
            session_id=session_id,
            call_id=call_id,
            node_id=self._node_id,
            started_at=time.time(),
            metrics_updated_at=None,
        )
        await self._store.set(self._session_key(call_id, session_id), _encode(info), self._ttl)

    async def remove(self, call_id: str, session_id: str) -> None:
        """Delete the session record and its close request."""
        call_id, session_id = _check_id("call_id", call_id), _check_id("session_id", session_id)
        await self._store.delete(
            [self._session_key(call_id, session_id), self._close_key(call_id, session_id)]
        )

    async def get(self, call_id: str, session_id: str) -> SessionInfo | None:
        """The session, registered by any node, or ``None`` if missing or expired."""
        call_id, session_id = _check_id("call_id", call_id), _check_id("session_id", session_id)
        key = self._session_key(call_id, session_id)
        raw = await self._store.get(key)
        return None if raw is None else self._decode(key, raw)

    async def get_for_call(self, call_id: str) -> list[SessionInfo]:
        """Every live session of ``call_id`` across all nodes: one prefix scan."""
        call_id = _check_id("call_id", call_id)
        return await self._scan_sessions(f"s/{escape_segment(call_id)}/")

    async def get_all(self) -> list[SessionInfo]:
        """Every live session of every call on every node: one scan of the whole
        registry, for operators' tools rather than a node's hot path."""
        return await self._scan_sessions("s/")

    async def _scan_sessions(self, prefix: str) -> list[SessionInfo]:
        found = [self._decode(key, raw) for key, raw in await self._store.scan(prefix)]
        return [info for info in found if info is not None]

    async def update_metrics(
        self, call_id: str, session_id: str, metrics: dict[str, int | float | None]
    ) -> None:
        """Replace the session's metrics. A missing or expired session stays absent."""
        call_id, session_id = _check_id("call_id", call_id), _check_id("session_id", session_id)
        metrics = _check_metrics(metrics)
        key = self._session_key(call_id, session_id)
        raw = await self._store.get(key)
        info = None if raw is None else self._decode(key, raw)
        if info is None:
            return
        info.metrics = metrics
        info.metrics_updated_at = time.time()
        # only_if_exists: a remove() racing with this update wins; nothing is re-created.
        await self._store.set(key, _encode(info), self._ttl, only_if_exists=True)

    async def refresh(self, sessions: dict[str, str]) -> None:
        """Give each session (``session_id -> call_id``) and its close request a full
        TTL again, in one store call. Expired or removed sessions stay absent."""
        keys: list[str] = []
        for session_id, call_id in self._check_sessions(sessions):
            keys.append(self._session_key(call_id, session_id))
            keys.append(self._close_key(call_id, session_id))
        if keys:
            await self._store.expire(*keys, ttl=self._ttl)

    async def request_close(self, call_id: str, session_id: str) -> None:
        """Ask the node hosting the session to close it (seen by :meth:`get_close_requests`)."""
        call_id, session_id = _check_id("call_id", call_id), _check_id("session_id", session_id)
        request = {"requested_by": self._node_id, "requested_at": time.time()}
        await self._store.set(
            self._close_key(call_id, session_id), json.dumps(request).encode(), self._ttl
        )

    async def get_close_requests(self, sessions: dict[str, str]) -> list[str]:
        """The ids among ``sessions`` (``session_id -> call_id``) with a pending close
        request, in input order: one batch read."""
        pairs = self._check_sessions(sessions)
        if not pairs:
            return []
        flags = await self._store.mget([self._close_key(c, s) for s, c in pairs])
        return [s for (s, _), flag in zip(pairs, flags, strict=True) if flag is not None]

    @staticmethod
    def _check_sessions(sessions: object) -> list[tuple[str, str]]:
        if not isinstance(sessions, dict):
            raise TypeError(
                f"sessions must be a dict of session_id -> call_id, not {type(sessions).__name__}"
            )
        return [(_check_id("session_id", s), _check_id("call_id", c)) for s, c in sessions.items()]
