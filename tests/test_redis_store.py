"""Redis backend specifics on real servers: URLs and the client= form, round trips per
operation (seen by MONITOR), the index staying bounded, unix sockets, TLS with ACL
credentials, and an outage (server stopped, paused, restarted) in mid-test."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions

from sessionkv import RedisSessionKVStore, SessionRegistry, create_store
from sessionkv.backends.redis import namespace_prefix
from sessionkv.contract_tests.servers import eventually, free_port
from sessionkv.contract_tests.servers.redis import RedisServer, start_redis
from sessionkv.core.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    StoreClosedError,
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
    await eventually(condition, timeout=timeout, what=what)


# -- configuration --------------------------------------------------------------------


def test_url_forms_and_options(redis_server: RedisServer) -> None:
    store = create_store(f"{redis_server.url}?namespace=n1&timeout=2.5")
    assert isinstance(store, RedisSessionKVStore)
    assert store.namespace == "n1"
    assert store._config.timeout == store._config.pool["socket_timeout"] == 2.5
    assert store._config.pool["db"] == 0 and store._config.kind == "tcp"
    assert create_store("redis://h:1/3")._config.pool["db"] == 3  # type: ignore[attr-defined]
    unix = RedisSessionKVStore.from_url("unix:///tmp/r.sock?db=2", namespace="n2")
    assert unix._config.kind == "unix" and unix._config.pool["path"] == "/tmp/r.sock"
    assert unix._config.pool["db"] == 2 and unix.namespace == "n2"
    tls = RedisSessionKVStore("rediss://h:1/0?ssl_cert_reqs=none&ssl_check_hostname=false")
    assert tls._config.kind == "tls" and tls._config.pool["ssl_check_hostname"] is False
    assert RedisSessionKVStore()._config.pool["host"] == "localhost"
    assert RedisSessionKVStore(max_connections=3, sweep_interval=0)._config.max_connections == 3
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
        "redis://h:1/0?timeout=-1",
        "redis://h:1/0?timeout=nan",
        "redis://h:1/0?timeout=inf",
        "redis://h:1/0?timeout=soon",
        "redis://h:1/0?sweep_interval=-1",
        "redis://h:1/0?max_connections=0",
        "redis://h:1/0?max_connections=-3",
        "redis://h:1/0?db=-1",
        "redis://h:1/2?db=3",
        "rediss://h:1/0?ssl_check_hostname=maybe",
        "http://h:1/0",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    # Exactly ConfigurationError (what the CLI and `except ConfigurationError` catch),
    # not just any ValueError: an out-of-range value is a configuration mistake.
    with pytest.raises(ConfigurationError):
        RedisSessionKVStore.from_url(url)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"timeout": 0}, ConfigurationError),
        ({"timeout": -1.0}, ConfigurationError),
        ({"timeout": float("inf")}, ConfigurationError),
        ({"sweep_interval": -1}, ConfigurationError),
        ({"max_connections": 0}, ConfigurationError),
        ({"db": -1}, ConfigurationError),
        ({"ssl_cert_reqs": "sometimes"}, ConfigurationError),
        ({"timeout": "1"}, TypeError),
        ({"sweep_interval": "60"}, TypeError),
        ({"max_connections": "3"}, TypeError),
        ({"max_connections": 2.5}, TypeError),
        ({"db": "1"}, TypeError),
        ({"db": True}, TypeError),
        ({"ssl_check_hostname": "yes"}, TypeError),
        ({"ssl_ca_certs": 3}, TypeError),
        ({"namespace": 3}, TypeError),
    ],
)
def test_bad_keyword_values(options: dict[str, object], error: type[Exception]) -> None:
    url = "rediss://h:1/0" if any(name.startswith("ssl_") for name in options) else "redis://h:1/0"
    with pytest.raises(error):
        RedisSessionKVStore(url, **options)  # type: ignore[arg-type]
    with pytest.raises(error):
        create_store(url, **options)


def test_cli_reports_a_bad_option_value_in_one_line() -> None:
    # C21: a plain ValueError escaped the CLI as a traceback with exit status 1.
    url = "redis://:hunter2@127.0.0.1:1/0?timeout=0"
    out = subprocess.run(
        [sys.executable, "-m", "sessionkv", "sessions", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "timeout" in out.stderr and "hunter2" not in out.stderr


def test_repr_hides_the_password_and_the_query() -> None:
    store = RedisSessionKVStore("redis://bob:hunter2%21@127.0.0.1:1/0?namespace=n&timeout=2")
    assert repr(store) == (
        "RedisSessionKVStore(url='redis://bob:***@127.0.0.1:1/0', namespace='n', state=new)"
    )


def test_repr_of_a_half_built_store_does_not_raise() -> None:
    # A constructor that fails leaves a half-built object behind; debuggers and error
    # reporters (capture_locals) call repr() on it while formatting the real error.
    with pytest.raises(ConfigurationError) as failed:
        RedisSessionKVStore("redis://:hunter2@127.0.0.1:notaport/0")
    text = "".join(
        traceback.TracebackException.from_exception(failed.value, capture_locals=True).format()
    )
    assert "RedisSessionKVStore(" in text and "hunter2" not in str(failed.value)
    half_built = RedisSessionKVStore.__new__(RedisSessionKVStore)
    assert repr(half_built).startswith("RedisSessionKVStore(")


@pytest.mark.parametrize(
    ("make", "mapped"),
    [
        (lambda rx, text: rx.ConnectionError(text), BackendUnavailableError),
        (lambda rx, text: rx.TimeoutError(text), BackendTimeoutError),
        (lambda rx, text: rx.AuthenticationError(text), BackendError),
        (lambda rx, text: rx.AuthorizationError(text), BackendError),
        (lambda rx, text: rx.BusyLoadingError(text), BackendUnavailableError),
        (lambda rx, text: rx.ResponseError(text), BackendError),
        (lambda rx, text: ConnectionRefusedError(text), BackendUnavailableError),
        (lambda rx, text: RuntimeError(text), BackendError),
    ],
    ids=["connection", "timeout", "auth", "acl", "loading", "response", "os", "other"],
)
def test_every_error_branch_scrubs_the_password(
    make: Callable[[Any, str], Exception], mapped: type[Exception]
) -> None:
    store = RedisSessionKVStore("redis://bob:hunter2%21@127.0.0.1:1/0")
    error = store._translate_error(make(redis_exceptions, "auth hunter2! failed"))
    assert type(error) is mapped or isinstance(error, mapped)
    assert "hunter2" not in str(error) and "***" in str(error)


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    """A plain-TCP server whose default user has a password (``requirepass``)."""
    server = start_redis(password="hunter2!")
    try:
        yield server
    finally:
        server.close()


def _chain(error: BaseException) -> str:
    text = ""
    while error is not None:
        text += f"{error!r} {error} "
        error = error.__cause__  # type: ignore[assignment]
    return text


@pytest.mark.asyncio
async def test_real_failures_never_show_the_password(
    password_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert password_server.url.startswith("redis://default:hunter2%21@")
    async with create_store(password_server.url, namespace=_ns()) as store:
        await store.set("k", b"v", LONG)  # the right password works
        await store.delete(["k"])
    wrong = password_server.url.replace("hunter2%21", "hunter3-wrong%21")
    failures: list[BaseException] = []
    with pytest.raises(BackendError, match="refused the credentials") as refused:
        await RedisSessionKVStore(wrong).get("k")  # redis-py's AuthenticationError
    failures.append(refused.value)
    unreachable = f"redis://default:hunter3-wrong%21@127.0.0.1:{free_port()}/0"
    with pytest.raises(BackendUnavailableError) as refused_port:
        await RedisSessionKVStore(unreachable, timeout=2).get("k")  # redis-py's ConnectionError
    failures.append(refused_port.value)
    async with RedisSessionKVStore(password_server.url, namespace=_ns(), timeout=0.3) as store:
        await store.get("k")
        password_server.pause()
        try:
            with pytest.raises(BackendTimeoutError) as timed_out:  # redis-py's TimeoutError
                await store.get("k")
        finally:
            password_server.resume()
    failures.append(timed_out.value)
    for error in failures:
        chain = _chain(error)
        assert "hunter" not in chain, chain
        assert "127.0.0.1" in chain  # the message still says where
    assert "hunter" not in caplog.text


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
async def test_trim_index_and_background_sweep(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    async with RedisSessionKVStore(redis_server.url, namespace=_ns(), sweep_interval=0) as store:
        assert store._sweeper is None  # sweep_interval=0: no background task
        idx, _ = _index_keys(store)
        await store.mset([(f"k{i}", b"", 0.05) for i in range(1500)])
        await _poll(lambda: _equals(store.get("k0"), None), 5, "expiry")
        assert await store.trim_index() == 1500  # in batches of 1000
        assert await raw.zcard(idx) == 0
        await store.mset([(f"k{i}", b"", 0.05) for i in range(10)])
        await _poll(lambda: _equals(store.get("k0"), None), 5, "expiry")
        assert await store.purge_expired() == 10  # the 0.1 name still works
    async with RedisSessionKVStore(redis_server.url, namespace=_ns(), sweep_interval=0.05) as store:
        sweeper = store._sweeper  # the base class runs the loop
        assert sweeper is not None and sweeper.running
        idx, _ = _index_keys(store)
        await store.mset([(f"k{i}", b"", 0.05) for i in range(50)])
        await _poll(lambda: _equals(raw.zcard(idx), 0), 5, "background sweep")
    assert not sweeper.running


@pytest.mark.asyncio
async def test_trim_index_reports_a_busy_pool_in_its_own_words(
    redis_server: RedisServer,
) -> None:
    # The slot timeout's message says what to do (raise max_connections); it must be
    # the error the caller sees, not a generic "no answer in time" wrapped around it.
    async with RedisSessionKVStore(
        redis_server.url, namespace=_ns(), max_connections=1, timeout=0.2
    ) as store:
        await store._slots.acquire()  # the one connection is busy
        try:
            for name in ("purge_expired", "trim_index"):
                with pytest.raises(BackendTimeoutError) as busy:
                    await getattr(store, name)()
                assert "every pooled connection stayed busy" in str(busy.value)
                assert "raise max_connections" in str(busy.value)
        finally:
            store._slots.release()
        assert await store.trim_index() == 0


@pytest.mark.asyncio
async def test_huge_ttl_is_clamped_as_declared(
    store: RedisSessionKVStore, raw: aioredis.Redis
) -> None:
    semantics = store.semantics
    assert semantics.max_ttl == 2**50 / 1000
    assert semantics.effective_ttl(1e300) == semantics.max_ttl
    await store.set("k", b"v", 1e300)
    pttl = await raw.pttl(namespace_prefix(store.namespace) + b"k:k")
    assert 2**50 - 60_000 < pttl <= 2**50
    assert await store.get("k") == b"v"


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
        # A read, then one compare-and-set script (never over a newer registration).
        ("update_metrics", lambda: registry.update_metrics("call", "x", {"a": 1}), 2),
        ("refresh(20)", lambda: registry.refresh(sessions), 1),
        ("get_close_requests(20)", lambda: registry.get_close_requests(sessions), 1),
        # The registry reads the session first: a request belongs to a registration.
        ("request_close", lambda: registry.request_close("call", "s1"), 2),
        # ...and checks a pending request against the registration it was made for.
        ("get_close_requests(20), one pending", lambda: registry.get_close_requests(sessions), 2),
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


# -- compare_and_set ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_compare_and_set_is_one_atomic_script(
    store: RedisSessionKVStore, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    assert store.semantics.atomic_compare_and_set is True
    _, exp = _index_keys(store)
    await store.set("k", b"v1", 1.0)
    async with _monitor(redis_server) as seen:
        assert await store.compare_and_set("k", b"v1", b"v2", LONG) is True
    assert len(seen.top) == 1 and seen.top[0].startswith("EVALSHA"), seen.top
    assert await store.get("k") == b"v2"
    # The index learns the new expiry in the same step, as with every write.
    server_ms = (await raw.time())[0] * 1000
    score = await raw.zscore(exp, "k")
    assert score is not None and score >= server_ms + (LONG - 5) * 1000
    # Refused writes leave no trace, in the data or the index.
    assert await store.compare_and_set("k", b"v1", b"v3", LONG) is False
    assert await store.compare_and_set("new", b"", b"x", LONG) is False
    assert await raw.exists(namespace_prefix(store.namespace) + b"k:new") == 0
    assert await raw.zscore(exp, "new") is None
    assert await store.keys("") == ["k"]


@pytest.mark.asyncio
async def test_compare_and_set_races_between_nodes_have_one_winner(
    redis_server: RedisServer,
) -> None:
    namespace = _ns()
    async with (
        RedisSessionKVStore(redis_server.url, namespace=namespace) as a,
        RedisSessionKVStore(redis_server.url, namespace=namespace) as b,
    ):
        for round_ in range(20):
            start = b"start%d" % round_
            await a.set("k", start, LONG)
            racers = [
                node.compare_and_set("k", start, b"%s-%d" % (name, i), LONG)
                for i in range(8)
                for name, node in ((b"a", a), (b"b", b))
            ]
            assert sum(await asyncio.gather(*racers)) == 1, round_
        await a.delete(["k"])


@pytest.mark.asyncio
async def test_compare_and_set_survives_a_script_flush(
    store: RedisSessionKVStore, raw: aioredis.Redis
) -> None:
    await store.set("k", b"v", LONG)
    await raw.script_flush()  # as after a server restart: EVALSHA answers NOSCRIPT
    assert await store.compare_and_set("k", b"v", b"w", LONG) is True
    assert await store.get("k") == b"w"


@pytest.mark.asyncio
async def test_update_metrics_never_writes_over_a_newer_registration(
    store: RedisSessionKVStore,
) -> None:
    # C6 (review repro r06): node a reads the record, the session moves to node b,
    # then a's write lands. It must not bring back a's registration.
    node_a = SessionRegistry(store, node_id="node-a", ttl=LONG, close_store=False)
    node_b = SessionRegistry(store, node_id="node-b", ttl=LONG, close_store=False)
    await node_a.register("call", "s1")
    real_get, gate, read = store._get, asyncio.Event(), asyncio.Event()

    async def slow_get(key: str) -> bytes | None:
        value = await real_get(key)
        read.set()
        await gate.wait()
        return value

    store._get = slow_get  # type: ignore[method-assign]
    update = asyncio.ensure_future(node_a.update_metrics("call", "s1", {"rtt": 1}))
    await read.wait()
    store._get = real_get  # type: ignore[method-assign]
    await node_a.remove("call", "s1")
    await node_b.register("call", "s1")
    gate.set()
    await update
    info = await node_b.get("call", "s1")
    assert info is not None and info.node_id == "node-b" and info.metrics == {}
    await node_b.update_metrics("call", "s1", {"rtt": 2})
    info = await node_a.get("call", "s1")
    assert info is not None and info.node_id == "node-b" and info.metrics == {"rtt": 2}


# -- closing -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_close_with_operations_in_flight_drops_every_connection(
    private_server: RedisServer,
) -> None:
    # C12: in-flight calls whose connections close() dropped used to reconnect (redis-py
    # retried them), succeed after close() and leave those connections open for good.
    raw = aioredis.Redis(host="127.0.0.1", port=private_server.port)
    try:
        for yields in (0, 1, 3, 10):
            store = RedisSessionKVStore(private_server.url, namespace=_ns(), max_connections=4)
            await store.start()
            batch = [(f"k{i}", b"x" * 100, LONG) for i in range(500)]
            running = [asyncio.ensure_future(store.mset(batch)) for _ in range(4)]
            running += [asyncio.ensure_future(store.scan("")) for _ in range(4)]
            running += [asyncio.ensure_future(store.get("k1")) for _ in range(4)]
            for _ in range(yields):
                await asyncio.sleep(0)
            await store.close()
            outcomes = await asyncio.wait_for(asyncio.gather(*running, return_exceptions=True), 10)
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            assert all(isinstance(e, StoreClosedError) for e in errors), errors

            async def others() -> list[dict[str, str]]:
                return [c for c in await raw.client_list() if c["cmd"] != "client|list"]

            # The server notices a closed socket at its next event-loop turn: poll briefly.
            await _poll(lambda: _equals(others(), []), 2, f"connections closed ({yields})")
    finally:
        await raw.aclose()


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


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio gained Task.cancelling() in 3.11")
@pytest.mark.asyncio
async def test_a_cancel_that_arrives_with_the_answer_is_honoured(
    store: RedisSessionKVStore,
) -> None:
    # redis-py waits with asyncio.wait_for, which on Python 3.11 returns the answer and
    # drops a cancel that arrives as it does: a loop told to stop went on (soak test).
    await store.set("k", b"v", LONG)

    async def read() -> bytes | None:
        return await store.get("k")

    outcomes = {"raised": 0, "returned": 0}
    for _ in range(300):
        task = asyncio.ensure_future(read())
        await asyncio.sleep(0)  # the request is on its way
        task.cancel()
        try:
            await task
            outcomes["returned"] += 1
        except asyncio.CancelledError:
            outcomes["raised"] += 1
    assert outcomes == {"raised": 300, "returned": 0}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio gained Task.cancelling() in 3.11")
@pytest.mark.asyncio
async def test_a_cancel_while_waiting_for_a_connection_is_honoured(
    redis_server: RedisServer,
) -> None:
    # The store's own wait for a free connection (asyncio.wait_for) dropped cancels too.
    async with RedisSessionKVStore(url=redis_server.url, max_connections=1) as store:
        await store.set("k", b"v", LONG)
        outcomes = {"raised": 0, "returned": 0}
        for turns in range(300):
            first = asyncio.ensure_future(store.get("k"))
            second = asyncio.ensure_future(store.get("k"))
            for _ in range(turns % 9):
                await asyncio.sleep(0)
            if second.cancel():
                try:
                    await second
                    outcomes["returned"] += 1
                except asyncio.CancelledError:
                    outcomes["raised"] += 1
            await first
        assert outcomes["returned"] == 0, outcomes
        await store.delete(["k"])


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio gained Task.cancelling() in 3.11")
@pytest.mark.asyncio
async def test_a_cancel_followed_by_close_ends_the_operation_as_cancelled(
    redis_server: RedisServer,
) -> None:
    # The 10-minute soak: a node task cancelled, then its store closed before the task
    # resumed; redis-py reported the closed socket, and the cancel was lost.
    outcomes: dict[str, int] = {}
    for turns in range(140):
        store = RedisSessionKVStore(url=redis_server.url, namespace="cancel-then-close")
        registry = SessionRegistry(store, node_id="n", ttl=5, close_store=False)
        await registry.register("c", "s")
        op = asyncio.ensure_future(registry.request_close("c", "s"))
        for _ in range(turns % 7):
            await asyncio.sleep(0)
        accepted = op.cancel()
        await store.close()
        try:
            await op
            outcome = "returned"
        except asyncio.CancelledError:
            outcome = "cancelled"
        except Exception as exc:  # noqa: BLE001 - counted, then asserted on
            outcome = type(exc).__name__
        if accepted:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert set(outcomes) == {"cancelled"}, outcomes
