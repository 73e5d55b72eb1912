"""What the etcd backend promises beyond the shared contract: leases never pile up,
losing the member in use does not stop the registry, every call is bounded in time,
and credentials stay out of every message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from sessionkv import EtcdSessionKVStore, SessionRegistry, create_store
from sessionkv.contract_tests.servers import require_binary
from sessionkv.contract_tests.servers.etcd import EtcdCluster, start_etcd
from sessionkv.core.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
)

pytestmark = pytest.mark.etcd

LONG = 300.0


async def wait_for(condition, *, timeout: float, what: str) -> None:
    """Poll an async ``condition`` until true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(0.1)


@pytest.fixture
def private_etcd() -> Iterator[EtcdCluster]:
    """A member of its own, where every lease on the server is this test's."""
    cluster = start_etcd(1)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest_asyncio.fixture
async def store(etcd_server: EtcdCluster) -> AsyncIterator[EtcdSessionKVStore]:
    async with EtcdSessionKVStore(etcd_server.endpoint, namespace="etcd-specific") as store:
        yield store
        await store.delete(await store.keys(""))


# -- URLs and configuration ------------------------------------------------------------


def test_url_with_several_members_and_options() -> None:
    store = create_store("etcd://h1:1,h2,[::1]:3?namespace=n&timeout=2.5")
    assert isinstance(store, EtcdSessionKVStore)
    assert store.endpoints == "h1:1,h2:2379,[::1]:3"
    assert store.namespace == "n"
    assert store.active_endpoint == "h1:1"


def test_url_mistakes_are_configuration_errors() -> None:
    for url in ("etcd://", "etcd://h:1/path", "etcd://h:1?colour=red", "etcd://h:99999"):
        with pytest.raises(ConfigurationError):
            EtcdSessionKVStore.from_url(url)


