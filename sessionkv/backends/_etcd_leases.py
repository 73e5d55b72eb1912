"""Leases shared by the keys one store writes together, and the janitor that revokes them
once no key holds them.

etcd expires keys only through leases, and a lease's TTL is whole seconds. A lease per
write would cost a grant round trip per ``set`` and leave one lease behind per
overwrite. Instead a store keeps, per effective TTL ``T``, one *current* lease granted
with ``T + 1`` seconds and attaches every key written with ``T`` during the next second
to it: a key attached ``d < 1`` s after the grant was sent expires ``T + 1 - d > T``
seconds after its write, so it lives at least its TTL and at most one second more (that
second is part of the declared expiry lag). After its second a lease is *retired*:
no new key joins it, and the janitor asks etcd (``timetolive`` with ``keys``) whether
any key still holds it, revoking it the moment none does, at checks spaced 1, 2, 4 ...
up to 8 s apart. Leases the keys left (overwritten, deleted, moved to a new lease by
``expire``) therefore disappear within seconds instead of piling up for their TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.periodic import PeriodicTask

__all__ = ["Lease", "LeasePool", "lease_ttl"]

log = logging.getLogger("sessionkv.etcd")

Call = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

SHARING_WINDOW = 1.0
"""Seconds a lease takes new keys after its grant was sent; its TTL carries this slack."""
_SAFETY = 0.05
"""Taken off the window: the time between reading the clock and etcd attaching a key is
never negative, but a loaded event loop can delay the next read by a few ms."""
_FIRST_CHECK = 1.0
_MAX_CHECK_INTERVAL = 8.0
_JANITOR_TICK = 0.5
_JANITOR_BATCH = 32
_CLOSE_BUDGET = 2.0
"""Seconds ``close`` spends revoking the leases its keys have left."""


def lease_ttl(effective_ttl: float) -> int:
    """The lease TTL that gives every key written within the window at least
    ``effective_ttl`` seconds: the whole-second TTL plus the sharing window."""
    return math.ceil(effective_ttl - 1e-9) + int(SHARING_WINDOW)


@dataclass(eq=False)
class Lease:
    id: str
    ttl: int
    shareable_until: float
    expires_by: float
    """Local monotonic time after which etcd has surely dropped the lease."""
    in_flight: int = 0
    """Writes sent with this lease that have not answered yet: the janitor waits for
    them, so a key on its way to the lease is never revoked with it."""
    next_check: float = 0.0
    check_interval: float = _FIRST_CHECK
    retired: bool = field(default=False)


class LeasePool:
    """The current lease per TTL and the retired ones waiting to be revoked."""

    def __init__(self, call: Call, clock: Callable[[], float]) -> None:
        self._call = call
        self._clock = clock
        self._current: dict[int, Lease] = {}
        self._granting: dict[int, asyncio.Future[Lease]] = {}
        self._retired: dict[str, Lease] = {}
        self._janitor = PeriodicTask(
            f"sessionkv etcd lease janitor {id(self):x}", _JANITOR_TICK, self.sweep
        )

    @property
    def tracked(self) -> int:
        """Leases this store granted and has not seen expire or revoked."""
        return len(self._current) + len(self._retired)

    def start(self) -> None:
        self._janitor.start()

    async def close(self) -> None:
        """Stop the janitor. Leases that still hold keys are left to expire: closing a
        store does not shorten the life of what it wrote."""
        await self._janitor.stop()
        for pending in self._granting.values():
            pending.cancel()
        # Leases no key holds would otherwise outlive the store by their whole TTL.
        for ttl, lease in list(self._current.items()):
            del self._current[ttl]
            self._retire(lease)
        idle = [lease for lease in self._retired.values() if lease.in_flight == 0]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(self._check(lease) for lease in idle), return_exceptions=True),
                timeout=_CLOSE_BUDGET,
            )

    async def acquire(self, effective_ttl: float) -> Lease:
        """A lease for keys written now with ``effective_ttl``; pair with :meth:`release`."""
        ttl = lease_ttl(effective_ttl)
        lease = self._current.get(ttl)
        attempts = 0
        # A grant slower than the window (a failover) yields a lease already too old to
        # give a new key its full TTL: grant again, a few times at most.
        while lease is None or (self._clock() >= lease.shareable_until and attempts < 3):
            lease = await self._fresh(ttl)
            attempts += 1
        lease.in_flight += 1
        return lease

    def release(self, lease: Lease) -> None:
        lease.in_flight -= 1

    def discard(self, lease: Lease) -> None:
        """Forget a lease etcd no longer knows (revoked elsewhere, or lost in a failover)."""
        if self._current.get(lease.ttl) is lease:
            del self._current[lease.ttl]
        self._retired.pop(lease.id, None)

    async def _fresh(self, ttl: int) -> Lease:
        # Concurrent writers with the same TTL share one grant.
        pending = self._granting.get(ttl)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._granting[ttl] = pending
            try:
                lease = await self._grant(ttl)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    pending.cancel()
                else:
                    pending.set_exception(exc)
                    pending.exception()  # marked retrieved: waiters, if any, re-raise it
                raise
            finally:
                self._granting.pop(ttl, None)
            pending.set_result(lease)
            return lease
        return await asyncio.shield(pending)

    async def _grant(self, ttl: int) -> Lease:
        sent = self._clock()
        answer = await self._call("/lease/grant", {"TTL": ttl})
        granted_ttl = int(answer.get("TTL", ttl))
        lease = Lease(
            id=str(answer["ID"]),
            ttl=ttl,
            shareable_until=sent + SHARING_WINDOW - _SAFETY,
            expires_by=self._clock() + granted_ttl + 1.0,
        )
        previous = self._current.get(ttl)
        if previous is not None:
            self._retire(previous)
        self._current[ttl] = lease
        return lease

    def _retire(self, lease: Lease) -> None:
        lease.retired = True
        lease.next_check = self._clock() + _FIRST_CHECK
        self._retired[lease.id] = lease

    async def sweep(self) -> int:
        """Retire current leases past their window, revoke retired ones no key holds,
        forget expired ones; returns how many were revoked."""
        now = self._clock()
        for ttl, lease in list(self._current.items()):
            if now >= lease.shareable_until and lease.in_flight == 0:
                del self._current[ttl]
                self._retire(lease)
        due = [
            lease
            for lease in self._retired.values()
            if lease.next_check <= now and lease.in_flight == 0
        ][:_JANITOR_BATCH]
        results = await asyncio.gather(
            *(self._check(lease) for lease in due), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.debug("etcd lease janitor: %s", result)  # checked again next time
        return sum(result is True for result in results)

    async def _check(self, lease: Lease) -> bool:
        if self._clock() >= lease.expires_by:
            self._retired.pop(lease.id, None)
            return False
        answer = await self._call("/lease/timetolive", {"ID": lease.id, "keys": True})
        if int(answer.get("TTL", -1)) <= 0:
            self._retired.pop(lease.id, None)  # expired (or revoked) already
            return False
        if answer.get("keys") or lease.in_flight:
            lease.check_interval = min(lease.check_interval * 2, _MAX_CHECK_INTERVAL)
            lease.next_check = self._clock() + lease.check_interval
            return False
        self._retired.pop(lease.id, None)
        with contextlib.suppress(Exception):
            await self._call("/lease/revoke", {"ID": lease.id})
        return True
