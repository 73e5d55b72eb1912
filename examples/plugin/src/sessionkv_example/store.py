"""`JSONFileSessionKVStore`: every namespace's keys in one JSON file, shared by the
processes of one host. Each operation takes an exclusive ``flock`` on a lock file next
to the data file, reads the JSON, changes it and replaces the file atomically, so it is
small and obviously correct rather than fast: every operation costs O(n) in the keys
stored. Expiry uses the wall clock (``time.time``), which every process on the host
shares; expired entries are filtered on read and dropped on the next write.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sessionkv import BackendError, ConfigurationError, SessionKVStore, StoreSemantics
from sessionkv.core.urls import parse_store_url

__all__ = ["JSONFileSessionKVStore"]

T = TypeVar("T")
# key -> [base64 value, expires_at (Unix time)]
Entries = dict[str, list[Any]]


class JSONFileSessionKVStore(SessionKVStore):
    """Keys of every namespace in the JSON file ``path`` (created on first write)."""

    SEMANTICS = StoreSemantics(
        ttl_resolution=0.0,
        min_ttl=0.0,
        expiry_lag=0.0,  # reads compare against the clock: never readable late
        shared_across_processes=True,
        shared_across_hosts=False,  # flock on a network file system is not to be trusted
        atomic_mset=True,  # one file replace per operation
        scan_cost="O(n)",
    )

    def __init__(self, path: str | os.PathLike[str], *, namespace: str = "") -> None:
        super().__init__(namespace=namespace)
        self._path = Path(path)
        self._lock_path = self._path.with_name(self._path.name + ".lock")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> JSONFileSessionKVStore:
        """``dictfile:///absolute/path.json?namespace=...``"""
        parsed = parse_store_url(url)
        if parsed.netloc or not parsed.path.startswith("/") or parsed.path.endswith("/"):
            raise ConfigurationError(
                f"a dictfile URL names a file by its absolute path, "
                f"e.g. 'dictfile:///var/lib/app/sessions.json', not {parsed.redacted!r}"
            )
        return cls(parsed.path, **parsed.options(options, allowed={"namespace": str}))

    def __repr__(self) -> str:
        return f"JSONFileSessionKVStore({str(self._path)!r}, namespace={self.namespace!r})"

    # -- the file ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A separate lock file, so the data file can be replaced while the lock is held.
        with open(self._lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _transact_sync(self, change: Callable[[Entries, float], tuple[T, bool]]) -> T:
        with self._locked():
            try:
                data: dict[str, Entries] = json.loads(self._path.read_bytes())
            except FileNotFoundError:
                data = {}
            now = time.time()
            entries = data.setdefault(self.namespace, {})
            result, changed = change(entries, now)
            if changed:
                for ns_entries in data.values():
                    for key in [k for k, (_, exp) in ns_entries.items() if exp <= now]:
                        del ns_entries[key]
                data = {ns: ns_entries for ns, ns_entries in data.items() if ns_entries}
                tmp = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
                os.replace(tmp, self._path)
            return result

    async def _transact(self, change: Callable[[Entries, float], tuple[T, bool]]) -> T:
        # File I/O and flock block: keep them off the event loop.
        return await asyncio.to_thread(self._transact_sync, change)

    @staticmethod
    def _live(entries: Entries, key: str, now: float) -> bytes | None:
        entry = entries.get(key)
        if entry is None or entry[1] <= now:
            return None
        return base64.b64decode(entry[0])

    # -- primitives --------------------------------------------------------------------

    async def _start(self) -> None:
        await asyncio.to_thread(self._path.parent.mkdir, parents=True, exist_ok=True)

    async def _set(self, key: str, value: bytes, ttl: float, only_if_exists: bool) -> None:
        await self._mset_if([(key, value, ttl)], only_if_exists)

    async def _mset(self, items: list[tuple[str, bytes, float]]) -> None:
        await self._mset_if(items, False)

    async def _mset_if(self, items: list[tuple[str, bytes, float]], only_if_exists: bool) -> None:
        def change(entries: Entries, now: float) -> tuple[None, bool]:
            changed = False
            for key, value, ttl in items:
                if only_if_exists and self._live(entries, key, now) is None:
                    continue
                entries[key] = [base64.b64encode(value).decode("ascii"), now + ttl]
                changed = True
            return None, changed

        await self._transact(change)

    async def _get(self, key: str) -> bytes | None:
        return (await self._mget([key]))[0]

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        return await self._transact(
            lambda entries, now: ([self._live(entries, k, now) for k in keys], False)
        )

    async def _scan(self, prefix: str) -> list[tuple[str, bytes]]:
        def change(entries: Entries, now: float) -> tuple[list[tuple[str, bytes]], bool]:
            found = []
            for key in sorted(k for k in entries if k.startswith(prefix)):  # literal prefix
                value = self._live(entries, key, now)
                if value is not None:
                    found.append((key, value))
            return found, False

        return await self._transact(change)

    async def _keys(self, prefix: str) -> list[str]:
        return [key for key, _ in await self._scan(prefix)]

    async def _delete(self, keys: list[str]) -> None:
        def change(entries: Entries, now: float) -> tuple[None, bool]:
            removed = [entries.pop(key, None) for key in keys]
            return None, any(entry is not None for entry in removed)

        await self._transact(change)

    async def _expire(self, keys: list[str], ttl: float) -> None:
        def change(entries: Entries, now: float) -> tuple[None, bool]:
            changed = False
            for key in keys:
                if self._live(entries, key, now) is not None:  # never resurrect
                    entries[key][1] = now + ttl
                    changed = True
            return None, changed

        await self._transact(change)

    def _translate_error(self, exc: Exception) -> BaseException:
        if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
            return BackendError(f"{self!r}: the file is not a JSON store: {exc}")
        return super()._translate_error(exc)
