"""The memory backend against the shared contract suites, on a manual clock."""

import pytest

from sessionkv import InMemorySessionKVStore
from sessionkv.contract_tests import (
    ManualClockFixtures,
    RegistryContractTests,
    StoreContractTests,
)

pytestmark = pytest.mark.memory


class TestInMemoryStore(ManualClockFixtures, StoreContractTests, RegistryContractTests):
    @pytest.fixture
    def store_factory(self, clock):
        return lambda namespace: InMemorySessionKVStore(namespace=namespace, clock=clock)
