"""Real etcd servers for tests: ``etcd_server`` (one member, shared by a test session)
and ``etcd_cluster`` (three members, one test, with a way to kill the member in use).

Each member listens on free 127.0.0.1 ports with its data directory in a temporary
directory (on ``/dev/shm`` when it exists, so etcd's fsyncs cost memory copies, not disk
flushes) and is killed, its directory removed, when the fixture ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from . import add_url_option, existing_or_started, free_port, require_binary, wait_until
from .tls import make_test_certificates

__all__ = ["EtcdCluster", "EtcdMember", "etcd_cluster", "etcd_server", "start_etcd"]

INSTALL_HINT = "apt-get install etcd-server (Debian/Ubuntu) or https://etcd.io/docs/latest/install/"
STARTUP_TIMEOUT = 30.0


@dataclass
class EtcdMember:
    """One etcd process; ``endpoint`` is its client ``host:port``."""

    name: str
    client_port: int
    peer_port: int
    data_dir: str
    ca_file: str | None = None
    """Set when the member serves TLS: the CA that signed its certificate."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        return f"etcds://{self.endpoint}" if self.ca_file else f"etcd://{self.endpoint}"

    @property
    def client_url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def request(self, path: str, body: object | None = None, timeout: float = 1.0) -> object:
        """POST ``body`` (GET without one) to this member's HTTP API; parsed JSON."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.client_url}{path}", data=data)
        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return json.loads(resp.read())

    def healthy(self) -> bool:
        if not self.alive:
            return False
        try:
            answer = self.request("/health", timeout=0.5)
        except (OSError, ValueError, ssl.SSLError):
            return False
        return isinstance(answer, dict) and answer.get("health") == "true"

    def kill(self) -> None:
        """SIGKILL: the member vanishes as in a crash, with no goodbye to its peers."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


@dataclass
class EtcdCluster:
    members: list[EtcdMember]
    root: str
    ca_file: str | None = None

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    @property
    def url(self) -> str:
        """``etcd://h1:p1,h2:p2,...``: every member, for failover (``etcds://`` with TLS)."""
        return f"{'etcds' if self.ca_file else 'etcd'}://{self.endpoints}"

    @property
    def endpoint(self) -> str:
        return self.members[0].endpoint

    def member(self, endpoint: str) -> EtcdMember:
        return next(m for m in self.members if m.endpoint == endpoint)

    def leader(self) -> EtcdMember:
        """The member that leads the cluster now, as the live members report it."""
        for member in self.members:
            if not member.alive:
                continue
            status = member.request("/v3/maintenance/status", {})
            assert isinstance(status, dict)
            if status["leader"] == status["header"]["member_id"]:
                return member
        raise AssertionError("no live etcd member leads the cluster")

    def lease_ids(self) -> list[str]:
        """Every lease the cluster holds (``/v3/lease/leases`` on a live member)."""
        member = next(m for m in self.members if m.alive)
        answer = member.request("/v3/lease/leases", {})
        assert isinstance(answer, dict)
        return [str(item["ID"]) for item in answer.get("leases", [])]

    def stop(self) -> None:
        # SIGKILL: the data is thrown away, and a member whose peers are gone would
        # spend seconds on a graceful leadership hand-over.
        for member in self.members:
            member.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def _temp_root() -> str:
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="sessionkv-etcd-", dir=base)


def start_etcd(
    size: int = 1, *, tls: bool = False, flags: dict[str, str] | None = None
) -> EtcdCluster:
    """Start a ``size``-member cluster on loopback and wait until every member is healthy
    (has a leader); skip (or fail in CI) when the binary is missing. With ``tls`` the
    members serve clients over HTTPS with a certificate from a fresh CA (``ca_file``);
    ``flags`` adds etcd command-line flags (``{"--auth-token-ttl": "1"}``)."""
    binary = require_binary("etcd", INSTALL_HINT)
    root = _temp_root()
    ca_file = cert_file = key_file = None
    if tls:
        files = make_test_certificates(root)
        ca_file, cert_file, key_file = files.ca, files.cert, files.key
    members = [
        EtcdMember(f"m{i}", free_port(), free_port(), os.path.join(root, f"m{i}"), ca_file)
        for i in range(size)
    ]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    token = f"sessionkv-{uuid.uuid4().hex[:8]}"
    cluster = EtcdCluster(members, root, ca_file)
    try:
        for m in members:
            log = open(os.path.join(root, f"{m.name}.log"), "wb")  # noqa: SIM115 - child owns it
            with log:
                command = {
                    "--name": m.name,
                    "--data-dir": m.data_dir,
                    "--listen-client-urls": m.client_url,
                    "--advertise-client-urls": m.client_url,
                    "--listen-peer-urls": m.peer_url,
                    "--initial-advertise-peer-urls": m.peer_url,
                    "--initial-cluster": initial,
                    "--initial-cluster-token": token,
                    "--initial-cluster-state": "new",
                    "--logger": "zap",
                    "--log-level": "error",
                }
                if cert_file and key_file:
                    command.update({"--cert-file": cert_file, "--key-file": key_file})
                command.update(flags or {})
                m.process = subprocess.Popen(
                    [binary, *(part for pair in command.items() for part in pair)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
        for m in members:
            wait_until(m.healthy, timeout=STARTUP_TIMEOUT, what=f"etcd member {m.endpoint}")
    except BaseException:
        cluster.stop()
        raise
    return cluster


URL_OPTION = "--sessionkv-etcd-url"
"""Point :func:`etcd_url` at an etcd you run (pytest-redis' "noproc" mode)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    add_url_option(parser, URL_OPTION, "etcd")


@pytest.fixture(scope="session")
def etcd_url(request: pytest.FixtureRequest) -> str:
    """The URL of a etcd for contract tests: ``--sessionkv-etcd-url``'s, else a started one."""
    return existing_or_started(request, URL_OPTION, "etcd_server")


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdCluster]:
    """One etcd member for the whole test session (``.url``, ``.endpoint``)."""
    cluster = start_etcd(1)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def etcd_cluster() -> Iterator[EtcdCluster]:
    """Three etcd members for one test; ``cluster.member(endpoint).kill()`` crashes one,
    ``cluster.leader()`` says which one leads."""
    cluster = start_etcd(3)
    try:
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
