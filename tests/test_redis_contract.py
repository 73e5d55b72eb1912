"""The Redis backend against the shared contract suites, on a real redis-server: two
stores of one namespace are two connections, as two nodes would have."""

from urllib.parse import quote

import pytest

from sessionkv import RedisSessionKVStore
from sessionkv.contract_tests import RegistryContractTests, StoreContractTests

pytestmark = pytest.mark.redis


class TestRedisStore(StoreContractTests, RegistryContractTests):
    @pytest.fixture
    def store_factory(self, redis_url):
        return lambda namespace: RedisSessionKVStore(url=redis_url, namespace=namespace)

    @pytest.fixture
    def store_url(self, redis_url):
        # The same server and namespace, opened by create_store in a second process.
        joiner = "&" if "?" in redis_url else "?"
        return lambda namespace: f"{redis_url}{joiner}namespace={quote(namespace, safe='')}"
