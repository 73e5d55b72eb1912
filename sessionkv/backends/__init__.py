"""The built-in backends, one module each; imported on first use, so that a missing
client library only matters for the backend that needs it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .etcd import EtcdSessionKVStore
    from .memory import InMemorySessionKVStore
    from .redis import RedisSessionKVStore
    from .sqlite import SQLiteSessionKVStore

__all__ = [
    "EtcdSessionKVStore",
    "InMemorySessionKVStore",
    "RedisSessionKVStore",
    "SQLiteSessionKVStore",
]

_LAZY = {
    "InMemorySessionKVStore": "memory",
    "SQLiteSessionKVStore": "sqlite",
    "RedisSessionKVStore": "redis",
    "EtcdSessionKVStore": "etcd",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
