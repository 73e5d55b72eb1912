"""etcd store: keys on an etcd cluster, TTLs on shared leases, failover across members.

Keys live under ``sessionkv/<namespace>/`` as UTF-8 bytes, so ``keys(prefix)`` is one
range request in byte (= code point) order. A key's TTL is a lease: keys written with
the same TTL within one second share a lease granted with one spare second (see
:mod:`._etcd_leases`), which is why the declared expiry lag is the measured lease
expiry lag of etcd plus one second. Every write that needs a condition (``set(...,
only_if_exists=True)``, ``expire``, ``compare_and_set``) is a transaction that compares
the key (its existence, or its value) with the write, so no other write, delete or
expiry slips in between; batches are one transaction per 128 keys (nested transactions
give each key its own condition), sent concurrently. Requests go to the JSON gateway
through etcd3-py's client, read raw (see :mod:`._etcd_transport`), with failover to the
next member of the URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any, TypeVar

from ..core.checks import check_seconds
from ..core.errors import BackendError, BackendUnavailableError, ConfigurationError
from ..core.store import SessionKVStore
from ..core.types import StoreSemantics
from ..core.urls import parse_host, parse_store_url
from . import _etcd_codec as codec
from . import declared_semantics
from ._etcd_leases import JANITOR_TICK, LeasePool, lease_ttl
from ._etcd_transport import EtcdTransport, GatewayError, LeaseWindowPassedError, TLSOptions

__all__ = ["DEFAULT_PORT", "EtcdSessionKVStore"]

DEFAULT_PORT = 2379

T = TypeVar("T")
Endpoint = str | tuple[str, int | None]
"""``"host:port"`` (``"[IPv6]:port"``; the port defaults to 2379) or ``(host, port)``."""

_SEMANTICS = declared_semantics("etcd")


class EtcdSessionKVStore(SessionKVStore):
    """Keys on an etcd (>= 3.4) cluster, shared by every process and host that uses it.

    ``endpoints`` are the members' client addresses: ``"host:port"`` strings (one string
    may list several, comma-separated) or ``(host, port)`` tuples; calls go to one member
    and move to the next when it fails. ``timeout`` bounds each request to etcd, failover
    retries included, from the moment it has a connection (waiting for one of the pooled
    connections is not the cluster's fault and does not count). ``tls`` (or an
    ``etcds://`` URL) speaks HTTPS, trusting ``ca_file`` (default: the system's CAs) and
    presenting ``cert_file``/``key_file`` if given. ``username`` and ``password`` enable
    etcd authentication; they never appear in ``repr`` or errors.
    """

    SEMANTICS = _SEMANTICS

    def __init__(
        self,
        endpoints: str | Iterable[Endpoint] = f"127.0.0.1:{DEFAULT_PORT}",
        *,
        namespace: str = "",
        timeout: float = 5.0,
        tls: bool = False,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        super().__init__(namespace=namespace)
        members = _members(endpoints)
        self._timeout = check_seconds("timeout", timeout)
        if password is not None and username is None:
            raise ConfigurationError("an etcd password needs a username")
        use_tls = tls or any(f is not None for f in (ca_file, cert_file, key_file))
        self._transport = EtcdTransport(
            members,
            timeout=self._timeout,
            tls=TLSOptions(ca_file, cert_file, key_file) if use_tls else None,
            username=username,
            password=password,
        )
        self._codec = codec.KeyCodec(namespace)
        self._leases = LeasePool(self._transport.post, time.monotonic)
        self._semantics = _SEMANTICS
        self._sweep_every = JANITOR_TICK  # the lease janitor

    @classmethod
    def from_url(cls, url: str, **options: Any) -> EtcdSessionKVStore:
        """``etcd://host:port[,host:port...][?namespace=...&timeout=...]``; ``etcds://``
        for TLS (options ``ca_file``, ``cert_file``, ``key_file``);
        ``etcd://user:password@host:port`` for etcd authentication."""
        parsed = parse_store_url(url)
        if parsed.scheme not in ("etcd", "etcds"):
            raise ConfigurationError(f"not an etcd URL: {parsed.redacted!r}")
        if not parsed.hosts:
            raise ConfigurationError(f"{parsed.redacted!r} names no etcd member")
        if parsed.path not in ("", "/"):
            raise ConfigurationError(
                f"{parsed.redacted!r}: an etcd URL has no path; use ?namespace=..."
            )
        kwargs = parsed.options(
            options,
            allowed={
                "namespace": str,
                "timeout": float,
                "ca_file": str,
                "cert_file": str,
                "key_file": str,
            },
        )
        return cls(
            parsed.hosts,
            tls=parsed.scheme == "etcds",
            username=parsed.username,
            password=parsed.password,
            **kwargs,
        )

    @property
    def semantics(self) -> StoreSemantics:
        """The declaration, with ``min_ttl`` the cluster's own once the store started."""
        return getattr(self, "_semantics", _SEMANTICS)

    @property
    def endpoints(self) -> str:
        """The members' ``host:port`` list (no credentials)."""
        return self._transport.endpoints

    @property
    def active_endpoint(self) -> str:
        """The member calls go to now (``host:port``); it changes on failover."""
        return self._transport.active_endpoint

    def _describe(self) -> str:
        return f"endpoints={self._transport.endpoints!r}"

    # -- lifecycle -----------------------------------------------------------------

    async def _start(self) -> None:
        try:
            await self._transport.open()
            min_ttl = await self._cluster_min_ttl()
        except BaseException:
            await self._transport.close()
            raise
        self._semantics = dataclasses.replace(_SEMANTICS, min_ttl=min_ttl)

    async def _cluster_min_ttl(self) -> float:
        """etcd raises a lease to its minimum TTL and answers a grant with the TTL it
        gave: grant the shortest, read it, revoke it. It also proves a member answers,
        so a wrong address fails in ``start``."""
        answer = await self._transport.post("/lease/grant", {"TTL": 1}, control=True)
        try:
            await self._transport.post("/lease/revoke", {"ID": answer["ID"]}, control=True)
        except GatewayError as exc:
            if not exc.lease_not_found:  # gone already is what we wanted
                raise
        return float(max(int(answer.get("TTL", 1)), 1))

    async def _close(self) -> None:
        try:
            await self._leases.close()
        finally:
            await self._transport.close()

    async def _sweep(self) -> int:
        return await self._leases.sweep()

    # -- helpers ---------------------------------------------------------------------

    def _lease_ttl(self, ttl: float) -> int:
        return lease_ttl(self._semantics.effective_ttl(ttl))

    async def _post_leased(
        self,
        method: str,
        ttls: Collection[int],
        body_for: Callable[[dict[int, str]], dict[str, Any]],
    ) -> dict[str, Any]:
        """POST ``body_for({lease TTL: lease id})``, taking the leases only once the
        request holds a connection, so no queue stands between a lease's grant and its
        keys. A lease etcd no longer knows (revoked by someone, or lost to a failover)
        is replaced once; a failover retry too late for its leases gets fresh ones."""
        async with self._transport.admitted() as deadline:
            replaced = False
            while True:
                leases = await self._leases.acquire(ttls)
                try:
                    window = min(lease.shareable_until for lease in leases.values())
                    return await self._transport.post(
                        method,
                        body_for({ttl: lease.id for ttl, lease in leases.items()}),
                        deadline=deadline,
                        # A lease granted too late for its window (a slow cluster) is
                        # used as it is, as acquire() decided.
                        send_before=window if time.monotonic() < window else None,
                    )
                except LeaseWindowPassedError:
                    continue
                except GatewayError as exc:
                    if not exc.lease_not_found or replaced:
                        raise
                    replaced = True
                    self._leases.discard(leases)
                finally:
                    self._leases.release(leases)

    async def _txns(self, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run ``ops`` (no leases) as transactions within etcd's limits, concurrently."""
        batches = codec.chunks(ops, codec.MAX_TXN_OPS, codec.op_size)
        return await _concurrently(
            [self._transport.post("/kv/txn", codec.txn(batch)) for batch in batches]
        )

    # -- primitives ------------------------------------------------------------------

    async def _set(self, key: str, value: bytes, ttl: float, only_if_exists: bool) -> None:
        wire, ttl_ = self._codec.encode(key), self._lease_ttl(ttl)
        if only_if_exists:
            await self._post_leased(
                "/kv/txn",
                (ttl_,),
                lambda ids: codec.txn(
                    [codec.put_op(wire, value, ids[ttl_])], [codec.compare_exists(wire)]
                ),
            )
        else:
            await self._post_leased(
                "/kv/put", (ttl_,), lambda ids: codec.put_op(wire, value, ids[ttl_])["request_put"]
            )

    async def _compare_and_set(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        wire, ttl_ = self._codec.encode(key), self._lease_ttl(ttl)
        answer = await self._post_leased(
            "/kv/txn",
            (ttl_,),
            # etcd fails a value comparison on a missing key: never creates one.
            lambda ids: codec.txn(
                [codec.put_op(wire, value, ids[ttl_])], [codec.compare_value(wire, expected)]
            ),
        )
        return codec.succeeded(answer)

    async def _mset(self, items: list[tuple[str, bytes, float]]) -> None:
        writes = [
            (self._codec.encode(key), value, self._lease_ttl(ttl))
            for key, value, ttl in codec.last_wins(items)
        ]

        def put_all(batch: list[tuple[str, bytes, int]]) -> Awaitable[dict[str, Any]]:
            return self._post_leased(
                "/kv/txn",
                {ttl for _, _, ttl in batch},
                lambda ids: codec.txn([codec.put_op(w, v, ids[ttl]) for w, v, ttl in batch]),
            )

        batches = codec.chunks(writes, codec.MAX_TXN_OPS, lambda w: codec.put_size(w[0], w[1]))
        await _concurrently([put_all(batch) for batch in batches])

    async def _get(self, key: str) -> bytes | None:
        answer = await self._transport.post("/kv/range", {"key": self._codec.encode(key)})
        found = codec.kvs(answer)
        return codec.decode_value(found[0]) if found else None

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        if len(keys) == 1:
            return [await self._get(keys[0])]
        unique = list(dict.fromkeys(keys))
        answers = await self._txns([codec.range_op(self._codec.encode(k)) for k in unique])
        values: dict[str, bytes | None] = {}
        responses = [r for answer in answers for r in answer.get("responses", ())]
        for key, response in zip(unique, responses, strict=True):
            found = codec.kvs(response.get("response_range", {}))
            values[key] = codec.decode_value(found[0]) if found else None
        return [values[key] for key in keys]

    async def _range(self, prefix: str, keys_only: bool) -> list[dict[str, Any]]:
        start, end = self._codec.prefix_range(prefix)
        body: dict[str, Any] = {"key": start, "range_end": end}
        if keys_only:
            body["keys_only"] = True
        return codec.kvs(await self._transport.post("/kv/range", body))

    async def _keys(self, prefix: str) -> list[str]:
        decode = self._codec.decode
        return [decode(kv["key"]) for kv in await self._range(prefix, keys_only=True)]

    async def _scan(self, prefix: str) -> list[tuple[str, bytes]]:
        decode = self._codec.decode
        return [
            (decode(kv["key"]), codec.decode_value(kv))
            for kv in await self._range(prefix, keys_only=False)
        ]

    async def _delete(self, keys: list[str]) -> None:
        unique = list(dict.fromkeys(keys))
        if len(unique) == 1:
            await self._transport.post("/kv/deleterange", {"key": self._codec.encode(unique[0])})
            return
        await self._txns([codec.delete_op(self._codec.encode(key)) for key in unique])

    async def _expire(self, keys: list[str], ttl: float) -> None:
        # Each key moves to a fresh lease with its value kept (ignore_value), guarded by
        # its own existence check in a nested transaction: one round trip per 64 keys,
        # and a key deleted or expired meanwhile is never re-created. Inner transactions
        # count against etcd's operation limit, hence half-size batches.
        wires = [self._codec.encode(key) for key in dict.fromkeys(keys)]
        ttl_ = self._lease_ttl(ttl)

        def refresh(batch: list[str]) -> Awaitable[dict[str, Any]]:
            return self._post_leased(
                "/kv/txn",
                (ttl_,),
                lambda ids: codec.txn(
                    [codec.guarded(codec.put_op(w, None, ids[ttl_]), w) for w in batch]
                ),
            )

        batches = codec.chunks(wires, codec.MAX_TXN_OPS // 2, codec.guarded_size)
        await _concurrently([refresh(batch) for batch in batches])

    # -- errors ----------------------------------------------------------------------

    def _translate_error(self, exc: Exception) -> BaseException:
        if isinstance(exc, GatewayError):
            if exc.code == 14:
                return BackendUnavailableError(f"{self!r}: etcd unavailable: {exc}")
            return BackendError(f"{self!r}: etcd refused the request: {exc}")
        return super()._translate_error(exc)


async def _concurrently(calls: list[Awaitable[T]]) -> list[T]:
    if len(calls) == 1:
        return [await calls[0]]
    return list(await asyncio.gather(*calls))


def _members(endpoints: str | Iterable[Endpoint]) -> list[tuple[str, int]]:
    """The members' ``(host, port)``, parsed once, whichever form they came in."""
    items: Iterable[Endpoint] = endpoints.split(",") if isinstance(endpoints, str) else endpoints
    members: list[tuple[str, int]] = []
    for item in items:
        if isinstance(item, str):
            if not item.strip():
                continue
            host, port = _parse_endpoint(item.strip())
        elif isinstance(item, tuple) and len(item) == 2:
            host, port = item
            if not isinstance(host, str) or not (
                port is None or (isinstance(port, int) and not isinstance(port, bool))
            ):
                raise TypeError(f"an etcd endpoint tuple is (host: str, port: int), not {item!r}")
            if not host or (port is not None and not 0 < port < 65536):
                raise ConfigurationError(f"bad etcd endpoint {item!r}")
        else:
            raise TypeError(
                f"an etcd endpoint is 'host:port' or (host, port), not {type(item).__name__}"
            )
        members.append((host, DEFAULT_PORT if port is None else port))
    if not members:
        raise ConfigurationError("EtcdSessionKVStore needs at least one endpoint")
    return members


def _parse_endpoint(text: str) -> tuple[str, int | None]:
    if "@" in text:  # never echoed: it may hold a password
        raise ConfigurationError(
            "an etcd endpoint is host:port; pass credentials as username= and password="
        )
    if "://" in text or "/" in text:
        raise ConfigurationError(f"an etcd endpoint is host:port, not a URL: {text!r}")
    if text.count(":") > 1 and not text.startswith("["):
        text = f"[{text}]"  # a bare IPv6 address, without a port
    host, port = parse_host(text, text)
    if not host:
        raise ConfigurationError(f"etcd endpoint {text!r} has no host")
    return host, port
