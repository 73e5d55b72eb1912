"""Requests to an etcd cluster's JSON gateway through etcd3-py, with failover.

One etcd3-py ``AioClient`` (one aiohttp connection pool) talks to one member at a time;
``call_rpc(..., raw=True)`` hands back the HTTP response, which is read and parsed here
instead of through etcd3-py's models (the hot path). A connection failure, a timed-out
attempt or an "unavailable" answer (no leader, leader changed) moves every later call to
the next member and retries within the call's deadline; only when that deadline passes
does the caller get :class:`BackendUnavailableError` or :class:`BackendTimeoutError`.
Credentials travel only in the authentication request and never reach a message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import BackendTimeoutError, BackendUnavailableError
from ..core.imports import import_client

if TYPE_CHECKING:
    from etcd3 import AioClient

__all__ = ["EtcdTransport", "GatewayError", "TLSOptions"]

log = logging.getLogger("sessionkv.etcd")

# gRPC status codes the gateway reports in its error bodies.
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16
_NOT_FOUND = 5
# Until a call has tried every member once, retry at once; then back off this much,
# doubling up to the cap, so a cluster electing a leader is not hammered.
_BACKOFF_START = 0.05
_BACKOFF_CAP = 0.5


@dataclass(frozen=True)
class TLSOptions:
    """Files for ``etcds://``: a CA bundle to trust and an optional client certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


class GatewayError(Exception):
    """An error answer from etcd; ``etcd_error`` is etcd3-py's exception for it."""

    def __init__(self, etcd_error: Exception, code: int | None, status: int) -> None:
        super().__init__(str(etcd_error))
        self.etcd_error = etcd_error
        self.code = code
        self.status = status

    @property
    def lease_not_found(self) -> bool:
        return self.code == _NOT_FOUND and "lease not found" in str(self)


def _client_class() -> type[AioClient]:
    etcd3 = import_client("etcd3", backend="etcd", extra="etcd")
    semantic_version = import_client("semantic_version", backend="etcd", extra="etcd")

    class GatewayClient(etcd3.AioClient):  # type: ignore[misc, name-defined]
        """etcd3-py's client without its version probe: that probe is a blocking
        ``requests`` call in the constructor (it would stall the event loop, and it
        fails against a member that is down). The JSON gateway's ``/v3`` paths exist
        from etcd 3.4 on, which this backend requires."""

        def _retrieve_version(self) -> None:
            self.server_version = self.cluster_version = "3.4.0"
            self.server_version_sem = semantic_version.Version("3.4.0")
            self.cluster_version_sem = semantic_version.Version("3.4.0")

    return GatewayClient


