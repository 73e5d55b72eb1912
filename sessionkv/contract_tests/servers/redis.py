"""Real Redis servers for tests: ``redis_server`` (plain TCP plus a unix socket) and
``redis_tls_server`` (TLS only, with a certificate made for the test, a password and an
ACL user).

Each server is a ``redis-server`` process on a free 127.0.0.1 port, without persistence,
its working directory and socket in a temporary directory; it is killed and the
directory removed when the fixture ends. :meth:`RedisServer.stop` and
:meth:`RedisServer.start` stop and restart it on the same port, for outage tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest

from . import (
    add_url_option,
    existing_or_started,
    free_port,
    require_binary,
    unavailable,
    wait_until,
)
from .tls import TLSFiles, make_test_certificates

__all__ = [
    "RedisServer",
    "redis_server",
    "redis_tls_server",
    "start_redis",
]

INSTALL_HINT = "apt-get install redis-server (Debian/Ubuntu) or https://redis.io/download"
STARTUP_TIMEOUT = 15.0


@dataclass
class RedisServer:
    """One ``redis-server`` process. ``url`` is what a store connects to."""

    binary: str
    port: int
    root: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TLSFiles | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def unix_path(self) -> str:
        return os.path.join(self.root, "redis.sock")

    @property
    def url(self) -> str:
        """``redis://`` (or ``rediss://`` with ``?ssl_ca_certs=``) with credentials, db 0."""
        scheme = "rediss" if self.tls else "redis"
        query = f"?ssl_ca_certs={quote(self.tls.ca)}" if self.tls else ""
        return f"{scheme}://{self._userinfo()}127.0.0.1:{self.port}/0{query}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self._userinfo()}{self.unix_path}?db=0"

    def _userinfo(self) -> str:
        if self.password is None:
            return ""
        return f"{quote(self.username or 'default', safe='')}:{quote(self.password, safe='')}@"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _arguments(self) -> list[str]:
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", "0" if self.tls else str(self.port),
            "--unixsocket", self.unix_path,
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.root,
            "--logfile", os.path.join(self.root, "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.tls:
            args += [
                "--tls-port", str(self.port),
                "--tls-cert-file", self.tls.cert,
                "--tls-key-file", self.tls.key,
                "--tls-ca-cert-file", self.tls.ca,
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        if self.password is not None:
            user = self.username or "default"
            if user != "default":
                args += ["--user", "default", "off"]
            args += ["--user", user, "on", f">{self.password}", "~*", "&*", "+@all"]
        return args

    def _answers(self) -> bool:
        """A PING on the unix socket (plain even when TCP is TLS) gets any reply."""
        if not self.alive:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(self.unix_path)
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def start(self) -> None:
        """Start (or restart) the server on its port and wait until it answers."""
        if self.alive:
            return
        self.process = subprocess.Popen(
            self._arguments(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        try:
            # Done when it answers, or when it exited (a bad option) and never will.
            wait_until(
                lambda: self._answers() or not self.alive,
                timeout=STARTUP_TIMEOUT,
                what=f"redis-server :{self.port}",
            )
            if not self.alive:
                raise TimeoutError("exited")
        except TimeoutError:
            log = self.log_tail()
            self.stop()
            raise TimeoutError(f"redis-server on port {self.port} did not start: {log}") from None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); data is gone, the port is kept."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # a paused server cannot exit
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 20) -> str:
        path = os.path.join(self.root, "redis.log")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_redis(
    *,
    username: str | None = None,
    password: str | None = None,
    tls: bool = False,
) -> RedisServer:
    """Start a ``redis-server`` on a free loopback port; skip (or fail in CI) without the
    binary, or without TLS support in this build when ``tls`` is asked for."""
    binary = require_binary("redis-server", INSTALL_HINT)
    root = tempfile.mkdtemp(prefix="skv-redis-")
    files = make_test_certificates(root) if tls else None
    server = RedisServer(binary, free_port(), root, username, password, files)
    try:
        server.start()
    except TimeoutError:
        log = server.log_tail()
        server.close()
        if tls and "TLS" in log:
            unavailable(f"this redis-server build does not support TLS: {log}")
        raise
    except BaseException:
        server.close()
        raise
    return server


URL_OPTION = "--sessionkv-redis-url"
"""Point :func:`redis_url` at a Redis you run (pytest-redis' "noproc" mode)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    add_url_option(parser, URL_OPTION, "Redis")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One plain Redis for the test session: ``.url``, ``.unix_url``, ``.port``,
    ``.stop()``/``.start()`` (same port, empty data)."""
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of a Redis for contract tests: ``--sessionkv-redis-url``'s, else a started one."""
    return existing_or_started(request, URL_OPTION, "redis_server")


@pytest.fixture(scope="session")
def redis_tls_server() -> Iterator[RedisServer]:
    """A TLS-only Redis with ACL user ``alice``: ``.url`` is ``rediss://alice:...@...``
    with ``ssl_ca_certs`` pointing at the test CA that signed its certificate."""
    server = start_redis(username="alice", password="s3cret:p@ss/word", tls=True)
    try:
        yield server
    finally:
        server.close()
