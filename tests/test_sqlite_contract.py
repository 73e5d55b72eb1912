"""The SQLite backend against the shared contract suites: a file shared by two
connections (as two processes would share it), and a private in-memory database."""

import pytest

from sessionkv import SQLiteSessionKVStore
from sessionkv.contract_tests import (
    ManualClockFixtures,
    RegistryContractTests,
    StoreContractTests,
)

pytestmark = pytest.mark.sqlite


class TestSQLiteFileStore(StoreContractTests, RegistryContractTests):
    @pytest.fixture
    def store_factory(self, tmp_path):
        return lambda namespace: SQLiteSessionKVStore(tmp_path / "kv.db", namespace=namespace)

    @pytest.fixture
    def store_url(self, tmp_path):
        return lambda namespace: f"sqlite:///{tmp_path}/kv.db?namespace={namespace}"


class TestSQLiteInMemoryStore(ManualClockFixtures, StoreContractTests, RegistryContractTests):
    @pytest.fixture
    def store_factory(self, clock):
        return lambda namespace: SQLiteSessionKVStore(":memory:", namespace=namespace, clock=clock)
