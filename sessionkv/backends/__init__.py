"""The built-in backends: one module each, imported on first use (so a missing client
library only matters for the backend that needs it), and their declarations, once, as
data: name, URL schemes, lazily imported store class, pip extra and the semantics each
store promises. The store classes read their ``SEMANTICS`` from here, so tools that
show a backend's guarantees never import a store module; :mod:`.plugin` hands the table
to discovery. A new built-in backend is one entry below plus its ``TYPE_CHECKING``
import and its class name in ``__all__`` (for type checkers and ``import *``; at run
time classes load lazily)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..core.types import BackendSpec, StoreSemantics

if TYPE_CHECKING:
    from .etcd import EtcdSessionKVStore
    from .memory import InMemorySessionKVStore
    from .redis import RedisSessionKVStore
    from .sqlite import SQLiteSessionKVStore

BUILTIN_BACKENDS = (
    BackendSpec(
        name="memory",
        schemes=("memory",),
        factory="sessionkv.backends.memory:InMemorySessionKVStore",
        description="in-process, for one process and tests",
        semantics=StoreSemantics(
            ttl_resolution=0.0,
            min_ttl=0.0,
            expiry_lag=0.0,  # reads compare with the clock
            shared_across_processes=False,
            shared_across_hosts=False,
            atomic_mset=True,
            scan_cost="O(log n + k)",
            atomic_compare_and_set=True,  # no await between the check and the write
        ),
    ),
    BackendSpec(
        name="sqlite",
        schemes=("sqlite",),
        factory="sessionkv.backends.sqlite:SQLiteSessionKVStore",
        requires=("aiosqlite",),
        extra="sqlite",
        description="embedded file, shared by processes on one host",
        # A file; an in-memory database (`sqlite://`) is not shared across processes.
        semantics=StoreSemantics(
            ttl_resolution=0.0,
            min_ttl=0.0,
            # Reads compare expires_at with skv_now(), read as the statement runs: the
            # sweep only frees space.
            expiry_lag=0.0,
            shared_across_processes=True,
            shared_across_hosts=False,
            atomic_mset=True,
            scan_cost="O(log n + k)",
            atomic_compare_and_set=True,  # one UPDATE ... WHERE value = ? AND live
        ),
    ),
    BackendSpec(
        name="redis",
        schemes=("redis", "rediss", "unix"),
        factory="sessionkv.backends.redis:RedisSessionKVStore",
        requires=("redis",),
        extra="redis",
        description="Redis server, shared by hosts",
        semantics=StoreSemantics(
            ttl_resolution=0.001,  # whole milliseconds, rounded up
            min_ttl=0.001,
            expiry_lag=0.0,  # Redis never returns an expired key, even before it frees it
            shared_across_processes=True,
            shared_across_hosts=True,
            atomic_mset=True,  # one Lua script
            scan_cost="O(log n + k)",
            max_ttl=2**50 / 1000,  # longer TTLs are clamped to 2**50 ms (~35,000 years)
            atomic_compare_and_set=True,  # one Lua script: GET, compare, SET ... XX
        ),
    ),
    BackendSpec(
        name="etcd",
        schemes=("etcd", "etcds"),
        factory="sessionkv.backends.etcd:EtcdSessionKVStore",
        requires=("etcd3", "aiohttp"),
        extra="etcd",
        description="etcd cluster, shared by hosts, TTLs on leases",
        semantics=StoreSemantics(
            ttl_resolution=1.0,  # lease TTLs are whole seconds
            # etcd raises a shorter lease to its minimum TTL, 1.5 election timeouts
            # rounded up (2 s with default timings). This is that default; a started
            # store reports its own cluster's minimum, learned at start, and raises
            # shorter TTLs to it itself, so each lease it asks for (the TTL plus the
            # sharing second) is granted exactly as asked.
            min_ttl=2.0,
            # One second of lease sharing (see _etcd_leases), etcd's lease expiry check
            # every 500 ms (keys gone 0.46-0.51 s after their lease's TTL), and margin
            # for a loaded machine: measured end to end, keys were gone 0.16-1.32 s
            # after their TTL. A leader change renews every lease (etcd does so on
            # purpose): see failover_renews_ttl.
            expiry_lag=2.5,
            shared_across_processes=True,
            shared_across_hosts=True,
            atomic_mset=False,  # atomic up to 128 keys (one transaction), not beyond
            scan_cost="O(log n + k)",
            max_ttl=9_000_000_000.0 - 1.0,  # etcd grants leases up to 9e9 s; the lease adds 1 s
            atomic_compare_and_set=True,  # one transaction: compare the value, then put
            failover_renews_ttl=True,  # a new leader renews every lease: see the docs
        ),
    ),
)


def declared_semantics(name: str) -> StoreSemantics:
    """The declared semantics of the built-in backend ``name``."""
    for spec in BUILTIN_BACKENDS:
        if spec.name == name and spec.semantics is not None:
            return spec.semantics
    raise LookupError(f"no built-in backend {name!r} declares semantics")


# Store class name -> its module, from the one table of built-in backends.
_LAZY = {spec.class_name: spec.factory.partition(":")[0] for spec in BUILTIN_BACKENDS}

# The store classes (``sessionkv`` re-exports exactly these); a test keeps it equal to
# the table's classes.
__all__ = [
    "EtcdSessionKVStore",
    "InMemorySessionKVStore",
    "RedisSessionKVStore",
    "SQLiteSessionKVStore",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
