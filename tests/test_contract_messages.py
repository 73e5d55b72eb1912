"""A broken store run through the contract suite gets a message naming the clause it
breaks and what to fix: the suite's output is what a backend author reads first."""

import textwrap

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.memory

BROKEN_STORES = textwrap.dedent(
    """
    import dataclasses
    import fnmatch

    import pytest

    from sessionkv import InMemorySessionKVStore
    from sessionkv.contract_tests import ManualClock, RegistryContractTests, StoreContractTests


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


    class ClaimsSharingStore(InMemorySessionKVStore):
        SEMANTICS = dataclasses.replace(
            InMemorySessionKVStore.SEMANTICS, shared_across_processes=True
        )


    class OnManualClock(StoreContractTests, RegistryContractTests):
        store_class = InMemorySessionKVStore

        @pytest.fixture
        def clock(self):
            return ManualClock()

        @pytest.fixture
        def advance_time(self, clock):
            return clock.sleep

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
    result.assert_outcomes(failed=1)
    assert "declare False if it is not shared" in result.stdout.str()


def test_missing_store_factory_is_explained(run_suite) -> None:
    result = run_suite("TestNoFactory and test_set_then_get")
    result.assert_outcomes(errors=1)
    assert "must define a `store_factory` fixture" in result.stdout.str()


def test_a_correct_store_passes_the_same_selection(run_suite) -> None:
    # The harness itself is sound: the unbroken store passes what the broken ones fail.
    result = run_suite("TestCorrect and (prefix_is_literal or key_lives_for_its_ttl)")
    result.assert_outcomes(passed=2)