class EtcdTransport:
    """Posts JSON bodies to the gateway of one member at a time, failing over."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        timeout: float,
        tls: TLSOptions | None,
        username: str | None,
        password: str | None,
        pool_size: int = 64,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self._endpoints = list(endpoints)
        self._timeout = timeout
        self._tls = tls
        self._username = username
        self._password = password
        self._pool_size = pool_size
        self._active = 0
        self._client: AioClient | None = None
        self._aiohttp: Any = None
        self._auth_lock: asyncio.Lock | None = None

    @property
    def endpoints(self) -> str:
        """``host:port,...`` of the members, for messages (no credentials)."""
        return ",".join(_hostport(host, port) for host, port in self._endpoints)

    @property
    def active_endpoint(self) -> str:
        host, port = self._endpoints[self._active]
        return _hostport(host, port)

    async def open(self) -> None:
        self._aiohttp = import_client("aiohttp", backend="etcd", extra="etcd")
        host, port = self._endpoints[self._active]
        client = _client_class()(
            host=host,
            port=port,
            protocol="https" if self._tls is not None else "http",
            pool_size=self._pool_size,
        )
        if self._tls is not None:
            # etcd3-py builds a TLS context only for client certificates; build ours so
            # a custom CA works without one, and swap it in before any connection exists.
            aiohttp = self._aiohttp
            unused = client.session
            connector = aiohttp.TCPConnector(limit=self._pool_size, ssl=self._tls.context())
            client.session = aiohttp.ClientSession(connector=connector)
            await unused.close()
        self._client = client
        self._auth_lock = asyncio.Lock()
        if self._username is not None:
            await self._authenticate()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _authenticate(self, stale: str | None = None) -> None:
        """Get a token; with ``stale``, only if no other call has replaced that one."""
        assert self._client is not None and self._auth_lock is not None
        async with self._auth_lock:
            if stale is not None and self._client.token != stale:
                return
            self._client.token = None
            body = {"name": self._username or "", "password": self._password or ""}
            answer = await self.call("/auth/authenticate", body, authenticating=True)
            self._client.token = answer.get("token")

    async def call(
        self, method: str, body: dict[str, Any], *, authenticating: bool = False
    ) -> dict[str, Any]:
        """POST ``body`` to ``/v3<method>`` and return the parsed answer; retried on
        another member until the deadline when a member is down or has no leader."""
        client = self._client
        if client is None:
            raise BackendUnavailableError("the etcd transport is closed")
        aiohttp = self._aiohttp
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        payload = json.dumps(body, separators=(",", ":"))
        # With several members one attempt gets a share of the budget, so a member that
        # hangs (a write proposed to a leader that just died is lost, and etcd answers
        # only after its own request timeout) leaves time to try the others.
        attempt_cap = self._timeout / min(len(self._endpoints), 3)
        tried = 0
        backoff = _BACKOFF_START
        reauthenticated = authenticating
        last: BaseException | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._exhausted(method, last)
            index = self._active
            host, port = self._endpoints[index]
            client.host, client.port = host, port
            token = client.token
            try:
                timeout = aiohttp.ClientTimeout(total=min(remaining, attempt_cap))
                async with client.call_rpc(method, data=payload, raw=True, timeout=timeout) as resp:
                    raw = await resp.read()
                    status = resp.status
            except aiohttp.ClientSSLError:
                raise  # an untrusted certificate is configuration: retrying cannot help
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                last = exc
                self._fail_over(index, exc)
            else:
                if status == 200:
                    answer: dict[str, Any] = json.loads(raw)
                    return answer
                error = _gateway_error(raw, status)
                if error.code == _UNAUTHENTICATED and not reauthenticated:
                    reauthenticated = True  # tokens expire; get a fresh one, once
                    await self._authenticate(stale=token)
                    continue
                if error.code != _UNAVAILABLE and status != 503:
                    raise error
                last = error
                self._fail_over(index, error)
            tried += 1
            if tried >= len(self._endpoints):
                await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
                backoff = min(backoff * 2, _BACKOFF_CAP)

    def _fail_over(self, index: int, exc: BaseException) -> None:
        if len(self._endpoints) == 1 or self._active != index:
            return  # another call has already moved on from this member
        self._active = (index + 1) % len(self._endpoints)
        log.warning(
            "etcd member %s failed (%s); using %s",
            _hostport(*self._endpoints[index]),
            type(exc).__name__,
            self.active_endpoint,
        )

    def _exhausted(self, method: str, last: BaseException | None) -> Exception:
        where = f"etcd {method} on {self.endpoints}"
        if last is None or isinstance(last, asyncio.TimeoutError):
            error: Exception = BackendTimeoutError(f"{where}: no answer within {self._timeout} s")
        else:
            error = BackendUnavailableError(f"{where}: no member answered ({_describe(last)})")
        error.__cause__ = last
        return error


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _gateway_error(raw: bytes, status: int) -> GatewayError:
    errors = import_client("etcd3.errors", backend="etcd", extra="etcd")
    try:
        data = json.loads(raw)
        message = str(data.get("error") or data.get("message") or "")
        code = data.get("code")
    except (ValueError, AttributeError):
        message, code = raw.decode("utf-8", "replace")[:200], None
    code = code if isinstance(code, int) else None
    return GatewayError(errors.get_client_error(message, code, status), code, status)
