"""The contract suite every sessionkv backend must pass, built-in or third-party.

Usage, in a test module of your own (pytest and pytest-asyncio installed)::

    import pytest
    from sessionkv.contract_tests import RegistryContractTests, StoreContractTests

    class TestMyStore(StoreContractTests, RegistryContractTests):
        @pytest.fixture
        def store_factory(self):
            return lambda namespace: MyStore(namespace=namespace)

The suite reads the store's declared :class:`~sessionkv.StoreSemantics` to size its
timing checks. For a store with an injectable clock, override the ``clock`` and
``advance_time`` fixtures (see :class:`ManualClock`) and no test sleeps.
"""

from ._base import AdvanceTime, Clock, StoreFactory
from .clock import ManualClock
from .registry import TRICKY_IDS, RegistryContractTests
from .store import SPECIAL_KEYS, StoreContractTests

__all__ = [
    "SPECIAL_KEYS",
    "TRICKY_IDS",
    "AdvanceTime",
    "Clock",
    "ManualClock",
    "RegistryContractTests",
    "StoreContractTests",
    "StoreFactory",
]
