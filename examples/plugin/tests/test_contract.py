import pytest
from sessionkv.contract_tests import RegistryContractTests, StoreContractTests

from sessionkv_example import JSONFileSessionKVStore


class TestJSONFileStore(StoreContractTests, RegistryContractTests):
    @pytest.fixture
    def store_factory(self, tmp_path):
        path = tmp_path / "sessions.json"
        return lambda namespace: JSONFileSessionKVStore(path, namespace=namespace)

    @pytest.fixture
    def store_url(self, tmp_path):  # the same store, for a second OS process
        return lambda namespace: f"dictfile://{tmp_path}/sessions.json?namespace={namespace}"
