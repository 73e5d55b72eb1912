"""The etcd backend against the shared contract suites, on a real etcd member: two stores
of one namespace are two clients, as two nodes would have."""

from urllib.parse import quote

import pytest

from sessionkv import EtcdSessionKVStore
from sessionkv.contract_tests import RegistryContractTests, StoreContractTests

pytestmark = pytest.mark.etcd


class TestEtcdStore(StoreContractTests, RegistryContractTests):
    @pytest.fixture
    def store_factory(self, etcd_server):
        return lambda namespace: EtcdSessionKVStore.from_url(etcd_server.url, namespace=namespace)

    @pytest.fixture
    def store_url(self, etcd_server):
        # The same member and namespace, opened by create_store in a second process.
        return lambda namespace: f"{etcd_server.url}?namespace={quote(namespace, safe='')}"
