"""A broken store run through the contract suite gets a message naming the clause it
breaks and what to fix: the suite's output is what a backend author reads first."""

import textwrap

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.memory

BROKEN_STORES = textwrap.dedent(
    """
    import asyncio
    import dataclasses
    import fnmatch

    import pytest

    from sessionkv import InMemorySessionKVStore
    from sessionkv.contract_tests import (
        ManualClockFixtures,
        RegistryContractTests,
        StoreContractTests,
    )


    class GlobPrefixStore(InMemorySessionKVStore):
        # The Redis MATCH mistake: the prefix used as a glob pattern.
        async def _scan(self, prefix):
            everything = await super()._scan("")
            return [(k, v) for k, v in everything if fnmatch.fnmatchcase(k, prefix + "*")]

        async def _keys(self, prefix):
            return [k for k, _ in await self._scan(prefix)]


    class UndeclaredStore(InMemorySessionKVStore):
        SEMANTICS = None


    class NeverExpiresStore(InMemorySessionKVStore):
        async def _get(self, key):
            entry = self._entries.get(key)
            return None if entry is None else entry[0]

        async def _mget(self, keys):
            return [await self._get(key) for key in keys]


    class DescendingKeysStore(InMemorySessionKVStore):
        async def _keys(self, prefix):
            return sorted(await super()._keys(prefix), reverse=True)


    class ExpiresEarlyStore(InMemorySessionKVStore):
        async def _set(self, key, value, ttl, only_if_exists):
            await super()._set(key, value, ttl / 2, only_if_exists)

        async def _mset(self, items):
            await super()._mset([(k, v, t / 2) for k, v, t in items])


    class RacyCompareAndSetStore(InMemorySessionKVStore):
        # Claims atomicity but reads, yields (as a network round trip would), then writes.
        SEMANTICS = dataclasses.replace(
            InMemorySessionKVStore.SEMANTICS, atomic_compare_and_set=True
        )

        async def _compare_and_set(self, key, expected, value, ttl):
            if await self._get(key) != expected:
                return False
            await asyncio.sleep(0)
            await self._set(key, value, ttl, True)
            return True


    class ClaimsSharingStore(InMemorySessionKVStore):
        SEMANTICS = dataclasses.replace(
            InMemorySessionKVStore.SEMANTICS, shared_across_processes=True
        )


    class OnManualClock(ManualClockFixtures, StoreContractTests, RegistryContractTests):
        store_class = InMemorySessionKVStore

        @pytest.fixture
        def store_factory(self, clock):
            return lambda namespace: self.store_class(namespace=namespace, clock=clock)


    class TestGlob(OnManualClock):
        store_class = GlobPrefixStore


    class TestUndeclared(OnManualClock):
        store_class = UndeclaredStore


    class TestNeverExpires(OnManualClock):
        store_class = NeverExpiresStore


    class TestClaimsSharing(OnManualClock):
        store_class = ClaimsSharingStore


    class TestClaimsSharingAcrossProcesses(OnManualClock):
        store_class = ClaimsSharingStore

        @pytest.fixture
        def store_url(self):
            return lambda namespace: f"memory://?namespace={namespace}"


    class TornBatchStore(InMemorySessionKVStore):
        # Declares atomic_mset (the memory default) but yields between items.
        async def _mset(self, items):
            for key, value, ttl in items:
                await self._set(key, value, ttl, False)
                await asyncio.sleep(0)


    class TestTornBatch(OnManualClock):
        store_class = TornBatchStore


    class TestDescending(OnManualClock):
        store_class = DescendingKeysStore


    class TestExpiresEarly(OnManualClock):
        store_class = ExpiresEarlyStore


    class TestRacyCompareAndSet(OnManualClock):
        store_class = RacyCompareAndSetStore


    class SlowReadsStore(InMemorySessionKVStore):
        # A correct store whose reads take 150 ms to come back (a loaded machine, a GC
        # pause): the outside review's D3 made the TTL clause fail it.
        async def _mget(self, keys):
            await asyncio.sleep(0.15)
            return await super()._mget(keys)


    class TestSlowReadsOnRealClock(StoreContractTests):
        @pytest.fixture
        def store_factory(self):
            return lambda namespace: SlowReadsStore(namespace=namespace)


    class TestCorrect(OnManualClock):
        pass


    class TestNoFactory(StoreContractTests):
        pass
    """
)


