"""Leases shared by the keys one store writes together, and the janitor that revokes them
once no key holds them.

etcd expires keys only through leases, and a lease's TTL is whole seconds. A lease per
write would cost a grant round trip per ``set`` and leave one lease behind per
overwrite. Instead a store keeps, per effective TTL ``T``, one *current* lease granted
with ``T + 1`` seconds and attaches every key written with ``T`` during the next second
to it: a key attached ``d < 1`` s after the grant was sent expires ``T + 1 - d > T``
seconds after its write, so it lives at least its TTL and at most one second more (that
second is part of the declared expiry lag). The store takes its leases only once its
request holds a connection (see :mod:`._etcd_transport`), so a queue of requests cannot
push a write out of its lease's second. After its second a lease is *retired*: no new
key joins it, and the janitor (:meth:`LeasePool.sweep`, run by the store's background
sweep) asks etcd (``timetolive`` with ``keys``) whether any key still holds it, revoking
it the moment none does, at checks spaced 1, 2, 4 ... up to 8 s apart. Leases the keys
left (overwritten, deleted, moved to a new lease by ``expire``) therefore disappear
within seconds instead of piling up for their TTL.

Cancellation never leaves anything behind: a grant runs as a task of its own, shared by
every writer that needs it (one writer going away does not cancel it for the others),
and :meth:`LeasePool.acquire` holds nothing until every lease it returns is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

__all__ = [
    "JANITOR_TICK",
    "MAX_LEASE_TTL",
    "SHARING_WINDOW",
    "Lease",
    "LeasePool",
    "LeasePoolClosedError",
    "lease_ttl",
]

log = logging.getLogger("sessionkv.etcd")

SHARING_WINDOW = 1.0
"""Seconds a lease takes new keys after its grant was sent; its TTL carries this slack."""
MAX_LEASE_TTL = 9_000_000_000
"""etcd refuses a longer lease (``ErrLeaseTTLTooLarge``)."""
_SAFETY = 0.05
"""Taken off the window: the time between reading the clock and etcd attaching a key is
never negative, but a loaded event loop can delay the next read by a few ms."""
_GRANT_ATTEMPTS = 3
"""A grant slower than the window (a failover) yields a lease already too old to give a
new key its full TTL: grant again, this many times at most, then use what there is."""
JANITOR_TICK = 0.5
"""Seconds between the janitor's rounds (the store's background sweep)."""
_FIRST_CHECK = 1.0
_MAX_CHECK_INTERVAL = 8.0
_JANITOR_BATCH = 32
_CLOSE_BUDGET = 2.0
"""Seconds ``close`` spends revoking the leases its keys have left."""


class Post(Protocol):
    """The transport's ``post``: one gateway request, failover included."""

    def __call__(
        self, method: str, body: dict[str, Any], *, control: bool = False
    ) -> Awaitable[dict[str, Any]]: ...


def lease_ttl(effective_ttl: float) -> int:
    """The lease TTL that gives every key written within the window at least
    ``effective_ttl`` seconds: the whole-second TTL plus the sharing window."""
    return math.ceil(effective_ttl - 1e-9) + int(SHARING_WINDOW)


@dataclass(eq=False)
class Lease:
    id: str
    ttl: int
    shareable_until: float
    """Local monotonic time until which a key written with this lease lives its TTL."""
    expires_by: float
    """Local monotonic time after which etcd has surely dropped the lease."""
    in_flight: int = 0
    """Writes sent with this lease that have not answered yet: the janitor waits for
    them, so a key on its way to the lease is never revoked with it."""
    next_check: float = 0.0
    check_interval: float = _FIRST_CHECK


class LeasePoolClosedError(RuntimeError):
    """The store closed while this write waited for its lease (the store's error
    mapping turns it into ``StoreClosedError``)."""


