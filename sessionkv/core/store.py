"""The store interface: :class:`SessionKVStore`, the abstract base of every backend.

The public methods validate arguments, check the store's state and map driver errors
once, here (:class:`_DriverErrors`); a backend implements only small private
primitives (``_set``, ``_get``, ``_keys``, ``_delete``, ``_expire``) and overrides the
batch ones (``_mset``, ``_mget``, ``_scan``, ``_compare_and_set``) where it can do them
in fewer round trips or atomically. The base also owns the lifecycle every backend
shares: a lazy, race-free start, an idempotent close, the optional background sweep
(:attr:`SessionKVStore._sweep_every` + :meth:`SessionKVStore._sweep`) and a
``ResourceWarning`` for a store left open.
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import enum
import warnings
import weakref
from collections.abc import Iterable
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeVar

from .checks import check_key, check_keys, check_ttl, check_value, utf8_length
from .errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    SessionKVError,
    StoreClosedError,
)
from .periodic import PeriodicTask
from .types import StoreSemantics

__all__ = ["SessionKVStore", "check_key", "check_ttl", "check_value"]


_Store = TypeVar("_Store", bound="SessionKVStore")


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class _DriverErrors:
    """``with store._errors: ...`` maps whatever the driver raised to sessionkv's tree,
    once, with the original as ``__cause__`` (httpx's ``map_httpcore_exceptions``).
    sessionkv's own errors pass through untouched (never wrapped twice); anything
    raised after the store was closed under an operation is :class:`StoreClosedError`
    ("you closed it"), not a backend failure. Cancellation passes through."""

    __slots__ = ("_store",)

    def __init__(self, store: SessionKVStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if exc is None or not isinstance(exc, Exception):
            return False
        store = self._store
        if store._state is _State.CLOSED and not isinstance(exc, StoreClosedError):
            raise StoreClosedError(f"{store!r} was closed during the operation") from exc
        if isinstance(exc, SessionKVError):
            return False
        raise store._translate_error(exc) from exc


# Stores that are open now, to name the ones a process leaves open at exit.
_open_stores: weakref.WeakSet[SessionKVStore] = weakref.WeakSet()


@atexit.register
def _warn_unclosed_at_exit() -> None:
    for store in list(_open_stores):
        store._warn_unclosed()


class SessionKVStore(abc.ABC):
    """An async key-value store with per-key TTLs and literal prefix scans.

    Keys are non-empty ``str`` (any characters, stored exactly, up to
    ``semantics.max_key_bytes`` UTF-8 bytes); values are ``bytes``, ``b""`` included.
    Missing and expired keys are the same thing: absent. A store is started by
    ``await start()`` or ``async with``, or lazily by its first operation; once closed
    it raises :class:`StoreClosedError`.

    Subclasses set :attr:`SEMANTICS` (or override :attr:`semantics`) and implement the
    private primitives; see the module docstring.
    """

    SEMANTICS: ClassVar[StoreSemantics | None] = None
    """The backend's declared semantics; read them through :attr:`semantics`."""

    _sweep_every: float = 0.0
    """Seconds between background :meth:`_sweep` runs while the store is open (0: no
    sweep). A backend sets it in ``__init__``; the base starts and stops the loop."""

    def __init__(self, *, namespace: str = "") -> None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be str, not {type(namespace).__name__}")
        if not namespace.isascii() and utf8_length(namespace) is None:
            raise ConfigurationError(
                f"namespace {namespace!r} is not encodable as UTF-8 (it holds a lone surrogate)"
            )
        self._namespace = namespace
        self._state = _State.NEW
        self._starting: asyncio.Future[None] | None = None
        self._errors = _DriverErrors(self)
        self._max_key: int | None = None
        self._sweeper: PeriodicTask | None = None

    # -- declaration -------------------------------------------------------------

    @property
    def semantics(self) -> StoreSemantics:
        """TTL resolution, minimum TTL, expiry lag, sharing and atomicity of this store."""
        declared = type(self).SEMANTICS
        if not isinstance(declared, StoreSemantics):
            raise ConfigurationError(
                f"{type(self).__name__} declares no semantics: set the class attribute "
                "SEMANTICS = StoreSemantics(...) (or override the `semantics` property) "
                "so users and the contract suite know its TTL and sharing guarantees"
            )
        return declared

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SessionKVStore:
        """Create a store from a URL of one of this backend's schemes."""
        raise ConfigurationError(f"{cls.__name__} cannot be created from a URL")

    def _describe(self) -> str:
        """Where the store keeps its data, for ``repr`` (``"path='x.db'"``); never a
        credential. Backends override it; it must work on a half-built object."""
        return ""

    def __repr__(self) -> str:
        try:
            where = self._describe()
        except Exception:  # noqa: BLE001 - repr of a half-built store must not raise
            where = "?"
        namespace = getattr(self, "_namespace", "?")
        state = getattr(getattr(self, "_state", None), "value", "new")
        head = f"{where}, " if where else ""
        return f"{type(self).__name__}({head}namespace={namespace!r}, state={state})"

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect and prepare; idempotent. Raises :class:`StoreClosedError` once closed,
        also when the store is closed while this start is still connecting. Callers
        that start the store at the same time share one attempt, and its outcome: a
        server that is down costs them one timeout, not one each."""
        if self._state is _State.OPEN:
            return
        if self._state is _State.CLOSED:
            raise StoreClosedError(f"{self!r} is closed")
        self.semantics  # noqa: B018 - a store without a declaration fails here, early
        attempt = self._starting
        if attempt is None:
            # A task of its own: a caller that is cancelled leaves it to the others.
            attempt = self._starting = asyncio.ensure_future(self._open())
            attempt.add_done_callback(self._started)
        await asyncio.shield(attempt)

    def _started(self, attempt: asyncio.Future[None]) -> None:
        self._starting = None  # a failed attempt is tried again by the next caller
        if not attempt.cancelled():
            attempt.exception()  # retrieved here: every waiter re-raises it anyway

    async def _open(self) -> None:
        if self._state is not _State.NEW:
            if self._state is _State.CLOSED:
                raise StoreClosedError(f"{self!r} is closed")
            return
        with self._errors:
            await self._start()
        if self.closed:
            # close() ran while we connected: what we opened is ours to release.
            await self._release()
            raise StoreClosedError(f"{self!r} was closed while it was starting")
        self._state = _State.OPEN
        _open_stores.add(self)
        if self._sweep_every > 0:
            self._sweeper = PeriodicTask(
                f"sessionkv {type(self).__name__} sweep {id(self):x}",
                self._sweep_every,
                self._sweep,
                describe=self._describe_failure,
            )
            self._sweeper.start()

    async def close(self) -> None:
        """Release every resource; idempotent, and the store is closed even if releasing
        fails. A ``start()`` in progress is waited for, and releases what it opened."""
        if self._state is _State.CLOSED:
            return
        was_open = self._state is _State.OPEN
        self._state = _State.CLOSED
        _open_stores.discard(self)
        if was_open:
            await self._release()
        elif self._starting is not None:
            await asyncio.wait({self._starting})  # it releases what it opened

    async def _release(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        try:
            if sweeper is not None:
                await sweeper.stop()
        finally:
            try:
                await self._close()
            except SessionKVError:
                raise
            except Exception as exc:
                raise self._translate_error(exc) from exc

    def _warn_unclosed(self) -> None:
        if self._state is _State.OPEN and not getattr(self, "_warned", False):
            self._warned = True  # once: at exit, or when collected, whichever is first
            warnings.warn(
                f"{self!r} was never closed: close it (await store.close(), `async with`, "
                "or let SessionRegistry.stop() close it) to release its connections",
                ResourceWarning,
                stacklevel=2,
            )

    def __del__(self) -> None:
        if getattr(self, "_state", None) is _State.OPEN:
            self._warn_unclosed()

    async def __aenter__(self: _Store) -> _Store:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _ensure_open(self) -> None:
        if self._state is _State.CLOSED:
            raise StoreClosedError(f"{self!r} is closed")
        await self.start()

    # -- argument checks -------------------------------------------------------------

    def _key_limit(self) -> int:
        """The declared ``max_key_bytes``, read once (the declaration does not change it)."""
        limit = self._max_key
        if limit is None:
            limit = self._max_key = self.semantics.max_key_bytes
        return limit

    def _key(self, key: object) -> str:
        return check_key(key, self._key_limit())

    def _key_list(self, keys: object) -> list[str]:
        return check_keys(keys, self._key_limit())

    # -- the contract --------------------------------------------------------------

    async def set(
        self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False
    ) -> None:
        """Upsert ``value`` with ``ttl`` seconds to live. With ``only_if_exists`` it
        writes only over a live key and never creates one."""
        key, value, ttl = self._key(key), check_value(value), check_ttl(ttl)
        only_if_exists = bool(only_if_exists)  # a caller's bool() bug is not a backend error
        if self._state is not _State.OPEN:
            await self._ensure_open()
        with self._errors:
            await self._set(key, value, ttl, only_if_exists)

    async def compare_and_set(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        """Write ``value`` with ``ttl`` only if ``key`` is live and holds exactly
        ``expected``; ``True`` if it wrote. Never creates a key. Atomic (no write
        slips in between the check and the write) where ``semantics`` says
        ``atomic_compare_and_set``."""
        key, ttl = self._key(key), check_ttl(ttl)
        expected, value = check_value(expected), check_value(value)
        if self._state is not _State.OPEN:
            await self._ensure_open()
        with self._errors:
            return bool(await self._compare_and_set(key, expected, value, ttl))

    async def mset(self, items: list[tuple[str, bytes, float]]) -> None:
        """``set`` for each ``(key, value, ttl)``; a later item wins over an earlier one
        with the same key. Atomic where :attr:`semantics` says ``atomic_mset``."""
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise TypeError("items must be a list of (key, value, ttl) tuples")
        checked: list[tuple[str, bytes, float]] = []
        for item in items:
            if not isinstance(item, tuple) or len(item) != 3:
                raise TypeError(f"each item must be a (key, value, ttl) tuple, not {item!r}")
            checked.append((self._key(item[0]), check_value(item[1]), check_ttl(item[2])))
        if not checked:
            return
        if self._state is not _State.OPEN:
            await self._ensure_open()
        with self._errors:
            await self._mset(checked)

    async def expire(self, *keys: str, ttl: float) -> None:
        """Give each live key ``ttl`` seconds to live from now, leaving its value alone.
        Missing or expired keys are ignored and never resurrected."""
        checked = self._key_list(keys)
        ttl = check_ttl(ttl)
        if not checked:
            return
        if self._state is not _State.OPEN:
            await self._ensure_open()
        with self._errors:
            await self._expire(checked, ttl)

    async def get(self, key: str) -> bytes | None:
        """The value of a live key, or ``None`` if it is missing or expired."""
        key = self._key(key)
        if self._state is not _State.OPEN:
            await self._ensure_open()
        with self._errors:
            return await self._get(key)

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        """``get`` for each key, in input order (``None`` where missing or expired)."""
        checked = self._key_list(keys)
        if not checked:
            return []
        if self._state is not _State.OPEN:
            await self._ensure_open()
        with self._errors:
            return await self._mget(checked)

    async def keys(self, prefix: str) -> list[str]:
        """Every live key that starts with ``prefix`` as a literal string (no wildcards),
        in ascending code-point order; ``""`` lists the whole namespace."""
        if self._listable(prefix) is None:
            return []
        if self._state is not _State.OPEN:
            await self._ensure_open()
        with self._errors:
            return await self._keys(prefix)

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        """``(key, value)`` of every live key under ``prefix``, in key order: ``keys``
        and ``mget`` in one call, which backends serve in as few round trips as they can."""
        if self._listable(prefix) is None:
            return []
        if self._state is not _State.OPEN:
            await self._ensure_open()
        with self._errors:
            return await self._scan(prefix)

    def _listable(self, prefix: object) -> str | None:
        """``prefix`` if some key could start with it, else ``None`` (list nothing)."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
        if self._state is _State.CLOSED:
            raise StoreClosedError(f"{self!r} is closed")
        size = utf8_length(prefix)
        if size is None:
            return None  # keys are valid UTF-8, so none starts with a lone surrogate
        return None if size > self._key_limit() else prefix

    async def delete(self, keys: list[str]) -> None:
        """Delete the keys; missing ones are ignored."""
        checked = self._key_list(keys)
        if not checked:
            return
        if self._state is not _State.OPEN:
            await self._ensure_open()
        with self._errors:
            await self._delete(checked)

    # -- what a backend writes -------------------------------------------------------

    async def _start(self) -> None:  # noqa: B027 - optional hook
        """Connect; called once, by ``start``. On failure release what it opened."""

    async def _close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called once, only after a successful start."""

    async def _sweep(self) -> object:
        """The background job run every :attr:`_sweep_every` seconds while open."""
        return None

    @abc.abstractmethod
    async def _set(self, key: str, value: bytes, ttl: float, only_if_exists: bool) -> None: ...

    @abc.abstractmethod
    async def _get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def _keys(self, prefix: str) -> list[str]: ...

    @abc.abstractmethod
    async def _delete(self, keys: list[str]) -> None: ...

    @abc.abstractmethod
    async def _expire(self, keys: list[str], ttl: float) -> None: ...

    async def _mset(self, items: list[tuple[str, bytes, float]]) -> None:
        for key, value, ttl in items:
            await self._set(key, value, ttl, False)

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        return [await self._get(key) for key in keys]

    async def _scan(self, prefix: str) -> list[tuple[str, bytes]]:
        keys = await self._keys(prefix)
        values = await self._mget(keys) if keys else []
        return [(k, v) for k, v in zip(keys, values, strict=True) if v is not None]

    async def _compare_and_set(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        """Not atomic: a read, then a write over a live key. A backend that can do it in
        one step overrides this and declares ``atomic_compare_and_set=True``."""
        if await self._get(key) != expected:
            return False
        await self._set(key, value, ttl, True)
        return True

    def _translate_error(self, exc: Exception) -> BaseException:
        """Map a driver exception to sessionkv's tree; backends extend this. The
        original becomes the ``__cause__``. Messages must not carry credentials."""
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            return BackendTimeoutError(f"{self!r}: no answer in time")
        if isinstance(exc, (ConnectionError, OSError)):
            return BackendUnavailableError(f"{self!r}: backend unavailable: {exc}")
        return BackendError(f"{self!r}: {type(exc).__name__}: {exc}")

    def _describe_failure(self, exc: Exception) -> str:
        """One line for the log about a failed background sweep (no credentials)."""
        if isinstance(exc, SessionKVError):
            return str(exc)
        return str(self._translate_error(exc))
