"""Opt-in pytest plugin: ``pytest_plugins = ["sessionkv.contract_tests.pytest_plugin"]``
(or ``-p sessionkv.contract_tests.pytest_plugin``).

Registers the suite's markers (one per built-in backend, from their declarations) and
provides fixtures that start real servers on free loopback ports (skipping with an
install hint when a binary is missing, failing when ``SESSIONKV_REQUIRE_BACKENDS=1``):
every module of :mod:`sessionkv.contract_tests.servers` is loaded as a plugin, so a
new server module needs no registration here. ``--sessionkv-<name>-url URL`` points a
server's fixtures at one you already run.
"""

from __future__ import annotations

import pkgutil

import pytest

from ..backends import BUILTIN_BACKENDS
from . import servers

# Each server module is a plugin: its fixtures, and its own pytest_addoption.
pytest_plugins = [
    f"{servers.__name__}.{module.name}"
    for module in pkgutil.iter_modules(servers.__path__)
    if not module.name.startswith("_") and module.name != "tls"
]

MARKERS = {
    "contract": "a test of the sessionkv store or registry contract",
    **{spec.name: f"uses the {spec.name} backend: {spec.description}" for spec in BUILTIN_BACKENDS},
    "slow": "takes seconds (cluster failover, process crashes)",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
