"""The built-in backends, declared once as data: name, URL schemes, lazily imported
store class, pip extra and the semantics each store promises. The store classes read
their ``SEMANTICS`` from here, so tools that show a backend's guarantees never import a
store module; :mod:`.plugin` hands the table to discovery."""

from __future__ import annotations

from ..core.types import BackendSpec, StoreSemantics

__all__ = ["BUILTIN_BACKENDS", "declared_semantics"]

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
    ),
)


def declared_semantics(name: str) -> StoreSemantics:
    """The declared semantics of the built-in backend ``name``."""
    for spec in BUILTIN_BACKENDS:
        if spec.name == name and spec.semantics is not None:
            return spec.semantics
    raise LookupError(f"no built-in backend {name!r} declares semantics")
