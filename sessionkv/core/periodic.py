"""Background housekeeping for stores: a job run every few seconds until stopped.

Memory, SQLite and Redis sweep expired entries this way, and etcd revokes unused
leases; one implementation keeps their start, stop and failure handling alike.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from .checks import check_seconds

__all__ = ["PeriodicTask"]

log = logging.getLogger("sessionkv")


class PeriodicTask:
    """Runs ``job`` every ``interval`` seconds (±``jitter``, so processes started
    together do not act in lockstep) from :meth:`start` until :meth:`stop`.

    A failing job is retried on the next round; the first failure of a streak is
    logged as a warning (a server outage must not flood the log), the recovery as info.
    """

    def __init__(
        self,
        name: str,
        interval: float,
        job: Callable[[], Awaitable[object]],
        *,
        jitter: float = 0.2,
        describe: Callable[[Exception], object] = str,
    ) -> None:
        self._name = name
        self._interval = check_seconds("interval", interval)
        self._job = job
        self._jitter = jitter
        self._describe = describe  # lets a store keep driver details out of the log
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop in the running event loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Cancel the loop and wait until it has stopped (idempotent). A cancellation
        of the caller itself still propagates: only the loop's own is absorbed."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # wait() never raises the task's CancelledError, but does raise the caller's.
            await asyncio.wait({task})

    async def _run(self) -> None:
        failing = False
        while True:
            spread = random.uniform(1 - self._jitter, 1 + self._jitter)
            await asyncio.sleep(self._interval * spread)
            try:
                await self._job()
            except Exception as exc:  # noqa: BLE001 - the next round retries
                if not failing:
                    log.warning(
                        "%s failed, retrying every %g s: %s",
                        self._name,
                        self._interval,
                        self._describe(exc),
                    )
                failing = True
            else:
                if failing:
                    log.info("%s works again", self._name)
                failing = False
