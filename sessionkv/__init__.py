"""sessionkv: an async session registry for multi-node agent servers, on pluggable
key-value stores (memory, SQLite, Redis, etcd, and third-party plugins).

Importing it needs no optional client library: a backend's library is imported when
that backend is first used, and a missing one raises
:class:`~sessionkv.MissingExtraError` naming the pip extra to install.
"""

from __future__ import annotations

import typing as _typing

from . import backends as _backends
from .backends import _LAZY as _BACKEND_CLASSES
from .backends import plugin as _builtin_plugin
from .backends.memory import InMemorySessionKVStore as InMemorySessionKVStore
from .core import (
    BackendError,
    BackendInfo,
    BackendSpec,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    InvalidKeyError,
    InvalidTTLError,
    MissingExtraError,
    SessionInfo,
    SessionKVError,
    SessionKVStore,
    SessionKVWarning,
    SessionRegistry,
    StoreClosedError,
    StoreSemantics,
    UnknownBackendError,
    available_backends,
    create_store,
    hookimpl,
)
from .core import plugins as _plugins

if _typing.TYPE_CHECKING:
    from .backends import *  # noqa: F403 - the built-in store classes, loaded lazily

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BackendInfo",
    "BackendSpec",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "ConfigurationError",
    "InvalidKeyError",
    "InvalidTTLError",
    "MissingExtraError",
    "SessionInfo",
    "SessionKVError",
    "SessionKVStore",
    "SessionKVWarning",
    "SessionRegistry",
    "StoreClosedError",
    "StoreSemantics",
    "UnknownBackendError",
    "__version__",
    "available_backends",
    "create_store",
    "hookimpl",
]
__all__ += _backends.__all__  # the built-in store classes

# `core` imports no backend: the package root hands it the built-in declarations, used
# when sessionkv's own entry point is missing (a source tree without `pip install`).
_plugins.set_fallback_builtin(_builtin_plugin)


def __getattr__(name: str) -> _typing.Any:
    # Backend classes load on first touch, so `import sessionkv` stays free of clients.
    if name in _BACKEND_CLASSES:
        from . import backends

        value = getattr(backends, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
