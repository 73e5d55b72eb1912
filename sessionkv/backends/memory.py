"""In-process store: the default, for one process and for tests.

Entries live in a dict; a sorted index of the keys makes ``keys(prefix)`` cost
O(log n + matches), and a heap of expiry times lets a periodic sweep (and
:meth:`InMemorySessionKVStore.purge_expired`) reclaim expired entries without walking
the live ones. Reads filter expired entries, so the sweep only frees memory.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import Any

from sortedcontainers import SortedList

from ..core.checks import check_seconds
from ..core.errors import ConfigurationError
from ..core.store import SessionKVStore
from ..core.urls import parse_store_url
from . import declared_semantics

__all__ = ["InMemorySessionKVStore"]

_SWEEP_YIELD_EVERY = 1000
"""The sweep yields to the event loop after this many heap entries, so a mass expiry
never blocks other tasks for long."""


class InMemorySessionKVStore(SessionKVStore):
    """Keys and values in this process's memory; nothing is shared or persisted.

    ``clock`` is a monotonic time source in seconds (inject one to test TTLs without
    sleeping); ``sweep_interval`` is how often a background task frees expired entries.
    """

    SEMANTICS = declared_semantics("memory")

    def __init__(
        self,
        *,
        namespace: str = "",
        clock: Callable[[], float] = time.monotonic,
        sweep_interval: float = 5.0,
    ) -> None:
        super().__init__(namespace=namespace)
        if not callable(clock):
            raise TypeError("clock must be a callable returning seconds")
        self._clock = clock
        self._sweep_every = check_seconds("sweep_interval", sweep_interval)
        # key -> (value, expires_at)
        self._entries: dict[str, tuple[bytes, float]] = {}
        self._index = SortedList()
        # (expires_at, key); stale when the key was since rewritten, refreshed or deleted
        self._expiries: list[tuple[float, str]] = []

    @classmethod
    def from_url(cls, url: str, **options: Any) -> InMemorySessionKVStore:
        parsed = parse_store_url(url)
        if parsed.scheme != "memory" or parsed.netloc or parsed.path not in ("", "/"):
            raise ConfigurationError(f"a memory URL is just 'memory://', not {url!r}")
        return cls(**parsed.options(options, allowed={"namespace": str, "sweep_interval": float}))

    # -- lifecycle -----------------------------------------------------------------

    async def _close(self) -> None:
        self._entries.clear()
        self._index.clear()
        self._expiries.clear()

    async def purge_expired(self) -> int:
        """Free every expired entry now; returns how many were freed."""
        freed = popped = 0
        now = self._clock()
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            if entry is not None and entry[1] == expires_at:
                self._remove(key)
                freed += 1
            popped += 1
            if popped % _SWEEP_YIELD_EVERY == 0:
                await asyncio.sleep(0)
                now = self._clock()
        # Refreshes leave stale heap entries behind; rebuild when they dominate.
        if len(heap) > 2 * len(self._entries) + 1024:
            self._expiries = [(exp, key) for key, (_, exp) in self._entries.items()]
            heapq.heapify(self._expiries)
        return freed

    async def _sweep(self) -> int:
        return await self.purge_expired()

    # -- primitives ------------------------------------------------------------------

    def _live(self, key: str, now: float) -> tuple[bytes, float] | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry

    def _put(self, key: str, value: bytes, expires_at: float) -> None:
        if key not in self._entries:
            self._index.add(key)
        self._entries[key] = (value, expires_at)
        heapq.heappush(self._expiries, (expires_at, key))

    def _remove(self, key: str) -> None:
        if self._entries.pop(key, None) is not None:
            self._index.remove(key)

    async def _set(self, key: str, value: bytes, ttl: float, only_if_exists: bool) -> None:
        now = self._clock()
        if only_if_exists and self._live(key, now) is None:
            return
        self._put(key, value, now + ttl)

    async def _compare_and_set(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        now = self._clock()
        entry = self._live(key, now)
        if entry is None or entry[0] != expected:
            return False
        self._put(key, value, now + ttl)
        return True

    async def _mset(self, items: list[tuple[str, bytes, float]]) -> None:
        now = self._clock()
        for key, value, ttl in items:
            self._put(key, value, now + ttl)

    async def _get(self, key: str) -> bytes | None:
        entry = self._live(key, self._clock())
        return None if entry is None else entry[0]

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        now = self._clock()
        out: list[bytes | None] = []
        for key in keys:
            entry = self._live(key, now)
            out.append(None if entry is None else entry[0])
        return out

    def _scan_live(self, prefix: str) -> list[tuple[str, bytes]]:
        now = self._clock()
        entries = self._entries
        found: list[tuple[str, bytes]] = []
        for key in self._index.irange(minimum=prefix):
            if not key.startswith(prefix):
                break
            value, expires_at = entries[key]
            if expires_at > now:
                found.append((key, value))
        return found

    async def _keys(self, prefix: str) -> list[str]:
        return [key for key, _ in self._scan_live(prefix)]

    async def _scan(self, prefix: str) -> list[tuple[str, bytes]]:
        return self._scan_live(prefix)

    async def _delete(self, keys: list[str]) -> None:
        for key in keys:
            self._remove(key)

    async def _expire(self, keys: list[str], ttl: float) -> None:
        now = self._clock()
        for key in keys:
            entry = self._live(key, now)
            if entry is not None:
                self._put(key, entry[0], now + ttl)
