"""The built-in backends' declarations, registered through this distribution's own
entry point (group ``sessionkv``) exactly as a third-party plugin's are."""

from __future__ import annotations

from ..core.plugins import BackendSpec, hookimpl

BUILTIN_BACKENDS = (
    BackendSpec(
        name="memory",
        schemes=("memory",),
        factory="sessionkv.backends.memory:InMemorySessionKVStore",
        description="in-process, for one process and tests",
    ),
    BackendSpec(
        name="sqlite",
        schemes=("sqlite",),
        factory="sessionkv.backends.sqlite:SQLiteSessionKVStore",
        requires=("aiosqlite",),
        extra="sqlite",
        description="embedded file, shared by processes on one host",
    ),
    BackendSpec(
        name="redis",
        schemes=("redis", "rediss", "unix"),
        factory="sessionkv.backends.redis:RedisSessionKVStore",
        requires=("redis",),
        extra="redis",
        description="Redis server, shared by hosts",
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


@hookimpl
def sessionkv_backends() -> tuple[BackendSpec, ...]:
    return BUILTIN_BACKENDS
