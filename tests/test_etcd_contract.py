"""The etcd backend against the shared contract suites, on a real etcd member: two stores
of one namespace are two clients, as two nodes would have."""

from urllib.parse import quote

import pytest

from sessionkv import EtcdSessionKVStore
from sessionkv.contract_tests import RegistryContractTests, StoreContractTests

pytestmark = pytest.mark.etcd


class TestEtcdStore(StoreContractTests, RegistryContractTests):
    @pytest.fixture
    def store_factory(self, etcd_url):
        return lambda namespace: EtcdSessionKVStore.from_url(etcd_url, namespace=namespace)

    @pytest.fixture
    def store_url(self, etcd_url):
        # The same member and namespace, opened by create_store in a second process.
        joiner = "&" if "?" in etcd_url else "?"
        return lambda namespace: f"{etcd_url}{joiner}namespace={quote(namespace, safe='')}"