class LeasePool:
    """The current lease per lease TTL and the retired ones waiting to be revoked."""

    def __init__(self, post: Post, clock: Callable[[], float]) -> None:
        self._post = post
        self._clock = clock
        self._current: dict[int, Lease] = {}
        self._grants: dict[int, asyncio.Task[Lease]] = {}
        self._retired: dict[str, Lease] = {}
        self._closed = False

    async def acquire(self, ttls: Collection[int]) -> dict[int, Lease]:
        """A lease per lease TTL for keys written now, all or none: nothing is held
        until every one is ready, so a caller cancelled on the way holds nothing. Hand
        the result to :meth:`release` when the write has answered."""
        leases = {ttl: lease for ttl in ttls if (lease := self._current.get(ttl)) is not None}
        attempts = 0
        while True:
            now = self._clock()
            needed = [
                ttl
                for ttl in ttls
                if (lease := leases.get(ttl)) is None
                or (now >= lease.shareable_until and attempts < _GRANT_ATTEMPTS)
            ]
            if not needed:
                break
            leases.update(await self._granted(needed))
            attempts += 1
        if self._closed:
            raise LeasePoolClosedError("the etcd store was closed while this write waited")
        # No await since the check above: the leases are taken as they were judged.
        for lease in leases.values():
            lease.in_flight += 1
        return leases

    def release(self, leases: dict[int, Lease]) -> None:
        for lease in leases.values():
            lease.in_flight -= 1

    def discard(self, leases: dict[int, Lease]) -> None:
        """Forget leases etcd no longer knows (revoked elsewhere, or lost in a failover)."""
        for lease in leases.values():
            if self._current.get(lease.ttl) is lease:
                del self._current[lease.ttl]
            self._retired.pop(lease.id, None)

    async def _granted(self, ttls: Collection[int]) -> dict[int, Lease]:
        """Fresh leases for ``ttls``; concurrent writers with one TTL share one grant."""
        if self._closed:
            raise LeasePoolClosedError("the etcd store is closed")
        tasks = {ttl: self._grant_task(ttl) for ttl in ttls}
        # wait() neither cancels the grants when this caller is cancelled (others may be
        # waiting on them) nor raises their errors: result() below does that, per waiter.
        await asyncio.wait(tasks.values())
        return {ttl: task.result() for ttl, task in tasks.items()}

    def _grant_task(self, ttl: int) -> asyncio.Task[Lease]:
        task = self._grants.get(ttl)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._grant(ttl), name=f"sessionkv etcd lease grant {ttl} s"
            )
            self._grants[ttl] = task
            task.add_done_callback(partial(self._grant_done, ttl))
        return task

    def _grant_done(self, ttl: int, task: asyncio.Task[Lease]) -> None:
        if self._grants.get(ttl) is task:
            del self._grants[ttl]
        if not task.cancelled():
            task.exception()  # retrieved: every writer may have gone away meanwhile

    async def _grant(self, ttl: int) -> Lease:
        sent = self._clock()
        answer = await self._post("/lease/grant", {"TTL": ttl}, control=True)
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
        lease.next_check = self._clock() + _FIRST_CHECK
        self._retired[lease.id] = lease

    async def close(self) -> None:
        """Let grants under way finish (their writers then get
        :class:`LeasePoolClosedError`, never a cancellation) and revoke the leases no key
        holds. Leases that still hold keys are left to expire: closing a store does not
        shorten the life of what it wrote."""
        self._closed = True
        if self._grants:
            await asyncio.wait(list(self._grants.values()))  # each bounded by the timeout
        for lease in self._current.values():
            self._retire(lease)
        self._current.clear()
        idle = [lease for lease in self._retired.values() if lease.in_flight == 0]
        if not idle:
            return
        checks = [asyncio.ensure_future(self._check(lease)) for lease in idle]
        try:
            await asyncio.wait(checks, timeout=_CLOSE_BUDGET)
        finally:
            # On time or not, cancelled or not: nothing of ours outlives close(), and
            # every outcome is read (no "exception was never retrieved" at exit).
            for check in checks:
                check.cancel()
            await asyncio.gather(*checks, return_exceptions=True)

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
        answer = await self._post("/lease/timetolive", {"ID": lease.id, "keys": True})
        if int(answer.get("TTL", -1)) <= 0:
            self._retired.pop(lease.id, None)  # expired (or revoked) already
            return False
        if answer.get("keys") or lease.in_flight:
            lease.check_interval = min(lease.check_interval * 2, _MAX_CHECK_INTERVAL)
            lease.next_check = self._clock() + lease.check_interval
            return False
        self._retired.pop(lease.id, None)
        with contextlib.suppress(Exception):
            await self._post("/lease/revoke", {"ID": lease.id})
        return True
