"""Real servers for tests: start the binary on a free loopback port with a temporary
data directory, wait until it answers, kill it on exit.

When a binary is missing, a test skips with a reason that says what to install, unless
``SESSIONKV_REQUIRE_BACKENDS=1`` (CI), where it fails instead.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable

import pytest

__all__ = [
    "add_url_option",
    "backends_required",
    "eventually",
    "existing_or_started",
    "free_port",
    "require_binary",
    "unavailable",
    "wait_until",
]


def backends_required() -> bool:
    return os.environ.get("SESSIONKV_REQUIRE_BACKENDS", "") not in ("", "0")


def unavailable(reason: str) -> None:
    """Skip the test (or fail it, when backends are required) with ``reason``."""
    if backends_required():
        pytest.fail(f"{reason} (SESSIONKV_REQUIRE_BACKENDS is set, so this fails)", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str, install_hint: str) -> str:
    """The path of executable ``name``, or skip/fail saying how to install it."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} not found on PATH; install it: {install_hint}")
        raise AssertionError("unreachable")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(ready: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``ready`` until it is true; raise ``TimeoutError`` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout} s")
        time.sleep(0.02)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
) -> None:
    """Poll ``condition`` (a function returning a bool, or an awaitable of one) until it
    holds; fail the test naming ``what`` after ``timeout`` seconds. For waiting on
    something that happens *eventually* (a server restart, a background sweep), never
    as a stand-in for an assertion about timing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(interval)


def add_url_option(parser: pytest.Parser, option: str, what: str) -> None:
    """Register ``--sessionkv-<name>-url``: run against a server the user runs
    (pytest-redis' "noproc" mode) instead of starting one."""
    parser.getgroup("sessionkv", "sessionkv contract suite").addoption(
        option, metavar="URL", help=f"run the {what} tests against this server, not one started"
    )


def existing_or_started(request: pytest.FixtureRequest, option: str, server_fixture: str) -> str:
    """The URL given with ``option`` (never stopped or flushed: tests use namespaces of
    their own and delete their keys), else that of the server ``server_fixture`` starts."""
    given: str | None = request.config.getoption(option)
    if given:
        return given
    url: str = request.getfixturevalue(server_fixture).url
    return url
