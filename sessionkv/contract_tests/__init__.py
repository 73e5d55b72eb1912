"""The contract suite every sessionkv backend must pass, built-in or third-party.

Usage, in a test module of your own (pytest and pytest-asyncio installed)::

    import pytest
    from sessionkv.contract_tests import RegistryContractTests, StoreContractTests

    class TestMyStore(StoreContractTests, RegistryContractTests):
        @pytest.fixture
        def store_factory(self):
            return lambda namespace: MyStore(namespace=namespace)

The suite reads the store's declared :class:`~sessionkv.StoreSemantics` to size its
timing checks. For a store with an injectable clock, mix in
:class:`ManualClockFixtures` (or override the ``clock`` and ``advance_time`` fixtures)
and no test sleeps.
"""

import pytest

# Failures in the suite must show the values compared, not a bare AssertionError:
# register its modules for pytest's assertion rewriting before they are imported.
pytest.register_assert_rewrite(
    "sessionkv.contract_tests._base",
    "sessionkv.contract_tests.store",
    "sessionkv.contract_tests.registry",
)

from ._base import (  # noqa: E402
    AdvanceTime,
    Clock,
    ManualClockFixtures,
    StoreFactory,
    StoreURLFactory,
)
from .clock import ManualClock  # noqa: E402
from .registry import TRICKY_IDS, RegistryContractTests  # noqa: E402
from .store import SPECIAL_KEYS, StoreContractTests  # noqa: E402

__all__ = [
    "SPECIAL_KEYS",
    "TRICKY_IDS",
    "AdvanceTime",
    "Clock",
    "ManualClock",
    "ManualClockFixtures",
    "RegistryContractTests",
    "StoreContractTests",
    "StoreFactory",
    "StoreURLFactory",
]
