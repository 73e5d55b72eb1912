"""The etcd backend against the shared contract suites, on a real etcd member."""

import pytest

from sessionkv import EtcdSessionKVStore
from sessionkv.contract_tests import RegistryContractTests, StoreContractTests

pytestmark = pytest.mark.etcd


class TestEtcdStore(StoreContractTests, RegistryContractTests):
    @pytest.fixture
    def store_factory(self, etcd_server):
        return lambda namespace: EtcdSessionKVStore.from_url(etcd_server.url, namespace=namespace)
