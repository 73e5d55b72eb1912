"""Redis backend specifics on real servers: URLs and the client= form, round trips per
operation (seen by MONITOR), the index staying bounded, unix sockets, TLS with ACL
credentials, and an outage (server stopped, paused, restarted) in mid-test."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from sessionkv import RedisSessionKVStore, SessionRegistry, create_store
from sessionkv.backends.redis import namespace_prefix
from sessionkv.contract_tests.servers.redis import RedisServer, start_redis
from sessionkv.core.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
)

pytestmark = pytest.mark.redis

LONG = 300.0


def _ns() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client on the same server, to look behind the store."""
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisSessionKVStore]:
    async with RedisSessionKVStore(redis_server.url, namespace=_ns()) as store:
        yield store
        await store.delete(await store.keys(""))


def _index_keys(store: RedisSessionKVStore) -> tuple[bytes, bytes]:
    prefix = namespace_prefix(store.namespace)
    return prefix + b"idx", prefix + b"exp"


async def _poll(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)


# -- configuration --------------------------------------------------------------------


def test_url_forms_and_options(redis_server: RedisServer) -> None:
    store = create_store(f"{redis_server.url}?namespace=n1&timeout=2.5")
    assert isinstance(store, RedisSessionKVStore)
    assert store.namespace == "n1"
    assert store._connection["socket_timeout"] == 2.5
    assert store._connection["db"] == 0
    assert create_store("redis://h:1/3")._connection["db"] == 3  # type: ignore[attr-defined]
    unix = RedisSessionKVStore.from_url("unix:///tmp/r.sock?db=2", namespace="n2")
    assert unix._connection["unix_socket_path"] == "/tmp/r.sock"
    assert unix._connection["db"] == 2 and unix.namespace == "n2"
    tls = RedisSessionKVStore("rediss://h:1/0?ssl_cert_reqs=none&ssl_check_hostname=false")
    assert tls._connection["ssl"] is True and tls._connection["ssl_check_hostname"] is False
    assert RedisSessionKVStore()._connection["host"] == "localhost"
    with pytest.raises(ConfigurationError, match="bogus"):
        create_store(redis_server.url, bogus=1)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:1/0?bogus=1",
        "redis://h1:1,h2:2/0",
        "redis://h:1/x",
        "redis://h:1/0?ssl_ca_certs=/ca.pem",
        "rediss://h:1/0?ssl_cert_reqs=sometimes",
        "unix://",
        "redis://h:1/0?timeout=0",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises((ConfigurationError, ValueError)):
        RedisSessionKVStore.from_url(url)


def test_repr_and_errors_hide_the_password() -> None:
    store = RedisSessionKVStore("redis://bob:hunter2%21@127.0.0.1:1/0")
    assert "hunter2" not in repr(store) and "bob" in repr(store)
    error = store._translate_error(ConnectionError("auth hunter2! failed"))
    assert "hunter2" not in str(error)


@pytest.mark.asyncio
async def test_client_passed_in_is_used_and_never_closed(redis_server: RedisServer) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        async with RedisSessionKVStore(client=client, namespace=_ns()) as store:
            await store.set("k", b"v", LONG)
            assert await store.get("k") == b"v"
            await store.delete(["k"])
            assert "127.0.0.1" in repr(store)
        assert await client.ping() is True
    finally:
        await client.aclose()
    with pytest.raises(ConfigurationError, match="decode_responses=False"):
        RedisSessionKVStore(client=aioredis.Redis(decode_responses=True))
    with pytest.raises(TypeError):
        RedisSessionKVStore("redis://h:1/0", client=aioredis.Redis())
    with pytest.raises(ConfigurationError):
        RedisSessionKVStore(client=aioredis.Redis(), timeout=1.0)


def test_import_needs_no_redis_and_use_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import sessionkv.backends.redis as m\n"
        "try:\n    m.RedisSessionKVStore('redis://h:1/0')\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "sessionkv[redis]"' in out.stdout


