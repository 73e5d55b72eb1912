"""Argument checks and key helpers shared by the store base, the registry and backends.

One place decides what a key, a value, a TTL and "a number of seconds" are, so every
path rejects bad input the same way: wrong types raise :class:`TypeError`, bad values
the documented :class:`ValueError` subclasses (never ``OverflowError`` or
``UnicodeEncodeError``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .errors import ConfigurationError, InvalidKeyError, InvalidTTLError

__all__ = [
    "check_key",
    "check_keys",
    "check_seconds",
    "check_text",
    "check_ttl",
    "check_value",
    "escape_segment",
    "prefix_upper_bound",
    "utf8_length",
]


def utf8_length(text: str) -> int | None:
    """Length of ``text`` in UTF-8 bytes, or ``None`` if it holds a lone surrogate."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def check_key(key: object, max_bytes: int | None = None) -> str:
    """Return ``key`` if it is a storable key: a non-empty str encodable as UTF-8 and,
    with ``max_bytes``, no longer than that many UTF-8 bytes."""
    if not isinstance(key, str):
        raise TypeError(f"key must be str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("key must not be empty")
    if key.isascii():
        if max_bytes is None or len(key) <= max_bytes:
            return key
        size: int | None = len(key)
    else:
        size = utf8_length(key)
        if size is None:
            raise InvalidKeyError(
                f"key {key[:80]!r} is not encodable as UTF-8 (it holds a lone surrogate)"
            )
        if max_bytes is None or size <= max_bytes:
            return key
    raise InvalidKeyError(
        f"key {key[:40]!r}... is {size} bytes in UTF-8; this store holds keys of at most "
        f"{max_bytes} bytes (StoreSemantics.max_key_bytes)"
    )


def check_keys(keys: object, max_bytes: int | None = None) -> list[str]:
    """Return ``keys`` as a list of checked keys; a lone str is a mistake, not a list."""
    if isinstance(keys, (str, bytes)):
        raise TypeError("expected a list of keys, not a single " + type(keys).__name__)
    if not isinstance(keys, Iterable):
        raise TypeError(f"expected a list of keys, not {type(keys).__name__}")
    return [check_key(key, max_bytes) for key in keys]


def check_value(value: object) -> bytes:
    """Return ``value`` as ``bytes``; any bytes-like object is accepted, ``b""`` too."""
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"value must be bytes, not {type(value).__name__}")


def check_seconds(
    name: str,
    value: object,
    *,
    allow_zero: bool = False,
    error: type[ValueError] = ConfigurationError,
) -> float:
    """Return ``value`` as a float if it is a finite number of seconds > 0 (or 0 with
    ``allow_zero``). A non-number is a :class:`TypeError`; anything else out of range
    (negative, NaN, infinite, too big for a float) raises ``error``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:
        raise error(f"{name} must be a finite number of seconds, not a huge int") from None
    if math.isfinite(seconds) and (seconds > 0 or (allow_zero and seconds == 0)):
        return seconds
    wanted = ">= 0" if allow_zero else "> 0"
    raise error(f"{name} must be a finite number {wanted}, not {seconds!r}")


def check_ttl(ttl: object) -> float:
    """Return ``ttl`` as a float if it is a finite number of seconds > 0."""
    if type(ttl) is float and 0 < ttl < math.inf:  # the hot path
        return ttl
    return check_seconds("ttl", ttl, error=InvalidTTLError)


def check_text(name: str, value: object) -> str:
    """A non-empty ``str`` encodable as UTF-8 (ids, node ids, metric names)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if not value:
        raise InvalidKeyError(f"{name} must not be empty")
    if not value.isascii() and utf8_length(value) is None:
        raise InvalidKeyError(
            f"{name} {value[:80]!r} is not encodable as UTF-8 (it holds a lone surrogate)"
        )
    return value


def escape_segment(text: str) -> str:
    """Make ``text`` safe as one ``/``-separated key segment: ``%`` -> ``%25`` and
    ``/`` -> ``%2F`` (reversible, injective, and free for text with neither)."""
    if "%" in text:
        text = text.replace("%", "%25")
    if "/" in text:
        text = text.replace("/", "%2F")
    return text


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with ``prefix``,
    or ``None`` when there is none (empty prefix, or only 0xFF bytes): the exclusive
    end of a prefix's range in byte order (SQLite BLOBs, Redis lex ranges, etcd)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))
