"""The built-in backends, one module each; imported on first use, so that a missing
client library only matters for the backend that needs it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .declarations import BUILTIN_BACKENDS

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

# Store class name -> its module, from the one table of built-in backends.
_LAZY = {spec.class_name: spec.factory.partition(":")[0] for spec in BUILTIN_BACKENDS}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
