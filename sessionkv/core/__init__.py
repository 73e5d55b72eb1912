"""The core of sessionkv: the store interface, the registry, types, errors, plugin
discovery and URL parsing. It imports no backend client library."""

from .errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    InvalidKeyError,
    InvalidTTLError,
    MissingExtraError,
    SessionKVError,
    SessionKVWarning,
    StoreClosedError,
    UnknownBackendError,
)
from .imports import import_client
from .plugins import (
    BackendCatalog,
    BackendHooks,
    BackendInfo,
    BackendSpec,
    BackendSpecs,
    available_backends,
    create_store,
    hookimpl,
    hookspec,
)
from .registry import SessionRegistry
from .store import SessionKVStore
from .types import SessionInfo, StoreSemantics
from .urls import StoreURL, parse_store_url, redact_url

__all__ = [
    "BackendCatalog",
    "BackendError",
    "BackendHooks",
    "BackendInfo",
    "BackendSpec",
    "BackendSpecs",
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
    "StoreURL",
    "UnknownBackendError",
    "available_backends",
    "create_store",
    "hookimpl",
    "hookspec",
    "import_client",
    "parse_store_url",
    "redact_url",
]