# -- keys, namespaces, index ------------------------------------------------------------


@pytest.mark.asyncio
async def test_namespace_layout_never_collides(
    store: RedisSessionKVStore, raw: aioredis.Redis
) -> None:
    await store.set("a", b"1", LONG)
    prefix = namespace_prefix(store.namespace)
    assert await raw.get(prefix + b"k:a") == b"1"
    assert await raw.zrange(prefix + b"idx", 0, -1) == [b"a"]
    # Escaped: no namespace's prefix starts another's.
    names = ["", "a", "a:", "a:b", "a%3A", "a*", "ü", ":"]
    prefixes = [namespace_prefix(n) for n in names]
    for i, p in enumerate(prefixes):
        for j, q in enumerate(prefixes):
            assert i == j or not q.startswith(p), (names[i], names[j])


@pytest.mark.asyncio
async def test_expired_members_leave_the_index(
    store: RedisSessionKVStore, raw: aioredis.Redis
) -> None:
    idx, exp = _index_keys(store)
    await store.mset([(f"old{i:03d}", b"", 0.05) for i in range(200)])
    await store.set("live", b"", LONG)
    assert await raw.zcard(idx) == await raw.zcard(exp) == 201
    await _poll(lambda: _equals(store.mget(["old000", "old199"]), [None, None]), 5, "expiry")
    # Each write sweeps a bounded batch of expired members: 13 writes x 16 >= 200.
    for i in range(13):
        await store.set(f"new{i}", b"", LONG)
    assert await raw.zcard(idx) == await raw.zcard(exp) == 14
    assert await store.keys("") == ["live", *sorted(f"new{i}" for i in range(13))]


@pytest.mark.asyncio
async def test_scans_drop_members_whose_value_is_gone(
    store: RedisSessionKVStore, raw: aioredis.Redis
) -> None:
    idx, exp = _index_keys(store)
    await store.mset([("p/a", b"", 0.05), ("p/b", b"", 0.05), ("q", b"", LONG)])
    await _poll(lambda: _equals(store.scan("p/"), []), 5, "expiry")
    assert await raw.zrange(idx, 0, -1) == [b"q"]
    assert await raw.zrange(exp, 0, -1) == [b"q"]


@pytest.mark.asyncio
async def test_purge_and_background_sweep(redis_server: RedisServer, raw: aioredis.Redis) -> None:
    async with RedisSessionKVStore(redis_server.url, namespace=_ns()) as store:
        idx, _ = _index_keys(store)
        await store.mset([(f"k{i}", b"", 0.05) for i in range(1500)])
        await _poll(lambda: _equals(store.get("k0"), None), 5, "expiry")
        assert await store.purge_expired() == 1500
        assert await raw.zcard(idx) == 0
    async with RedisSessionKVStore(redis_server.url, namespace=_ns(), sweep_interval=0.05) as store:
        idx, _ = _index_keys(store)
        await store.mset([(f"k{i}", b"", 0.05) for i in range(50)])
        await _poll(lambda: _equals(raw.zcard(idx), 0), 5, "background sweep")


@pytest.mark.asyncio
async def test_expire_moves_the_index_expiry(
    store: RedisSessionKVStore, raw: aioredis.Redis
) -> None:
    _, exp = _index_keys(store)
    await store.mset([("a", b"", 1.0), ("b", b"", 1.0)])
    server_ms = (await raw.time())[0] * 1000
    await store.expire("a", "missing", ttl=LONG)
    score = await raw.zscore(exp, "a")
    assert score is not None and score >= server_ms + (LONG - 5) * 1000
    old = await raw.zscore(exp, "b")
    assert old is not None and old < server_ms + 5000
    assert await raw.zscore(exp, "missing") is None
    assert await raw.exists(namespace_prefix(store.namespace) + b"k:missing") == 0


