"""The store interface: :class:`SessionKVStore`, the abstract base of every backend.

The public methods validate arguments, check the store's state and map driver errors
once, here; a backend implements only small private primitives (``_set``, ``_get``,
``_keys``, ``_delete``, ``_expire``) and overrides the batch ones (``_mset``,
``_mget``, ``_scan``) where it can do them in fewer round trips.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import math
from collections.abc import Iterable
from types import TracebackType
from typing import Any, ClassVar

from .errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    InvalidKeyError,
    InvalidTTLError,
    SessionKVError,
    StoreClosedError,
)
from .types import StoreSemantics

__all__ = ["SessionKVStore", "check_key", "check_ttl", "check_value"]


def _utf8_encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_key(key: object) -> str:
    """Return ``key`` if it is a storable key: a non-empty str encodable as UTF-8."""
    if not isinstance(key, str):
        raise TypeError(f"key must be str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("key must not be empty")
    if not _utf8_encodable(key):
        raise InvalidKeyError(f"key {key!r} is not encodable as UTF-8 (it holds a lone surrogate)")
    return key


def check_value(value: object) -> bytes:
    """Return ``value`` as ``bytes``; any bytes-like object is accepted, ``b""`` too."""
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"value must be bytes, not {type(value).__name__}")


def check_ttl(ttl: object) -> float:
    """Return ``ttl`` as a float if it is a finite number of seconds > 0."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    ttl = float(ttl)
    if not (ttl > 0 and math.isfinite(ttl)):
        raise InvalidTTLError(f"ttl must be a finite number > 0, not {ttl!r}")
    return ttl


