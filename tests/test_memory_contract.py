"""The memory backend against the shared contract suites, on a manual clock."""

import pytest

from sessionkv import InMemorySessionKVStore
from sessionkv.contract_tests import ManualClock, RegistryContractTests, StoreContractTests

pytestmark = pytest.mark.memory


class TestInMemoryStore(StoreContractTests, RegistryContractTests):
    @pytest.fixture
    def clock(self):
        return ManualClock()

    @pytest.fixture
    def advance_time(self, clock):
        return clock.sleep

    @pytest.fixture
    def store_factory(self, clock):
        return lambda namespace: InMemorySessionKVStore(namespace=namespace, clock=clock)
