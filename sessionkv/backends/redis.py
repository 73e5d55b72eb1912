"""Redis store on redis-py's asyncio client: sessions shared by every node of a cluster.

Each key is a Redis string with a millisecond expiry (``PXAT`` on the server's clock),
so ``GET``/``MGET`` never return an expired value. Prefix scans do not walk the keyspace
(``SCAN MATCH`` is O(all keys) and reads ``* ? [ ] \\`` as glob syntax): each namespace
keeps its keys in a sorted set read by ``ZRANGEBYLEX`` over the literal byte range of
the prefix, plus a second sorted set of expiry times used to clean the first. Lua
scripts (:mod:`._redis_scripts`) keep data and index consistent atomically and make
every operation one round trip; they are called by ``EVALSHA`` and reloaded after a
server restart. Every call has a socket timeout; a lost server raises
:class:`~sessionkv.BackendUnavailableError` and the same store works again once the
server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..core.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
)
from ..core.periodic import PeriodicTask
from ..core.imports import import_client
from ..core.store import SessionKVStore
from ..core.types import StoreSemantics
from ..core.urls import StoreURL, parse_store_url
from . import _redis_scripts as lua

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_URL", "RedisSessionKVStore"]

log = logging.getLogger("sessionkv.redis")

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_TIMEOUT = 5.0
DEFAULT_SWEEP_INTERVAL = 60.0
DEFAULT_MAX_CONNECTIONS = 50
_SWEEP_BATCH = 1000
# Redis refuses expiries that overflow its 64-bit ms clock; ~35,000 years is plenty.
_MAX_TTL_MS = 2**50
_SCHEMES = ("redis", "rediss", "unix")
_CERT_REQS = ("none", "optional", "required")


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


def _seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number > 0" + (" or 0" if allow_zero else ""))
    return float(value)


def _ttl_ms(ttl: float) -> int:
    # Round up: a key must live at least its TTL.
    return min(max(1, math.ceil(ttl * 1000 - 1e-6)), _MAX_TTL_MS)


def _lex_range(prefix: bytes) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX bounds of every member starting with ``prefix``: ``[prefix`` up to the
    prefix with its last byte raised by one, exclusive. UTF-8 never holds 0xFF, so the
    last byte of a non-empty prefix can always be raised."""
    if not prefix:
        return b"-", b"+"
    return b"[" + prefix, b"(" + prefix[:-1] + bytes((prefix[-1] + 1,))


def namespace_prefix(namespace: str) -> bytes:
    """``sessionkv:<namespace, percent-encoded>:``; the encoding has no ``:``, so no
    namespace's prefix is a prefix of another's."""
    try:
        return b"sessionkv:" + quote(namespace, safe="").encode("ascii") + b":"
    except UnicodeEncodeError:
        raise ValueError(f"namespace {namespace!r} is not encodable as UTF-8") from None