def check_keys(keys: object) -> list[str]:
    """Return ``keys`` as a list of checked keys; a lone str is a mistake, not a list."""
    if isinstance(keys, (str, bytes)):
        raise TypeError("expected a list of keys, not a single " + type(keys).__name__)
    if not isinstance(keys, Iterable):
        raise TypeError(f"expected a list of keys, not {type(keys).__name__}")
    return [check_key(key) for key in keys]


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class SessionKVStore(abc.ABC):
    """An async key-value store with per-key TTLs and literal prefix scans.

    Keys are non-empty ``str`` (any characters, stored exactly); values are ``bytes``,
    ``b""`` included. Missing and expired keys are the same thing: absent. A store is
    started by ``await start()`` or ``async with``, or lazily by its first operation;
    once closed it raises :class:`StoreClosedError`.

    Subclasses set :attr:`SEMANTICS` (or override :attr:`semantics`) and implement the
    private primitives; see the module docstring.
    """

    SEMANTICS: ClassVar[StoreSemantics | None] = None
    """The backend's declared semantics; read them through :attr:`semantics`."""

    def __init__(self, *, namespace: str = "") -> None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be str, not {type(namespace).__name__}")
        self._namespace = namespace
        self._state = _State.NEW
        self._start_lock: asyncio.Lock | None = None

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self._namespace!r}, state={self._state.value})"

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect and prepare; idempotent. Raises :class:`StoreClosedError` once closed."""
        if self._state is _State.OPEN:
            return
        if self._state is _State.CLOSED:
            raise StoreClosedError(f"{self!r} is closed")
        self.semantics  # noqa: B018 - a store without a declaration fails here, early
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._state is _State.NEW:
                try:
                    await self._start()
                except SessionKVError:
                    raise
                except Exception as exc:
                    raise self._translate_error(exc) from exc
                self._state = _State.OPEN
            elif self._state is _State.CLOSED:
                raise StoreClosedError(f"{self!r} is closed")

    async def close(self) -> None:
        """Release every resource; idempotent, and the store is closed even if it fails."""
        if self._state is _State.CLOSED:
            return
        was_open = self._state is _State.OPEN
        self._state = _State.CLOSED
        if was_open:
            await self._close()

    async def __aenter__(self) -> SessionKVStore:
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

    # -- the contract --------------------------------------------------------------

    async def set(
        self, key: str, value: bytes, ttl: float, *, only_if_exists: bool = False
    ) -> None:
        """Upsert ``value`` with ``ttl`` seconds to live. With ``only_if_exists`` it
        writes only over a live key and never creates one."""
        key, value, ttl = check_key(key), check_value(value), check_ttl(ttl)
        if self._state is not _State.OPEN:
            await self._ensure_open()
        try:
            await self._set(key, value, ttl, bool(only_if_exists))
        except SessionKVError:
            raise
        except Exception as exc:
            raise self._translate_error(exc) from exc

    async def mset(self, items: list[tuple[str, bytes, float]]) -> None:
        """``set`` for each ``(key, value, ttl)``; a later item wins over an earlier one
        with the same key. Atomic where :attr:`semantics` says ``atomic_mset``."""
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise TypeError("items must be a list of (key, value, ttl) tuples")
        checked: list[tuple[str, bytes, float]] = []
        for item in items:
            if not isinstance(item, tuple) or len(item) != 3:
                raise TypeError(f"each item must be a (key, value, ttl) tuple, not {item!r}")
            checked.append((check_key(item[0]), check_value(item[1]), check_ttl(item[2])))
        if not checked:
            return
        if self._state is not _State.OPEN:
            await self._ensure_open()
        try:
            await self._mset(checked)
        except SessionKVError:
            raise
        except Exception as exc:
            raise self._translate_error(exc) from exc

    async def expire(self, *keys: str, ttl: float) -> None:
        """Give each live key ``ttl`` seconds to live from now, leaving its value alone.
        Missing or expired keys are ignored and never resurrected."""
        checked = [check_key(key) for key in keys]
        ttl = check_ttl(ttl)
        if not checked:
            return
        if self._state is not _State.OPEN:
            await self._ensure_open()
        try:
            await self._expire(checked, ttl)
        except SessionKVError:
            raise
        except Exception as exc:
            raise self._translate_error(exc) from exc

    async def get(self, key: str) -> bytes | None:
        """The value of a live key, or ``None`` if it is missing or expired."""
        key = check_key(key)
        if self._state is not _State.OPEN:
            await self._ensure_open()
        try:
            return await self._get(key)
        except SessionKVError:
            raise
        except Exception as exc:
            raise self._translate_error(exc) from exc

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        """``get`` for each key, in input order (``None`` where missing or expired)."""
        checked = check_keys(keys)
        if not checked:
            return []
        if self._state is not _State.OPEN:
            await self._ensure_open()
        try:
            return await self._mget(checked)
        except SessionKVError:
            raise
        except Exception as exc:
            raise self._translate_error(exc) from exc

    async def keys(self, prefix: str) -> list[str]:
        """Every live key that starts with ``prefix`` as a literal string (no wildcards),
        in ascending code-point order; ``""`` lists the whole namespace."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
        if self._state is not _State.OPEN:
            await self._ensure_open()
        if not _utf8_encodable(prefix):
            return []  # keys are valid UTF-8, so none starts with a lone surrogate
        try:
            return await self._keys(prefix)
        except SessionKVError:
            raise
        except Exception as exc:
            raise self._translate_error(exc) from exc

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        """``(key, value)`` of every live key under ``prefix``, in key order: ``keys``
        and ``mget`` in one call, which backends serve in as few round trips as they can."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
        if self._state is not _State.OPEN:
            await self._ensure_open()
        if not _utf8_encodable(prefix):
            return []
        try:
            return await self._scan(prefix)
        except SessionKVError:
            raise
        except Exception as exc:
            raise self._translate_error(exc) from exc

    async def delete(self, keys: list[str]) -> None:
        """Delete the keys; missing ones are ignored."""
        checked = check_keys(keys)
        if not checked:
            return
        if self._state is not _State.OPEN:
            await self._ensure_open()
        try:
            await self._delete(checked)
        except SessionKVError:
            raise
        except Exception as exc:
            raise self._translate_error(exc) from exc

    # -- what a backend writes -------------------------------------------------------

    async def _start(self) -> None:  # noqa: B027 - optional hook
        """Connect; called once, by ``start``."""

    async def _close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called once, only after a successful start."""

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

    def _translate_error(self, exc: Exception) -> BaseException:
        """Map a driver exception to sessionkv's tree; backends extend this. The
        original becomes the ``__cause__``. Messages must not carry credentials."""
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            return BackendTimeoutError(f"{self!r}: no answer in time")
        if isinstance(exc, (ConnectionError, OSError)):
            return BackendUnavailableError(f"{self!r}: backend unavailable: {exc}")
        return BackendError(f"{self!r}: {type(exc).__name__}: {exc}")
