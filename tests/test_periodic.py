"""The background housekeeping loop every store uses for its sweeps."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from sessionkv.contract_tests.servers import eventually
from sessionkv.core.periodic import PeriodicTask


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    await eventually(condition, timeout=timeout, what="the periodic job", interval=0.005)


@pytest.mark.asyncio
async def test_failures_are_retried_and_logged_once_per_streak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def job() -> None:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ConnectionError(f"down #{calls}")

    task = PeriodicTask("test sweep", 0.01, job)
    with caplog.at_level(logging.INFO, logger="sessionkv"):
        task.start()
        task.start()  # idempotent: still one loop
        await _until(lambda: calls >= 5)
        await task.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "test sweep failed, retrying every 0.01 s: down #1"
    ]
    assert any(r.getMessage() == "test sweep works again" for r in caplog.records)
    assert not task.running  # stop() returned after the loop's task ended
    await task.stop()  # idempotent


@pytest.mark.asyncio
async def test_describe_keeps_details_out_of_the_log(caplog: pytest.LogCaptureFixture) -> None:
    async def job() -> None:
        raise RuntimeError("secret detail")

    task = PeriodicTask("sweep", 0.01, job, describe=lambda exc: "backend unavailable")
    with caplog.at_level(logging.WARNING, logger="sessionkv"):
        task.start()
        await _until(lambda: bool(caplog.records))
        await task.stop()
    assert "secret detail" not in caplog.text and "backend unavailable" in caplog.text


def test_interval_must_be_positive() -> None:
    async def job() -> None: ...

    with pytest.raises(ValueError):
        PeriodicTask("x", 0, job)
