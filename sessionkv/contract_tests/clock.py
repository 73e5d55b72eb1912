"""A clock that moves only when told to, for testing TTLs without sleeping."""

from __future__ import annotations

import asyncio

__all__ = ["ManualClock"]


class ManualClock:
    """A monotonic time source in seconds: ``clock()`` reads it, ``advance`` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        """What ``asyncio.sleep`` is to real time: move the clock, let other tasks run."""
        self.advance(seconds)
        await asyncio.sleep(0)
