"""Redis store on redis-py's asyncio client: sessions shared by every node of a cluster.

Each key is a Redis string with a millisecond expiry (``PXAT`` on the server's clock),
so ``GET``/``MGET`` never return an expired value. Prefix scans do not walk the keyspace
(``SCAN MATCH`` is O(all keys) and reads ``* ? [ ] \\`` as glob syntax): each namespace
keeps its keys in a sorted set read by ``ZRANGEBYLEX`` over the literal byte range of
the prefix, plus a second sorted set of expiry times used to trim the first. Lua
scripts (:mod:`._redis_scripts`) keep data and index consistent atomically and make
every operation one round trip; they are called by ``EVALSHA`` and reloaded after a
server restart. Every call has a socket timeout; a lost server raises
:class:`~sessionkv.BackendUnavailableError` and the same store works again once the
server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..core.checks import check_seconds, prefix_upper_bound
from ..core.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    StoreClosedError,
)
from ..core.imports import import_client
from ..core.store import SessionKVStore
from ..core.urls import StoreURL, parse_store_url, redact_url
from . import _redis_scripts as lua
from . import declared_semantics

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_URL", "RedisSessionKVStore", "namespace_prefix"]

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_TIMEOUT = 5.0
DEFAULT_SWEEP_INTERVAL = 60.0
DEFAULT_MAX_CONNECTIONS = 50
_TRIM_BATCH = 1000
"""Index members one trim script looks at; :meth:`RedisSessionKVStore.trim_index`
repeats it until a batch comes back short."""
# Redis refuses expiries that overflow its 64-bit ms clock; ~35,000 years is plenty.
_MAX_TTL_MS = round(declared_semantics("redis").max_ttl * 1000)  # the declared clamp
_SCHEMES = ("redis", "rediss", "unix")
_CERT_REQS = ("none", "optional", "required")


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


# What each option is in a URL's query (all text there); keywords arrive typed.
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


def _ttl_ms(ttl: float) -> int:
    # Round up: a key must live at least its TTL.
    return min(max(1, math.ceil(ttl * 1000 - 1e-6)), _MAX_TTL_MS)


def _lex_range(prefix: bytes) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX bounds of every member starting with ``prefix``: ``[prefix`` up to
    the smallest string above all of them, exclusive (``+``: no such string)."""
    if not prefix:
        return b"-", b"+"
    end = prefix_upper_bound(prefix)
    return b"[" + prefix, b"+" if end is None else b"(" + end


def namespace_prefix(namespace: str) -> bytes:
    """``sessionkv:<namespace, percent-encoded>:``; the encoding has no ``:``, so no
    namespace's prefix is a prefix of another's."""
    # Not core's escape_segment: that one keeps ':', and the namespace ends at a ':'
    # here (namespace 'a:k:b' would own 'sessionkv:a:k:b:idx', which is namespace 'a''s
    # data key 'b:idx'). quote() also escapes ':'; changing the encoding would orphan
    # every key written by earlier versions.
    return b"sessionkv:" + quote(namespace, safe="").encode("ascii") + b":"


@dataclass(frozen=True)
class _Config:
    """Everything the constructor's arguments decide, parsed and checked once."""

    namespace: str
    sweep_interval: float
    timeout: float
    """Seconds per call; also how long a call waits for a free pooled connection."""
    max_connections: int
    """Calls in flight at once: the pool's size."""
    kind: str
    """``tcp``, ``tls``, ``unix``, or ``client`` (a client passed in)."""
    where: str
    """For ``repr``: the URL without password and query, or the client's address."""
    secret: str | None = field(default=None, repr=False)
    """The password, scrubbed from error messages."""
    pool: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """redis-py ``ConnectionPool`` arguments (connection kind aside); empty for a client."""


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be an int >= {minimum}, not {value!r}")
    return value