@pytest.fixture
def run_suite(pytester: pytest.Pytester):
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_broken=BROKEN_STORES)

    def run(selection: str) -> pytest.RunResult:
        return pytester.runpytest("-p", "sessionkv.contract_tests.pytest_plugin", "-k", selection)

    return run


def test_glob_prefix_is_told_to_match_literally(run_suite) -> None:
    result = run_suite("TestGlob and (prefix_is_literal or special_keys or never_leak)")
    result.assert_outcomes(failed=3)
    output = result.stdout.str()
    assert "must return exactly the keys that start with" in output
    assert "as a literal string" in output and "escape * ? [ ]" in output
    assert "other calls leak in when the store matches the prefix as a pattern" in output


def test_store_without_semantics_is_told_to_declare_them(run_suite) -> None:
    result = run_suite("TestUndeclared and test_set_then_get")
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert "UndeclaredStore declares no semantics" in output
    assert "SEMANTICS = StoreSemantics(...)" in output


def test_store_that_keeps_expired_keys_is_told_the_deadline(run_suite) -> None:
    result = run_suite("TestNeverExpires and key_lives_for_its_ttl")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "must be gone after 0.6 s" in output
    assert "filter expired entries on every read" in output


def test_store_that_claims_sharing_is_told_to_declare_honestly(run_suite) -> None:
    result = run_suite("TestClaimsSharing and session_is_visible_to_other_node")
    result.assert_outcomes(failed=2)  # with and without a store_url
    assert "declare False if it is not shared" in result.stdout.str()


def test_a_false_sharing_claim_is_caught_from_a_second_process(run_suite) -> None:
    # NEWCOMER.md 5: a one-process store declaring shared_across_processes=True passed.
    result = run_suite("TestClaimsSharing and another_process_shares")
    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    assert "define a `store_url` fixture" in output  # no URL: told how to let it check
    assert "a second OS process that opened the same configuration" in output


def test_missing_store_factory_is_explained(run_suite) -> None:
    result = run_suite("TestNoFactory and test_set_then_get")
    result.assert_outcomes(errors=1)
    assert "must define a `store_factory` fixture" in result.stdout.str()


def test_keys_out_of_order_blame_the_order_not_the_keys(run_suite) -> None:
    result = run_suite("TestDescending and (code_point_order or special_keys_round_trip)")
    result.assert_outcomes(failed=1, passed=1)
    output = result.stdout.str()
    assert "test_keys_and_scan_are_in_code_point_order FAILED" in output or (
        "FAILED test_broken.py::TestDescending::test_keys_and_scan_are_in_code_point_order"
        in output
    )
    assert "ascending code-point order" in output


def test_early_expiry_names_the_ttl_and_the_read(run_suite) -> None:
    result = run_suite("TestExpiresEarly and key_lives_for_its_ttl")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "must stay readable for its whole TTL" in output
    assert "rounded up, never down" in output


def test_a_false_atomicity_claim_is_caught(run_suite) -> None:
    result = run_suite("TestRacyCompareAndSet and compare_and_set_is_atomic")
    result.assert_outcomes(failed=1)
    assert "declares atomic_compare_and_set=True" in result.stdout.str()


def test_a_batch_seen_half_applied_is_caught(run_suite) -> None:
    result = run_suite("TestTornBatch and never_sees_part_of_an_atomic_batch")
    result.assert_outcomes(failed=1)
    assert "but the store declares atomic_mset=True" in result.stdout.str()


def test_a_bare_assertion_shows_the_values(run_suite) -> None:
    # The suite is registered for assertion rewriting: even an assert without a message
    # shows what was compared.
    result = run_suite("TestNeverExpires and writes_over_live_keys_never_revive")
    result.assert_outcomes(failed=1)
    assert "assert b'v' is None" in result.stdout.str()


def test_slow_reads_of_a_correct_store_are_not_blamed(run_suite) -> None:
    result = run_suite("TestSlowReadsOnRealClock and key_lives_for_its_ttl")
    result.assert_outcomes(passed=1)


def test_a_correct_store_passes_the_same_selection(run_suite) -> None:
    # The harness itself is sound: the unbroken store passes what the broken ones fail.
    result = run_suite(
        "TestCorrect and (prefix_is_literal or key_lives_for_its_ttl or code_point_order "
        "or compare_and_set_is_atomic or special_keys_round_trip or atomic_batch)"
    )
    result.assert_outcomes(passed=6)
