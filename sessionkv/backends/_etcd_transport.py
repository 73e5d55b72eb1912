"""Requests to an etcd cluster's JSON gateway through etcd3-py, with failover.

One etcd3-py ``AioClient`` (one aiohttp connection pool) talks to one member at a time;
``call_rpc(..., raw=True)`` hands back the HTTP response, which is read and parsed here
instead of through etcd3-py's models (the hot path).

**Admission.** At most ``pool_size`` requests are on the wire at once; the others wait
their turn here, first come first served, *before* their time starts: waiting for a
connection is load on this process, not a failing member, so it never counts against
the request's ``timeout`` nor triggers a failover. A waiter gives up
(:class:`BackendTimeoutError`) only when it has waited ``timeout`` seconds and no request
has been answered for ``timeout`` seconds either (the cluster, not the queue, is stuck).
Lease grants and authentication have a few connections of their own (``control``), so a
writer holding a connection while it waits for its lease can never starve the grant.

**Failover.** A connection failure, a timed-out attempt or an "unavailable" answer (no
leader, leader changed) moves every later request to the next member and retries within
the request's deadline; only when that deadline passes does the caller get
:class:`BackendUnavailableError` or :class:`BackendTimeoutError`. The first failover of
a streak is logged as a warning, the others at debug level, the recovery at info.
Credentials travel only in the authentication request and never reach a message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import BackendTimeoutError, BackendUnavailableError
from ..core.imports import import_client

if TYPE_CHECKING:
    from etcd3 import AioClient

__all__ = ["EtcdTransport", "GatewayError", "LeaseWindowPassedError", "TLSOptions"]

log = logging.getLogger("sessionkv.etcd")

# gRPC status codes the gateway reports in its error bodies.
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16
_NOT_FOUND = 5
# Until a request has tried every member once, retry at once; then back off this much,
# doubling up to the cap, so a cluster electing a leader is not hammered.
_BACKOFF_START = 0.05
_BACKOFF_CAP = 0.5
_CONTROL_SLOTS = 4
"""Connections kept for lease grants and authentication."""


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


class LeaseWindowPassedError(Exception):
    """A retry would reach etcd after ``send_before``: its lease is too old by then to
    give the keys their full TTL; the store takes a fresh one and sends again."""


class TransportClosedError(RuntimeError):
    """The store closed the transport (its error mapping makes this ``StoreClosedError``)."""


class _Admission:
    """At most ``size`` requests at once; the rest wait in FIFO order. A waiter gives up
    only after ``patience`` seconds of waiting *and* ``patience`` seconds since the last
    answer (``last_answer``, loop time): a long queue that moves is not a failure."""

    def __init__(self, size: int, patience: float, last_answer: Callable[[], float]) -> None:
        self._free = size
        self._patience = patience
        self._last_answer = last_answer
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def acquire(self) -> None:
        if self._closed:
            raise TransportClosedError("the etcd transport is closed")
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        since = loop.time()
        try:
            while not waiter.done():
                give_up = max(since, self._last_answer()) + self._patience
                if give_up <= loop.time():
                    raise BackendTimeoutError(
                        f"no etcd connection came free and no request was answered for "
                        f"{self._patience} s"
                    )
                await asyncio.wait({waiter}, timeout=give_up - loop.time())
            waiter.result()  # raises TransportClosedError when closed meanwhile
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # handed a connection as we left: pass it on
            waiter.cancel()
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def close(self) -> None:
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(TransportClosedError("the etcd transport is closed"))


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


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
        self._labels = [_hostport(host, port) for host, port in self._endpoints]
        self._timeout = timeout
        self._tls = tls
        self._username = username
        self._password = password
        self._pool_size = pool_size
        self._active = 0
        self._failing = False
        self._last_answer = -float("inf")
        self._client: AioClient | None = None
        self._aiohttp: Any = None
        self._auth_lock: asyncio.Lock | None = None
        self._data: _Admission | None = None
        self._control: _Admission | None = None

    @property
    def endpoints(self) -> str:
        """``host:port,...`` of the members, for messages (no credentials)."""
        return ",".join(self._labels)

    @property
    def active_endpoint(self) -> str:
        return self._labels[self._active]

    async def open(self) -> None:
        self._aiohttp = aiohttp = import_client("aiohttp", backend="etcd", extra="etcd")
        host, port = self._endpoints[self._active]
        connections = self._pool_size + _CONTROL_SLOTS
        client = _client_class()(
            host=host,
            port=port,
            protocol="https" if self._tls is not None else "http",
            pool_size=connections,
        )
        if self._tls is not None:
            # etcd3-py builds a TLS context only for client certificates; build ours so
            # a custom CA works without one, and swap it in before any connection exists.
            unused = client.session
            connector = aiohttp.TCPConnector(limit=connections, ssl=self._tls.context())
            client.session = aiohttp.ClientSession(connector=connector)
            await unused.close()
        self._client = client
        self._auth_lock = asyncio.Lock()
        answered = self._answered_at
        self._data = _Admission(self._pool_size, self._timeout, answered)
        self._control = _Admission(_CONTROL_SLOTS, self._timeout, answered)
        if self._username is not None:
            await self._authenticate()

    async def close(self) -> None:
        """Fail the requests waiting for a connection, then close the connections
        (requests on them fail too; the store reports both as closed)."""
        for admission in (self._data, self._control):
            if admission is not None:
                admission.close()
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _answered_at(self) -> float:
        return self._last_answer

    @contextlib.asynccontextmanager
    async def admitted(self, *, control: bool = False) -> AsyncIterator[float]:
        """Hold one connection slot (waiting for it, see the module docstring); yields
        the deadline, in loop time, of the request(s) made under it."""
        admission = self._control if control else self._data
        if admission is None:
            raise TransportClosedError("the etcd transport is not open")
        await admission.acquire()
        try:
            yield asyncio.get_running_loop().time() + self._timeout
        finally:
            admission.release()

    async def post(
        self,
        method: str,
        body: dict[str, Any],
        *,
        control: bool = False,
        deadline: float | None = None,
        send_before: float | None = None,
    ) -> dict[str, Any]:
        """POST ``body`` to ``/v3<method>`` and return the parsed answer, retried on
        another member until the deadline when a member is down or has no leader.
        Without ``deadline`` it first waits for a connection (:meth:`admitted`); with
        one, the caller already holds it. With ``send_before`` (monotonic time), an
        attempt that would start later raises :class:`LeaseWindowPassedError`."""
        if deadline is not None:
            return await self._until_answered(method, body, deadline, send_before)
        async with self.admitted(control=control) as deadline:
            return await self._until_answered(method, body, deadline, send_before)

    async def _until_answered(
        self, method: str, body: dict[str, Any], deadline: float, send_before: float | None
    ) -> dict[str, Any]:
        aiohttp = self._aiohttp
        loop = asyncio.get_running_loop()
        payload = json.dumps(body, separators=(",", ":"))
        # With several members one attempt gets a share of the budget, so a member that
        # hangs (a write proposed to a leader that just died is lost, and etcd answers
        # only after its own request timeout) leaves time to try the others.
        attempt_cap = self._timeout / min(len(self._endpoints), 3)
        tried = 0
        backoff = _BACKOFF_START
        reauthenticated = method == "/auth/authenticate"
        last: BaseException | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._exhausted(method, last)
            if send_before is not None and time.monotonic() >= send_before:
                raise LeaseWindowPassedError(method)
            index = self._active
            try:
                token, status, raw = await self._attempt(
                    index, method, payload, min(remaining, attempt_cap)
                )
            except aiohttp.ClientSSLError:
                raise  # an untrusted certificate is configuration: retrying cannot help
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                if self._client is None:  # close() cut the connection: no member failed
                    raise TransportClosedError("the etcd transport was closed") from exc
                last = exc
                self._fail_over(index, exc)
            else:
                if status == 200:
                    self._answered(index)
                    answer: dict[str, Any] = json.loads(raw)
                    return answer
                error = _gateway_error(raw, status)
                if error.code == _UNAUTHENTICATED and not reauthenticated:
                    reauthenticated = True  # tokens expire; get a fresh one, once
                    await self._authenticate(stale=token)
                    continue
                if error.code != _UNAVAILABLE and status != 503:
                    self._answered(index)
                    raise error
                last = error
                self._fail_over(index, error)
            tried += 1
            if tried >= len(self._endpoints):
                await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
                backoff = min(backoff * 2, _BACKOFF_CAP)

    async def _attempt(
        self, index: int, method: str, payload: str, seconds: float
    ) -> tuple[str | None, int, bytes]:
        """One HTTP exchange with member ``index``: (token used, status, body)."""
        client = self._client
        if client is None:
            raise TransportClosedError("the etcd transport is closed")
        # Set and used with no await in between: call_rpc builds the URL at once.
        client.host, client.port = self._endpoints[index]
        token: str | None = client.token
        timeout = self._aiohttp.ClientTimeout(total=seconds)
        async with client.call_rpc(method, data=payload, raw=True, timeout=timeout) as resp:
            return token, resp.status, await resp.read()

    async def _authenticate(self, stale: str | None = None) -> None:
        """Get a token; with ``stale``, only if no other request has replaced that one."""
        assert self._client is not None and self._auth_lock is not None
        async with self._auth_lock:
            if self._client is None or (stale is not None and self._client.token != stale):
                return
            self._client.token = None
            body = {"name": self._username or "", "password": self._password or ""}
            answer = await self.post("/auth/authenticate", body, control=True)
            if self._client is not None:
                self._client.token = answer.get("token")

    def _answered(self, index: int) -> None:
        self._last_answer = asyncio.get_running_loop().time()
        if self._failing and index == self._active:
            self._failing = False
            log.info("etcd member %s answers; requests go there", self._labels[index])

    def _fail_over(self, index: int, exc: BaseException) -> None:
        if len(self._endpoints) == 1 or self._active != index:
            return  # another request has already moved on from this member
        self._active = (index + 1) % len(self._endpoints)
        # One warning per streak of failures: a member that flaps, or a whole cluster
        # electing a leader, must not flood the log with one line per retry.
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        log.log(
            level,
            "etcd member %s failed (%s); using %s",
            self._labels[index],
            type(exc).__name__,
            self._labels[self._active],
        )

    def _exhausted(self, method: str, last: BaseException | None) -> Exception:
        where = f"etcd {method} on {self.endpoints}"
        if last is None or isinstance(last, asyncio.TimeoutError):
            error: Exception = BackendTimeoutError(f"{where}: no answer within {self._timeout} s")
        else:
            error = BackendUnavailableError(f"{where}: no member answered ({_describe(last)})")
        error.__cause__ = last
        return error


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