class RedisSessionKVStore(SessionKVStore):
    """Keys on a Redis server, shared by every process and host that reaches it.

    Give a ``url`` (``redis://[user:password@]host:port/db``, ``rediss://...`` for TLS,
    ``unix:///path.sock?db=0``; default ``redis://localhost:6379/0``) or a ``client``
    (a ``redis.asyncio.Redis`` made with ``decode_responses=False``; the store never
    closes a client it was given, and the client's own timeouts apply).

    ``timeout`` bounds connecting and each answer (seconds); a call that gets no answer
    raises :class:`~sessionkv.BackendTimeoutError`. ``sweep_interval`` is how often a
    background task removes expired keys from the namespace's index (0: only writes
    and scans clean it). ``ssl_*`` options configure TLS for ``rediss://``.
    URL query options (``?namespace=...&timeout=2``) are the same as these keywords.
    """

    SEMANTICS = StoreSemantics(
        ttl_resolution=0.001,  # whole milliseconds, rounded up
        min_ttl=0.001,
        expiry_lag=0.0,  # Redis never returns an expired key, even before it frees it
        shared_across_processes=True,
        shared_across_hosts=True,
        atomic_mset=True,  # one Lua script
        scan_cost="O(log n + k)",
    )

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
        sweep_interval: float | None = None,
        db: int | None = None,
        max_connections: int | None = None,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: str | None = None,
        ssl_check_hostname: bool | None = None,
    ) -> None:
        connection = {
            "timeout": timeout,
            "db": db,
            "max_connections": max_connections,
            "ssl_ca_certs": ssl_ca_certs,
            "ssl_certfile": ssl_certfile,
            "ssl_keyfile": ssl_keyfile,
            "ssl_cert_reqs": ssl_cert_reqs,
            "ssl_check_hostname": ssl_check_hostname,
        }
        explicit = {name: value for name, value in connection.items() if value is not None}
        if namespace is not None:
            explicit["namespace"] = namespace
        if sweep_interval is not None:
            explicit["sweep_interval"] = sweep_interval
        self._url: StoreURL | None = None
        if client is not None:
            if url is not None:
                raise TypeError("give RedisSessionKVStore a url or a client, not both")
            given = sorted(set(explicit) & set(connection))
            if given:
                raise ConfigurationError(
                    f"{given} configure a connection: set them on the client you pass in"
                )
            _check_client(client)
            options: dict[str, Any] = explicit
        else:
            import_client("redis.asyncio", backend="redis", extra="redis")
            self._url = parse_store_url(DEFAULT_URL if url is None else url)
            options = self._url.options(explicit, allowed=_URL_OPTIONS)
        namespace = options.pop("namespace", "")
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be str, not {type(namespace).__name__}")
        super().__init__(namespace=namespace)
        self._client: Redis | None = client
        self._owns_client = client is None
        self._connection = _connection_kwargs(self._url, options) if self._url else {}
        self._sweep_interval = _seconds(
            "sweep_interval", options.get("sweep_interval", DEFAULT_SWEEP_INTERVAL), allow_zero=True
        )
        prefix = namespace_prefix(self.namespace)
        self._data_prefix = prefix + b"k:"
        self._index_keys = (prefix + b"idx", prefix + b"exp")
        self._sweeper = (
            PeriodicTask(
                f"sessionkv redis index sweep {id(self):x}",
                self._sweep_interval,
                self.purge_expired,
                describe=self._translate_error,
            )
            if self._sweep_interval > 0
            else None
        )
        self._execute: Callable[..., Awaitable[Any]] = _not_started
        self._slots = asyncio.Semaphore(1)
        self._slot_timeout = DEFAULT_TIMEOUT

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSessionKVStore:
        """``redis://``, ``rediss://`` or ``unix://`` URL; ``options`` override its query."""
        unknown = sorted(set(options) - set(_URL_OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {unknown} for {parse_store_url(url).redacted!r}; "
                f"this backend takes {sorted(_URL_OPTIONS)}"
            )
        return cls(url, **options)

    def __repr__(self) -> str:
        if self._url is not None:
            where = f"url={self._url.redacted.split('?', 1)[0]!r}"
        else:
            where = "client=" + _describe_client(self._client)
        return (
            f"{type(self).__name__}({where}, namespace={self.namespace!r}, "
            f"state={self._state.value})"
        )

    @property
    def client(self) -> Redis:
        """The redis-py client (created by :meth:`start` unless one was passed in)."""
        if self._client is None:
            raise RuntimeError(f"{self!r} has no client before start()")
        return self._client

    # -- lifecycle -----------------------------------------------------------------

    async def _start(self) -> None:
        if self._client is None:
            self._client = _make_client(self._connection)
        self._execute = self._client.execute_command
        # At most one call per pooled connection at a time: a burst of concurrent calls
        # queues here (uncontended, this costs far less than a blocking pool's queue)
        # instead of failing with "Too many connections".
        pool = self._client.connection_pool
        self._slots = asyncio.Semaphore(max(1, pool.max_connections))
        self._slot_timeout = pool.connection_kwargs.get("socket_timeout") or DEFAULT_TIMEOUT
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for script in lua.SCRIPTS:
                    pipe.script_load(script.source)
                await pipe.execute()
        except BaseException:
            self._execute = _not_started
            if self._owns_client:
                client, self._client = self._client, None
                with contextlib.suppress(Exception):
                    await client.aclose()
            raise
        if self._sweeper is not None:
            self._sweeper.start()

    async def _close(self) -> None:
        if self._sweeper is not None:
            await self._sweeper.stop()
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            self._execute = _not_started
            await client.aclose()

    async def purge_expired(self) -> int:
        """Remove expired keys from the namespace's index now; returns how many.
        (Reads never list them anyway: this only frees memory.)"""
        await self._ensure_open()
        removed = 0
        while True:
            try:
                due, gone = await self._eval(lua.SWEEP, _SWEEP_BATCH)
            except Exception as exc:
                raise self._translate_error(exc) from exc
            removed += int(gone)
            if int(due) < _SWEEP_BATCH:
                return removed

    # -- primitives ------------------------------------------------------------------

    async def _command(self, *args: Any) -> Any:
        slots = self._slots
        if slots.locked():
            # Every connection is busy: wait for one no longer than a call may take.
            try:
                await asyncio.wait_for(slots.acquire(), self._slot_timeout)
            except asyncio.TimeoutError:
                raise BackendTimeoutError(
                    f"{self!r}: every pooled connection stayed busy for "
                    f"{self._slot_timeout} s (raise max_connections?)"
                ) from None
        else:
            await slots.acquire()
        try:
            return await self._execute(*args)
        finally:
            slots.release()

    async def _eval(self, script: lua.Script, *args: bytes | int) -> Any:
        try:
            return await self._command(
                "EVALSHA", script.sha, 2, *self._index_keys, self._data_prefix, *args
            )
        except Exception as exc:
            if type(exc).__name__ != "NoScriptError":
                raise
        # The server lost its script cache (restart, SCRIPT FLUSH): load and go on.
        await self._command("SCRIPT", "LOAD", script.source)
        return await self._command(
            "EVALSHA", script.sha, 2, *self._index_keys, self._data_prefix, *args
        )

    async def _set(self, key: str, value: bytes, ttl: float, only_if_exists: bool) -> None:
        await self._eval(
            lua.WRITE, b"1" if only_if_exists else b"0", key.encode(), value, _ttl_ms(ttl)
        )

    async def _mset(self, items: list[tuple[str, bytes, float]]) -> None:
        args: list[bytes | int] = [b"0"]
        for key, value, ttl in items:
            args += (key.encode(), value, _ttl_ms(ttl))
        await self._eval(lua.WRITE, *args)

    async def _get(self, key: str) -> bytes | None:
        value: bytes | None = await self._command("GET", self._data_prefix + key.encode())
        return value

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        prefix = self._data_prefix
        values: list[bytes | None] = await self._command(
            "MGET", *[prefix + key.encode() for key in keys]
        )
        return values

    async def _keys(self, prefix: str) -> list[str]:
        low, high = _lex_range(prefix.encode())
        found: list[bytes] = await self._eval(lua.SCAN, low, high, b"0")
        return [member.decode() for member in found]

    async def _scan(self, prefix: str) -> list[tuple[str, bytes]]:
        low, high = _lex_range(prefix.encode())
        flat: list[bytes] = await self._eval(lua.SCAN, low, high, b"1")
        return [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]

    async def _delete(self, keys: list[str]) -> None:
        await self._eval(lua.DELETE, *[key.encode() for key in keys])

    async def _expire(self, keys: list[str], ttl: float) -> None:
        await self._eval(lua.EXPIRE, _ttl_ms(ttl), *[key.encode() for key in keys])

    # -- errors ----------------------------------------------------------------------

    def _translate_error(self, exc: Exception) -> BaseException:
        from redis import exceptions as rx  # loaded: the exception came from redis-py

        message = self._scrub(str(exc))
        if isinstance(exc, rx.TimeoutError):
            return BackendTimeoutError(f"{self!r}: no answer in time: {message}")
        if isinstance(exc, (rx.AuthenticationError, rx.AuthorizationError)):
            return BackendError(
                f"{self!r}: the server refused the credentials (check the user name and "
                f"password): {message}"
            )
        if isinstance(exc, rx.ConnectionError):
            return BackendUnavailableError(f"{self!r}: Redis unavailable: {message}")
        if isinstance(exc, rx.RedisError):
            return BackendError(f"{self!r}: {type(exc).__name__}: {message}")
        mapped = super()._translate_error(exc)
        return type(mapped)(self._scrub(str(mapped)))

    def _scrub(self, text: str) -> str:
        secret = self._connection.get("password")
        if secret and isinstance(secret, str):
            text = text.replace(secret, "***")
        return text


async def _not_started(*args: Any) -> Any:
    raise RuntimeError("the Redis store is not started")


_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "namespace": str,
    "timeout": float,
    "sweep_interval": float,
    "db": int,
    "max_connections": int,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": str,
    "ssl_check_hostname": _flag,
}