@pytest.mark.asyncio
async def test_scans_read_a_lexicographic_range_not_the_keyspace(
    store: RedisSessionKVStore, redis_server: RedisServer
) -> None:
    await store.mset([("s/c/1", b"x", LONG), ("s/c/2", b"y", LONG)])
    async with _monitor(redis_server) as seen:
        assert await store.scan("s/c/") == [("s/c/1", b"x"), ("s/c/2", b"y")]
    names = {cmd.split(" ", 1)[0].upper() for cmd in seen.all}
    assert "ZRANGEBYLEX" in names and not names & {"SCAN", "KEYS"}


# -- round trips -------------------------------------------------------------------------


class _Seen:
    def __init__(self) -> None:
        self.top: list[str] = []  # commands sent by clients: one each per round trip
        self.all: list[str] = []  # also those run by scripts


@contextlib.asynccontextmanager
async def _monitor(server: RedisServer) -> AsyncIterator[_Seen]:
    """Every command the server runs inside the block, from MONITOR."""
    client = aioredis.Redis(host="127.0.0.1", port=server.port)
    ender = aioredis.Redis(host="127.0.0.1", port=server.port)
    await ender.ping()  # its connection handshake happens before MONITOR starts
    marker = f"sessionkv-marker-{uuid.uuid4().hex}"
    seen = _Seen()
    async with client.monitor() as monitor:  # returns once MONITOR answered OK

        async def pump() -> None:
            while True:
                info = await monitor.next_command()
                if marker in info["command"]:
                    return
                seen.all.append(info["command"])
                if info["client_type"] != "lua":
                    seen.top.append(info["command"])

        task = asyncio.get_running_loop().create_task(pump())
        try:
            yield seen
        finally:
            await ender.echo(marker)
            await asyncio.wait_for(task, 5)
    await ender.aclose()
    await client.aclose()


@pytest.mark.asyncio
async def test_one_round_trip_per_operation(
    store: RedisSessionKVStore, redis_server: RedisServer
) -> None:
    registry = SessionRegistry(store, node_id="n", ttl=LONG)
    sessions = {f"s{i}": "call" for i in range(20)}
    for session_id in sessions:
        await registry.register("call", session_id)
    cases: list[tuple[str, Callable[[], Awaitable[object]], int]] = [
        ("register", lambda: registry.register("call", "x"), 1),
        ("get", lambda: registry.get("call", "x"), 1),
        ("get_for_call", lambda: registry.get_for_call("call"), 1),
        ("update_metrics", lambda: registry.update_metrics("call", "x", {"a": 1}), 2),
        ("refresh(20)", lambda: registry.refresh(sessions), 1),
        ("request_close", lambda: registry.request_close("call", "s1"), 1),
        ("get_close_requests(20)", lambda: registry.get_close_requests(sessions), 1),
        ("remove", lambda: registry.remove("call", "x"), 1),
        ("mset(50)", lambda: store.mset([(f"m{i}", b"", LONG) for i in range(50)]), 1),
        ("mget(50)", lambda: store.mget([f"m{i}" for i in range(50)]), 1),
        ("expire(50)", lambda: store.expire(*[f"m{i}" for i in range(50)], ttl=LONG), 1),
        ("keys", lambda: store.keys("m"), 1),
        ("delete(50)", lambda: store.delete([f"m{i}" for i in range(50)]), 1),
    ]
    for name, operation, round_trips in cases:
        async with _monitor(redis_server) as seen:
            await operation()
        assert len(seen.top) == round_trips, (name, seen.top)


async def _equals(awaitable: Awaitable[object], expected: object) -> bool:
    return await awaitable == expected


# -- unix socket, TLS, credentials -------------------------------------------------------


@pytest.mark.asyncio
async def test_unix_socket(redis_server: RedisServer) -> None:
    async with create_store(redis_server.unix_url, namespace=_ns()) as store:
        await store.set("k", b"v", LONG)
        assert await store.scan("") == [("k", b"v")]
        await store.delete(["k"])