def test_missing_client_library_names_the_extra() -> None:
    # A real interpreter where etcd3-py cannot be imported: the module still imports,
    # and the first use says what to install.
    script = (
        "import asyncio, sys\n"
        "sys.modules['etcd3'] = None\n"
        "from sessionkv.backends.etcd import EtcdSessionKVStore\n"
        "from sessionkv.core.errors import MissingExtraError\n"
        "store = EtcdSessionKVStore('127.0.0.1:1')\n"
        "try:\n"
        "    asyncio.run(store.start())\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert 'pip install "sessionkv[etcd]"' in out.stdout, out.stdout + out.stderr


def test_credentials_never_in_repr() -> None:
    store = EtcdSessionKVStore.from_url("etcds://alice:s3cret-pw@h1:1,h2:2")
    assert "s3cret-pw" not in repr(store)
    assert "alice" not in repr(store)


# -- data layout ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_batches_larger_than_one_transaction(store: EtcdSessionKVStore) -> None:
    # etcd takes at most 128 operations per transaction: 300 keys need several.
    keys = [f"k{i:03d}" for i in range(300)]
    await store.mset([(k, k.encode(), 5.0) for k in keys])
    await store.expire(*keys, "missing", ttl=LONG)
    assert await store.mget([*keys, "missing"]) == [k.encode() for k in keys] + [None]
    await store.delete(keys[:250])
    assert await store.keys("") == keys[250:]


@pytest.mark.asyncio
async def test_lease_revoked_behind_the_store_is_replaced(
    store: EtcdSessionKVStore, etcd_server: EtcdCluster
) -> None:
    await store.set("a", b"1", LONG)
    for lease in etcd_server.lease_ids():  # an operator's `etcdctl lease revoke`
        etcd_server.members[0].request("/v3/lease/revoke", {"ID": lease})
    assert await store.get("a") is None
    await store.set("b", b"2", LONG)
    await store.mset([("c", b"3", LONG)])
    assert await store.mget(["b", "c"]) == [b"2", b"3"]


def _kv_requests(cluster: EtcdCluster) -> int:
    """Requests etcd has handled that read or write keys or grant leases (the janitor's
    lease checks and revokes are left out), from the member's Prometheus metrics."""
    text = urllib.request.urlopen(f"http://{cluster.endpoint}/metrics", timeout=5).read()
    methods = ('"Range"', '"Put"', '"DeleteRange"', '"Txn"', '"LeaseGrant"')
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith("grpc_server_handled_total{") and any(m in line for m in methods):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


@pytest.mark.asyncio
async def test_refresh_of_many_sessions_is_a_few_requests(
    store: EtcdSessionKVStore, etcd_server: EtcdCluster
) -> None:
    registry = SessionRegistry(store, node_id="n", ttl=LONG)
    sessions = {f"s{i}": "call" for i in range(100)}
    for session_id, call_id in sessions.items():
        await registry.register(call_id, session_id)
    before = _kv_requests(etcd_server)
    await registry.refresh(sessions)  # 200 keys: records and close flags
    # One lease grant at most, and one transaction per 64 keys: 4, not 200.
    assert _kv_requests(etcd_server) - before <= 5
    assert len(await registry.get_for_call("call")) == 100


# -- leases do not pile up -----------------------------------------------------------


@pytest.mark.asyncio
async def test_lease_count_stays_bounded(private_etcd: EtcdCluster) -> None:
    """Overwrites, refreshes to other TTLs and deletes, over several lease windows:
    leases no key holds are revoked, so the server keeps about one per TTL in use."""
    leases_seen = 0
    async with EtcdSessionKVStore(private_etcd.endpoint, namespace="leases") as store:
        keys = [f"k{i}" for i in range(20)]
        started = time.monotonic()
        while time.monotonic() - started < 4.0:
            await store.mset([(k, b"v", LONG) for k in keys])
            await store.expire(*keys[:10], ttl=LONG - 100)
            await store.set("solo", b"x", LONG - 50)
            await store.delete(["solo"])
            leases_seen = max(leases_seen, len(private_etcd.lease_ids()))
            await asyncio.sleep(0.2)
        # Live keys hold at most the two newest leases (TTL 300 and 200).
        await wait_for(
            lambda: _async(len(private_etcd.lease_ids()) <= 2),
            timeout=12,
            what="leases the keys left revoked",
        )
        assert await store.mget(keys) == [b"v"] * 20
        await store.delete(keys)
    # Closing the store revokes the leases that hold no key any more.
    assert private_etcd.lease_ids() == []
    assert leases_seen <= 10, f"up to {leases_seen} leases existed at once"


async def _async(value: bool) -> bool:
    return value


# -- failover --------------------------------------------------------------------------


def _leader_endpoint(cluster: EtcdCluster) -> str:
    for member in cluster.members:
        if not member.alive:
            continue
        status = member.request("/v3/maintenance/status", {})
        assert isinstance(status, dict)
        if status["leader"] == status["header"]["member_id"]:
            return member.endpoint
    raise AssertionError("no leader")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_registry_survives_the_loss_of_the_member_in_use(etcd_cluster: EtcdCluster) -> None:
    # The leader first in the URL: losing it costs an election too, the harder case.
    leader = _leader_endpoint(etcd_cluster)
    others = [m.endpoint for m in etcd_cluster.members if m.endpoint != leader]
    url = "etcd://" + ",".join([leader, *others])
    async with (
        EtcdSessionKVStore.from_url(url, namespace="failover") as store_a,
        EtcdSessionKVStore.from_url(url, namespace="failover") as store_b,
        SessionRegistry(store_a, node_id="a", ttl=30) as a,
        SessionRegistry(store_b, node_id="b", ttl=30) as b,
    ):
        await a.register("call", "s1")
        assert store_a.active_endpoint == leader
        etcd_cluster.member(leader).kill()

        await a.register("call", "s2")
        await a.update_metrics("call", "s1", {"frames": 1})
        await a.refresh({"s1": "call", "s2": "call"})
        await b.request_close("call", "s2")
        found = await b.get_for_call("call")
        assert sorted((i.session_id, i.metrics) for i in found) == [
            ("s1", {"frames": 1}),
            ("s2", {}),
        ]
        assert await a.get_close_requests({"s1": "call", "s2": "call"}) == ["s2"]
        assert store_a.active_endpoint != leader
        await a.remove("call", "s1")
        await a.remove("call", "s2")
        assert await b.get_for_call("call") == []


# -- bounded calls, clean errors --------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.asyncio
async def test_no_member_answering_is_backend_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"etcd://bob:pa55word@127.0.0.1:{_closed_port()},127.0.0.1:{_closed_port()}"
    store = EtcdSessionKVStore.from_url(url + "?timeout=0.5")
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as raised:
        await store.get("k")
    assert time.monotonic() - started < 3.0
    chain: list[BaseException] = []
    exc: BaseException | None = raised.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for text in [repr(store), caplog.text, *map(str, chain), *map(repr, chain)]:
        assert "pa55word" not in text
    await store.close()


@pytest.mark.asyncio
async def test_a_member_that_never_answers_times_out() -> None:
    # A real listening socket that accepts connections and never replies.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        store = EtcdSessionKVStore(f"127.0.0.1:{port}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            await store.start()
        assert time.monotonic() - started < 3.0
        await store.close()


# -- authentication --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_authenticated_cluster() -> None:
    etcdctl = require_binary("etcdctl", "apt-get install etcd-client")
    # Tokens expire after 1 s idle here (300 s by default): the store must renew its own.
    cluster = start_etcd(1, flags={"--auth-token-ttl": "1"})
    try:
        await _check_authentication(etcdctl, cluster.endpoint)
    finally:
        cluster.stop()


async def _check_authentication(etcdctl: str, endpoint: str) -> None:
    def ctl(*args: str) -> None:
        subprocess.run(
            [etcdctl, "--endpoints", endpoint, *args],
            check=True,
            capture_output=True,
            env={"ETCDCTL_API": "3"},
            timeout=10,
        )

    ctl("user", "add", "root:r00t-secret")
    ctl("auth", "enable")
    async with EtcdSessionKVStore.from_url(f"etcd://root:r00t-secret@{endpoint}") as store:
        await store.set("k", b"v", LONG)
        assert await store.get("k") == b"v"
        await asyncio.sleep(2.5)  # let the token expire: the precondition, not the check
        assert await store.get("k") == b"v"
        await store.delete(["k"])
    wrong = EtcdSessionKVStore.from_url(f"etcd://root:not-the-secret@{endpoint}?timeout=2")
    with pytest.raises(BackendError) as raised:
        await wrong.get("k")
    assert "not-the-secret" not in str(raised.value) and "r00t" not in str(raised.value)
    with contextlib.suppress(Exception):
        await wrong.close()


# -- TLS ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_etcds_url_speaks_tls_and_verifies_the_server() -> None:
    cluster = start_etcd(1, tls=True)
    try:
        url = f"{cluster.url}?ca_file={cluster.ca_file}"
        async with EtcdSessionKVStore.from_url(url, namespace="tls") as store:
            await store.set("k", b"v", LONG)
            assert await store.get("k") == b"v"
            await store.delete(["k"])
        # Without the CA the server's certificate is not trusted: no silent downgrade.
        untrusted = EtcdSessionKVStore.from_url(f"{cluster.url}?timeout=2")
        with pytest.raises(BackendError):
            await untrusted.start()
        await untrusted.close()
    finally:
        cluster.stop()