def _check_client(client: object) -> None:
    pool = getattr(client, "connection_pool", None)
    if pool is None or not hasattr(client, "execute_command"):
        raise TypeError(f"client must be a redis.asyncio.Redis, not {type(client).__name__}")
    if pool.connection_kwargs.get("decode_responses"):
        raise ConfigurationError(
            "the client decodes responses to str; values are bytes: create it with "
            "decode_responses=False"
        )


def _describe_client(client: Redis | None) -> str:
    if client is None:
        return "None"
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"'unix://{kwargs['path']}?db={kwargs.get('db', 0)}'"
    return f"'{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}'"


def _connection_kwargs(url: StoreURL, options: dict[str, Any]) -> dict[str, Any]:
    """redis-py client arguments for ``url`` and the parsed options (no I/O)."""
    if url.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"a Redis URL starts with redis://, rediss:// or unix://, not {url.redacted!r}"
        )
    timeout = _seconds("timeout", options.get("timeout", DEFAULT_TIMEOUT))
    kwargs: dict[str, Any] = {
        "username": url.username,
        "password": url.password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    db = options.get("db")
    if url.scheme == "unix":
        if not url.path or url.path == "/":
            raise ConfigurationError(
                f"a unix URL names the socket: unix:///path/redis.sock, not {url.redacted!r}"
            )
        kwargs["unix_socket_path"] = url.path
    else:
        if len(url.hosts) > 1:
            raise ConfigurationError(f"a Redis URL names one server, not {url.redacted!r}")
        host, port = url.hosts[0] if url.hosts else ("localhost", None)
        kwargs["host"], kwargs["port"] = host or "localhost", port or 6379
        path_db = url.path.strip("/")
        if path_db:
            if not path_db.isdigit():
                raise ConfigurationError(f"the database in {url.redacted!r} must be a number")
            if db is not None and int(path_db) != db:
                raise ConfigurationError(f"{url.redacted!r} names two databases")
            db = int(path_db)
    if isinstance(db, bool) or not isinstance(db, (int, type(None))) or (db is not None and db < 0):
        raise ConfigurationError(f"db must be a number >= 0, not {db!r}")
    kwargs["db"] = db or 0
    if options.get("max_connections") is not None:
        kwargs["max_connections"] = int(options["max_connections"])
    tls = {name: value for name, value in options.items() if name.startswith("ssl_")}
    if url.scheme == "rediss":
        kwargs["ssl"] = True
        reqs = tls.get("ssl_cert_reqs", "required")
        if reqs not in _CERT_REQS:
            raise ConfigurationError(f"ssl_cert_reqs must be one of {_CERT_REQS}, not {reqs!r}")
        kwargs.update(tls)
    elif tls:
        raise ConfigurationError(f"{sorted(tls)} need a rediss:// URL, not {url.redacted!r}")
    return kwargs


def _make_client(kwargs: dict[str, Any]) -> Redis:
    redis_asyncio = import_client("redis.asyncio", backend="redis", extra="redis")
    connection = import_client("redis.asyncio.connection", backend="redis", extra="redis")
    retries = import_client("redis.asyncio.retry", backend="redis", extra="redis")
    backoff = import_client("redis.backoff", backend="redis", extra="redis")
    exceptions = import_client("redis.exceptions", backend="redis", extra="redis")
    kwargs = dict(kwargs)
    if "unix_socket_path" in kwargs:
        kwargs["path"] = kwargs.pop("unix_socket_path")
        connection_class = connection.UnixDomainSocketConnection
    elif kwargs.pop("ssl", False):
        connection_class = connection.SSLConnection
    else:
        connection_class = connection.Connection
    # One immediate retry on a broken connection: after a server restart the pooled
    # connection is dead, the next one works. No retry on timeouts: they would double.
    retry = retries.Retry(backoff.NoBackoff(), 1, supported_errors=(exceptions.ConnectionError,))
    pool = connection.ConnectionPool(
        max_connections=kwargs.pop("max_connections", DEFAULT_MAX_CONNECTIONS),
        connection_class=connection_class,
        decode_responses=False,
        retry=retry,
        **kwargs,
    )
    client: Redis = redis_asyncio.Redis.from_pool(pool)
    return client