def _url_config(url: str, explicit: dict[str, Any]) -> _Config:
    parsed = parse_store_url(url)
    if parsed.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"a Redis URL starts with redis://, rediss:// or unix://, not {parsed.redacted!r}"
        )
    options = parsed.options(explicit, allowed=_URL_OPTIONS)
    timeout = check_seconds("timeout", options.pop("timeout", DEFAULT_TIMEOUT))
    sweep_interval = options.pop("sweep_interval", DEFAULT_SWEEP_INTERVAL)
    max_connections = options.pop("max_connections", DEFAULT_MAX_CONNECTIONS)
    pool: dict[str, Any] = {
        "username": parsed.username,
        "password": parsed.password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    pool.update(_endpoint(parsed, options.pop("db", None)))
    pool.update(_tls(parsed, {k: options.pop(k) for k in list(options) if k[:4] == "ssl_"}))
    return _Config(
        namespace=options.pop("namespace", ""),
        sweep_interval=check_seconds("sweep_interval", sweep_interval, allow_zero=True),
        timeout=timeout,
        max_connections=_count("max_connections", max_connections, 1),
        kind={"unix": "unix", "rediss": "tls"}.get(parsed.scheme, "tcp"),
        where=f"url={parsed.redacted.split('?', 1)[0]!r}",
        secret=parsed.password,
        pool=pool,
    )


def _endpoint(url: StoreURL, db: object) -> dict[str, Any]:
    """Where to connect: host and port, or the socket path; and the database."""
    if db is not None:
        db = _count("db", db, 0)
    if url.scheme == "unix":
        if not url.path or url.path == "/":
            raise ConfigurationError(
                f"a unix URL names the socket: unix:///path/redis.sock, not {url.redacted!r}"
            )
        return {"path": url.path, "db": db or 0}
    if len(url.hosts) > 1:
        raise ConfigurationError(f"a Redis URL names one server, not {url.redacted!r}")
    host, port = url.hosts[0] if url.hosts else ("localhost", None)
    path_db = url.path.strip("/")
    if path_db:
        if not (path_db.isascii() and path_db.isdigit()):
            raise ConfigurationError(f"the database in {url.redacted!r} must be a number")
        if db is not None and int(path_db) != db:
            raise ConfigurationError(f"{url.redacted!r} names two databases")
        db = int(path_db)
    return {"host": host or "localhost", "port": port or 6379, "db": db or 0}


def _tls(url: StoreURL, options: dict[str, Any]) -> dict[str, Any]:
    """The ``ssl_*`` options, checked; only a ``rediss://`` URL takes them."""
    for name, value in options.items():
        kind = bool if name == "ssl_check_hostname" else str
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be {kind.__name__}, not {type(value).__name__}")
    if url.scheme != "rediss":
        if options:
            raise ConfigurationError(
                f"{sorted(options)} need a rediss:// URL, not {url.redacted!r}"
            )
        return {}
    reqs = options.setdefault("ssl_cert_reqs", "required")
    if reqs not in _CERT_REQS:
        raise ConfigurationError(f"ssl_cert_reqs must be one of {_CERT_REQS}, not {reqs!r}")
    return options


def _client_config(client: object, explicit: dict[str, Any]) -> _Config:
    given = sorted(set(explicit) - {"namespace", "sweep_interval"})
    if given:
        raise ConfigurationError(
            f"{given} configure a connection: set them on the client you pass in"
        )
    pool = getattr(client, "connection_pool", None)
    if pool is None or not hasattr(client, "execute_command"):
        raise TypeError(f"client must be a redis.asyncio.Redis, not {type(client).__name__}")
    kwargs = pool.connection_kwargs
    if kwargs.get("decode_responses"):
        raise ConfigurationError(
            "the client decodes responses to str; values are bytes: create it with "
            "decode_responses=False"
        )
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        where = f"client='unix://{kwargs['path']}?db={db}'"
    else:
        where = f"client='{kwargs.get('host')}:{kwargs.get('port')}/{db}'"
    secret = kwargs.get("password")
    return _Config(
        namespace=explicit.get("namespace", ""),
        sweep_interval=check_seconds(
            "sweep_interval",
            explicit.get("sweep_interval", DEFAULT_SWEEP_INTERVAL),
            allow_zero=True,
        ),
        # The client's own timeout, which also bounds the wait for a free connection.
        timeout=kwargs.get("socket_timeout") or DEFAULT_TIMEOUT,
        max_connections=max(1, pool.max_connections),
        kind="client",
        where=where,
        secret=secret if isinstance(secret, str) else None,
    )


class RedisSessionKVStore(SessionKVStore):
    """Keys on a Redis server, shared by every process and host that reaches it.

    Give a ``url`` (``redis://[user:password@]host:port/db``, ``rediss://...`` for TLS,
    ``unix:///path.sock?db=0``; default ``redis://localhost:6379/0``) or a ``client``
    (a ``redis.asyncio.Redis`` made with ``decode_responses=False``; the store never
    closes a client it was given, and the client's own timeouts and retries apply).

    ``timeout`` bounds connecting and each answer (seconds); a call that gets no answer
    raises :class:`~sessionkv.BackendTimeoutError` (and may still have been applied).
    ``max_connections`` is the pool's size. ``sweep_interval`` is how often a background
    task trims expired keys from the namespace's index (0: only writes and scans trim
    it; see :meth:`trim_index`). ``ssl_*`` options configure TLS for ``rediss://``.
    URL query options (``?namespace=...&timeout=2``) are the same as these keywords; a
    value out of range is a :class:`~sessionkv.ConfigurationError`.
    """

    SEMANTICS = declared_semantics("redis")

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
        given = {
            "namespace": namespace,
            "timeout": timeout,
            "sweep_interval": sweep_interval,
            "db": db,
            "max_connections": max_connections,
            "ssl_ca_certs": ssl_ca_certs,
            "ssl_certfile": ssl_certfile,
            "ssl_keyfile": ssl_keyfile,
            "ssl_cert_reqs": ssl_cert_reqs,
            "ssl_check_hostname": ssl_check_hostname,
        }
        explicit = {name: value for name, value in given.items() if value is not None}
        if client is None:
            import_client("redis.asyncio", backend="redis", extra="redis")
            config = _url_config(DEFAULT_URL if url is None else url, explicit)
        elif url is not None:
            raise TypeError("give RedisSessionKVStore a url or a client, not both")
        else:
            config = _client_config(client, explicit)
        super().__init__(namespace=config.namespace)
        self._config = config
        self._client: Redis | None = client
        self._owns_client = client is None
        self._sweep_every = config.sweep_interval
        prefix = namespace_prefix(self.namespace)
        self._data_prefix = prefix + b"k:"
        self._index_keys = (prefix + b"idx", prefix + b"exp")
        self._execute: Callable[..., Awaitable[Any]] = _not_started
        # At most one call per pooled connection at a time: a burst of concurrent calls
        # queues here (uncontended, this costs far less than a blocking pool's queue)
        # instead of failing with "Too many connections".
        self._slots = asyncio.Semaphore(config.max_connections)
        self._calls = 0  # calls inside _command, queued or running
        self._idle: asyncio.Event | None = None  # set when _calls drops to 0 (close waits)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSessionKVStore:
        """``redis://``, ``rediss://`` or ``unix://`` URL; ``options`` override its query."""
        # Only the keywords' names: an unknown one would be a TypeError from the call.
        # The URL itself (and its query's names) is parsed and checked once, below.
        unknown = sorted(set(options) - set(_URL_OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {unknown} for {redact_url(url)!r}; "
                f"this backend takes {sorted(_URL_OPTIONS)}"
            )
        return cls(url, **options)

    def _describe(self) -> str:
        config: _Config | None = getattr(self, "_config", None)
        return "" if config is None else config.where

    @property
    def client(self) -> Redis:
        """The redis-py client (created by :meth:`start` unless one was passed in)."""
        if self._client is None:
            raise RuntimeError(f"{self!r} has no client before start()")
        return self._client

    # -- lifecycle -----------------------------------------------------------------

    async def _start(self) -> None:
        if self._client is None:
            self._client = _make_client(self._config)
        client = self._client
        try:
            async with client.pipeline(transaction=False) as pipe:
                for script in lua.SCRIPTS:
                    pipe.script_load(script.source)
                await pipe.execute()
        except BaseException:
            if self._owns_client:
                self._client = None
                with contextlib.suppress(Exception):
                    await client.aclose()
            raise
        self._execute = client.execute_command

    async def _close(self) -> None:
        self._execute = _closed  # calls still queued for a connection fail, unsent
        if not self._owns_client or self._client is None:
            return
        client, self._client = self._client, None
        # Drop every connection: a call reading an answer fails now (StoreClosedError:
        # _command never retries once closed) rather than reconnecting behind our back.
        try:
            await client.aclose()
        finally:
            if self._calls:
                # A call that was checking out a connection may have opened a new one:
                # let every call leave, then drop what they left in the pool.
                self._idle = asyncio.Event()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), self._config.timeout)
                await client.connection_pool.disconnect()

    async def trim_index(self) -> int:
        """Remove the members of expired keys from the namespace's index now; returns
        how many. Redis frees expired values by itself and reads never list them: this
        only frees the index's memory. Writes and scans trim as they go, and a
        background task runs this every ``sweep_interval`` seconds."""
        await self._ensure_open()
        with self._errors:
            removed = await self._sweep()
        return removed

    async def purge_expired(self) -> int:
        """Alias of :meth:`trim_index`, its name in sessionkv 0.1."""
        return await self.trim_index()

    async def _sweep(self) -> int:
        removed = 0
        while True:
            due, gone = await self._eval(lua.TRIM, _TRIM_BATCH)
            removed += int(gone)
            if int(due) < _TRIM_BATCH:
                return removed

    # -- primitives ------------------------------------------------------------------

    async def _command(self, *args: Any) -> Any:
        # redis-py waits with asyncio.wait_for (and so does the slot wait below), which
        # on Python <= 3.11 returns the result when a cancel arrives as the result
        # does: count the cancels now, and honour any that arrive during the call.
        task = asyncio.current_task()
        cancels = _cancelling(task)
        self._calls += 1
        try:
            slots = self._slots
            if slots.locked():
                # Every connection is busy: wait for one no longer than a call may take.
                try:
                    await asyncio.wait_for(slots.acquire(), self._config.timeout)
                except asyncio.TimeoutError:
                    raise BackendTimeoutError(
                        f"{self!r}: every pooled connection stayed busy for "
                        f"{self._config.timeout} s (raise max_connections?)"
                    ) from None
            else:
                await slots.acquire()
            try:
                if _cancelling(task) > cancels:  # dropped while waiting for a slot:
                    raise asyncio.CancelledError()  # nothing sent yet
                result = await self._send(args)
            except Exception as exc:
                if _cancelling(task) > cancels:
                    # Cancelled, then the driver failed instead (close() shut the socket
                    # before the task resumed): the caller's cancel wins.
                    raise asyncio.CancelledError() from exc
                raise
            finally:
                slots.release()
            if _cancelling(task) > cancels:
                raise asyncio.CancelledError()
            return result
        finally:
            self._calls -= 1
            if not self._calls and self._idle is not None:
                self._idle.set()

    async def _send(self, args: tuple[Any, ...]) -> Any:
        try:
            return await self._execute(*args)
        except Exception as exc:
            if not self._may_retry(exc):
                raise
        # A pooled connection broke (after a server restart it is dead; the next one is
        # fresh): once, at once. Timeouts are never retried.
        return await self._execute(*args)

    def _may_retry(self, exc: Exception) -> bool:
        if not self._owns_client or self.closed:
            return False  # a client passed in has its own retries
        from redis import exceptions as rx  # loaded: the exception came from redis-py

        return isinstance(exc, rx.ConnectionError) and not isinstance(
            exc, (rx.AuthenticationError, rx.AuthorizationError)
        )

    async def _eval(self, script: lua.Script, *args: bytes | int) -> Any:
        try:
            return await self._command(
                "EVALSHA", script.sha, 2, *self._index_keys, self._data_prefix, *args
            )
        except Exception as exc:
            from redis import exceptions as rx

            if not isinstance(exc, rx.NoScriptError):
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

    async def _compare_and_set(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        written = await self._eval(lua.COMPARE_AND_SET, key.encode(), expected, value, _ttl_ms(ttl))
        return bool(written)

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
        from redis import exceptions as rx  # loaded: the store made or was given a client

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
        secret = self._config.secret
        return text.replace(secret, "***") if secret else text


def _cancelling(task: asyncio.Task[Any] | None) -> int:
    """Cancellation requests pending on ``task`` (Python >= 3.11; 0 before)."""
    counter = getattr(task, "cancelling", None)
    return counter() if counter is not None else 0


async def _not_started(*args: Any) -> Any:
    raise RuntimeError("the Redis store is not started")


async def _closed(*args: Any) -> Any:
    raise StoreClosedError("the Redis store is closed")


def _make_client(config: _Config) -> Redis:
    redis_asyncio = import_client("redis.asyncio", backend="redis", extra="redis")
    connection = import_client("redis.asyncio.connection", backend="redis", extra="redis")
    retries = import_client("redis.asyncio.retry", backend="redis", extra="redis")
    backoff = import_client("redis.backoff", backend="redis", extra="redis")
    connection_class = {
        "tcp": connection.Connection,
        "tls": connection.SSLConnection,
        "unix": connection.UnixDomainSocketConnection,
    }[config.kind]
    pool = connection.ConnectionPool(
        max_connections=config.max_connections,
        connection_class=connection_class,
        decode_responses=False,
        # No retries in redis-py: _command retries a broken connection itself, and
        # never once the store is closed (a retry would reconnect a closed store).
        retry=retries.Retry(backoff.NoBackoff(), 0),
        **config.pool,
    )
    client: Redis = redis_asyncio.Redis.from_pool(pool)
    return client