@pytest.mark.asyncio
async def test_tls_with_acl_user(
    redis_tls_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = redis_tls_server.password
    assert password and redis_tls_server.url.startswith("rediss://alice:")
    async with create_store(redis_tls_server.url, namespace=_ns()) as store:
        await store.set("k", b"v", LONG)
        assert await store.get("k") == b"v"
        assert await store.keys("") == ["k"]
        await store.delete(["k"])
        assert "s3cret" not in repr(store) and "alice" in repr(store)
    wrong = redis_tls_server.url.replace("s3cret", "wrong-s3cret")
    failures: list[BaseException] = []
    with pytest.raises(BackendError, match="refused the credentials") as refused:
        await RedisSessionKVStore(wrong).get("k")
    failures.append(refused.value)
    untrusted = redis_tls_server.url.split("?", 1)[0]  # no ssl_ca_certs: the test CA is not trusted
    with pytest.raises(BackendUnavailableError) as unverified:
        await RedisSessionKVStore(untrusted, timeout=2).get("k")
    failures.append(unverified.value)
    plain = redis_tls_server.url.replace("rediss://", "redis://").split("?", 1)[0]
    with pytest.raises(BackendUnavailableError) as not_tls:
        await RedisSessionKVStore(plain, timeout=0.5).get("k")
    failures.append(not_tls.value)
    for error in failures:
        chain = f"{error!r} {error} {error.__cause__!r}"
        assert "s3cret" not in chain and "p@ss" not in chain
    assert "s3cret" not in caplog.text


# -- outages -------------------------------------------------------------------------------


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    """A server of this test's own, to stop, pause and restart."""
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.asyncio
async def test_server_restart_mid_test(private_server: RedisServer) -> None:
    store = RedisSessionKVStore(private_server.url, namespace="restart", timeout=1.0)
    registry = SessionRegistry(store, node_id="n", ttl=LONG)
    async with store, registry:
        await registry.register("call", "before")
        private_server.stop()
        for operation in (
            registry.register("call", "during"),
            registry.get_for_call("call"),
            store.mget(["a"]),
        ):
            with pytest.raises(BackendUnavailableError):
                await asyncio.wait_for(operation, 10)  # an error, never a hang
        private_server.start()  # same port, empty: no persistence

        async def works() -> bool:
            try:
                await registry.register("call", "after")
            except BackendUnavailableError:
                return False
            return True

        await _poll(works, 10, "the same store after the restart")
        # The server lost the scripts too; the store loaded them again.
        assert [i.session_id for i in await registry.get_for_call("call")] == ["after"]
        await registry.refresh({"after": "call"})
        await registry.remove("call", "after")
        assert await registry.get_for_call("call") == []


@pytest.mark.asyncio
async def test_unresponsive_server_times_out(private_server: RedisServer) -> None:
    async with RedisSessionKVStore(
        private_server.url, namespace="pause", timeout=0.3, max_connections=2
    ) as store:
        await store.set("k", b"v", LONG)
        private_server.pause()
        try:
            with pytest.raises(BackendTimeoutError):
                await asyncio.wait_for(store.get("k"), 10)
            # More calls than connections: the queued ones time out too, never hang.
            burst = [store.get("k"), store.scan(""), store.set("x", b"", 1), store.keys("")]
            results = await asyncio.wait_for(asyncio.gather(*burst, return_exceptions=True), 10)
            assert all(isinstance(r, BackendTimeoutError) for r in results), results
        finally:
            private_server.resume()
        await _poll(lambda: _equals(store.get("k"), b"v"), 5, "answers after SIGCONT")


@pytest.mark.asyncio
async def test_server_down_at_start_then_up(private_server: RedisServer) -> None:
    private_server.stop()
    store = RedisSessionKVStore(private_server.url, namespace="late", timeout=1.0)
    try:
        with pytest.raises(BackendUnavailableError):
            await asyncio.wait_for(store.start(), 10)
        private_server.start()
        await store.set("k", b"v", LONG)  # the first operation starts it now
        assert await store.get("k") == b"v"
    finally:
        await store.close()
