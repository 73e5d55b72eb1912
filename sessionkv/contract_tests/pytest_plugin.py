"""Opt-in pytest plugin: ``pytest_plugins = ["sessionkv.contract_tests.pytest_plugin"]``.

Registers the suite's markers and provides fixtures that start real servers on free
loopback ports (skipping with an install hint when a binary is missing, failing when
``SESSIONKV_REQUIRE_BACKENDS=1``).
"""

from __future__ import annotations

import pytest

from .servers.etcd import etcd_cluster, etcd_server  # noqa: F401 - fixtures
from .servers.redis import URL_OPTION as REDIS_URL_OPTION
from .servers.redis import redis_server, redis_tls_server, redis_url  # noqa: F401 - fixtures

MARKERS = {
    "contract": "a test of the sessionkv store or registry contract",
    "memory": "uses the in-memory backend",
    "sqlite": "uses the SQLite backend",
    "redis": "needs a redis-server binary",
    "etcd": "needs an etcd binary",
    "slow": "takes seconds (cluster failover, process crashes)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sessionkv", "sessionkv contract suite")
    group.addoption(
        REDIS_URL_OPTION,
        metavar="URL",
        help="run the Redis contract tests against this server instead of starting one",
    )


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
