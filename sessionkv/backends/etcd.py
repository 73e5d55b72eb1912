"""etcd store: keys on an etcd cluster, TTLs on shared leases, failover across members.

Keys live under ``sessionkv/<namespace>/`` as UTF-8 bytes, so ``keys(prefix)`` is one
range request in byte (= code point) order. A key's TTL is a lease: keys written with
the same TTL within one second share a lease granted with one spare second (see
:mod:`._etcd_leases`), which is why the declared expiry lag is the measured lease
expiry lag of etcd plus one second. Every write that needs a condition (``set(...,
only_if_exists=True)``, ``expire``) is a transaction that compares the key's existence
with the write, so no delete or expiry slips in between; batches are one transaction per
128 keys (nested transactions give each key its own condition), sent concurrently.
Requests go to the JSON gateway through etcd3-py's client, read raw (see
:mod:`._etcd_transport`), with failover to the next member of the URL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..core.errors import BackendError, BackendUnavailableError, ConfigurationError
from ..core.store import SessionKVStore
from ..core.types import StoreSemantics
from ..core.urls import parse_store_url
from . import _etcd_codec as codec
from ._etcd_leases import Lease, LeasePool
from ._etcd_transport import EtcdTransport, GatewayError, TLSOptions

__all__ = ["DEFAULT_PORT", "EtcdSessionKVStore"]

DEFAULT_PORT = 2379

_SEMANTICS = StoreSemantics(
    ttl_resolution=1.0,  # lease TTLs are whole seconds
    min_ttl=2.0,  # etcd raises shorter leases to its minimum (2 s with default timings)
    # One second of lease sharing (see _etcd_leases), etcd's lease expiry check every
    # 500 ms (keys gone 0.46-0.51 s after their lease's TTL), and margin for a loaded
    # machine: measured end to end, keys were gone 0.16-1.32 s after their TTL. A leader
    # change renews every lease (etcd does so on purpose): keys outlive this then.
    expiry_lag=2.5,
    shared_across_processes=True,
    shared_across_hosts=True,
    atomic_mset=False,  # atomic up to 128 keys (one transaction); larger batches are not
    scan_cost="O(log n + k)",
)


def _parse_endpoint(text: str) -> tuple[str, int]:
    text = text.strip()
    if "://" in text:
        raise ConfigurationError(f"an endpoint is host:port, not a URL: {text!r}")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise ConfigurationError(f"endpoint {text!r} has no host")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ConfigurationError(f"endpoint {text!r} has a bad port")
    return host, int(port) if port else DEFAULT_PORT


class EtcdSessionKVStore(SessionKVStore):
    """Keys on an etcd (>= 3.4) cluster, shared by every process and host that uses it.

    ``endpoints`` are the members' client addresses (``"host:port"``, a list of them,
    or one comma-separated string); calls go to one member and move to the next when
    it fails. ``timeout`` bounds each request to etcd, failover retries included.
    ``tls`` (or an ``etcds://`` URL) speaks HTTPS, trusting ``ca_file`` (default: the
    system's CAs) and presenting ``cert_file``/``key_file`` if given. ``username`` and
    ``password`` enable etcd authentication; they never appear in ``repr`` or errors.
    """

    SEMANTICS = _SEMANTICS

    def __init__(
        self,
        endpoints: str | Sequence[str] = f"127.0.0.1:{DEFAULT_PORT}",
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
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        parsed = [_parse_endpoint(e) for e in endpoints if e.strip()]
        if not parsed:
            raise ConfigurationError("EtcdSessionKVStore needs at least one endpoint")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError("timeout must be a number of seconds")
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        if password is not None and username is None:
            raise ConfigurationError("an etcd password needs a username")
        use_tls = tls or any(f is not None for f in (ca_file, cert_file, key_file))
        self._timeout = float(timeout)
        self._transport = EtcdTransport(
            parsed,
            timeout=self._timeout,
            tls=TLSOptions(ca_file, cert_file, key_file) if use_tls else None,
            username=username,
            password=password,
        )
        self._codec = codec.KeyCodec(namespace)
        self._leases = LeasePool(self._transport.call, time.monotonic)

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
        endpoints = [
            f"[{host}]:{port or DEFAULT_PORT}" if ":" in host else f"{host}:{port or DEFAULT_PORT}"
            for host, port in parsed.hosts
        ]
        return cls(
            endpoints,
            tls=parsed.scheme == "etcds",
            username=parsed.username,
            password=parsed.password,
            **kwargs,
        )

    @property
    def endpoints(self) -> str:
        """The members' ``host:port`` list (no credentials)."""
        return self._transport.endpoints

    @property
    def active_endpoint(self) -> str:
        """The member calls go to now (``host:port``); it changes on failover."""
        return self._transport.active_endpoint

    def __repr__(self) -> str:
        return (
            f"EtcdSessionKVStore(endpoints={self._transport.endpoints!r}, "
            f"namespace={self.namespace!r}, state={self._state.value})"
        )

    # -- lifecycle -----------------------------------------------------------------

    async def _start(self) -> None:
        try:
            await self._transport.open()
            # One cheap request proves a member answers, so a wrong address fails here.
            await self._transport.call("/kv/range", {"key": self._codec.encode("\x00")})
        except BaseException:
            await self._transport.close()
            raise
        self._leases.start()

    async def _close(self) -> None:
        try:
            await self._leases.close()
        finally:
            await self._transport.close()

    # -- helpers ---------------------------------------------------------------------

    async def _txn(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._transport.call("/kv/txn", body)

    async def _with_lease(self, ttl: float, write: Callable[[str], Awaitable[None]]) -> None:
        """Run ``write(lease_id)`` with a lease for ``ttl``; a lease etcd no longer knows
        (revoked by someone, or lost to a failover) is replaced once."""
        effective = _SEMANTICS.effective_ttl(ttl)
        for attempt in (1, 2):
            lease = await self._leases.acquire(effective)
            try:
                await write(lease.id)
                return
            except GatewayError as exc:
                if not exc.lease_not_found or attempt == 2:
                    raise
                self._leases.discard(lease)
            finally:
                self._leases.release(lease)

    async def _acquire_all(self, ttls: list[float]) -> list[Lease]:
        got = await asyncio.gather(*map(self._leases.acquire, ttls), return_exceptions=True)
        leases = [lease for lease in got if isinstance(lease, Lease)]
        if len(leases) < len(got):
            for lease in leases:
                self._leases.release(lease)
            raise next(exc for exc in got if isinstance(exc, BaseException))
        return leases

    async def _each_txn(
        self, ops: list[dict[str, Any]], limit: int = codec.MAX_TXN_OPS
    ) -> list[dict[str, Any]]:
        """Run ``ops`` as transactions within etcd's limits, concurrently."""
        bodies = [codec.txn(batch) for batch in codec.chunks(ops, limit)]
        if len(bodies) == 1:
            return [await self._txn(bodies[0])]
        return list(await asyncio.gather(*(self._txn(body) for body in bodies)))

    # -- primitives ------------------------------------------------------------------

    async def _set(self, key: str, value: bytes, ttl: float, only_if_exists: bool) -> None:
        wire = self._codec.encode(key)

        async def write(lease: str) -> None:
            op = codec.put_op(wire, value, lease)
            if only_if_exists:
                await self._txn(codec.txn([op], [codec.compare_exists(wire)]))
            else:
                await self._transport.call("/kv/put", op["request_put"])

        await self._with_lease(ttl, write)

    async def _mset(self, items: list[tuple[str, bytes, float]]) -> None:
        by_ttl: dict[float, list[tuple[str, bytes]]] = {}
        for key, value, ttl in codec.last_wins(items):
            by_ttl.setdefault(_SEMANTICS.effective_ttl(ttl), []).append((key, value))
        for attempt in (1, 2):
            leases = await self._acquire_all(list(by_ttl))
            try:
                ops = [
                    codec.put_op(self._codec.encode(key), value, lease.id)
                    for lease, group in zip(leases, by_ttl.values(), strict=True)
                    for key, value in group
                ]
                await self._each_txn(ops)
                return
            except GatewayError as exc:
                if not exc.lease_not_found or attempt == 2:
                    raise
                for lease in leases:
                    self._leases.discard(lease)
            finally:
                for lease in leases:
                    self._leases.release(lease)

    async def _get(self, key: str) -> bytes | None:
        answer = await self._transport.call("/kv/range", {"key": self._codec.encode(key)})
        found = codec.kvs(answer)
        return codec.decode_value(found[0]) if found else None

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        if len(keys) == 1:
            return [await self._get(keys[0])]
        unique = list(dict.fromkeys(keys))
        answers = await self._each_txn([codec.range_op(self._codec.encode(k)) for k in unique])
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
        return codec.kvs(await self._transport.call("/kv/range", body))

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
            await self._transport.call("/kv/deleterange", {"key": self._codec.encode(unique[0])})
            return
        await self._each_txn([codec.delete_op(self._codec.encode(key)) for key in unique])

    async def _expire(self, keys: list[str], ttl: float) -> None:
        # Each key moves to a fresh lease with its value kept (ignore_value), guarded by
        # its own existence check in a nested transaction: one round trip per 64 keys,
        # and a key deleted or expired meanwhile is never re-created. Inner transactions
        # count against etcd's operation limit, hence half-size batches.
        wires = [self._codec.encode(key) for key in dict.fromkeys(keys)]

        async def write(lease: str) -> None:
            ops = [codec.guarded(codec.put_op(wire, None, lease), wire) for wire in wires]
            await self._each_txn(ops, codec.MAX_TXN_OPS // 2)

        await self._with_lease(ttl, write)

    # -- errors ----------------------------------------------------------------------

    def _translate_error(self, exc: Exception) -> BaseException:
        if isinstance(exc, GatewayError):
            if exc.code == 14:
                return BackendUnavailableError(f"{self!r}: etcd unavailable: {exc}")
            return BackendError(f"{self!r}: etcd refused the request: {exc}")
        return super()._translate_error(exc)
