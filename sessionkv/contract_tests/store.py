"""The store contract (README "The store contract"), as a mixin any backend's test class inherits.

Every clause is one or a few tests; timing checks read the store's declared
:class:`~sessionkv.StoreSemantics` to know how long a key must live and when it must
be gone, so coarse-TTL backends (whole-second leases) pass with honest declarations.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from collections.abc import Coroutine
from typing import Any, ClassVar

import pytest

from ..core.errors import InvalidKeyError, StoreClosedError
from ..core.store import SessionKVStore
from ..core.types import StoreSemantics
from ._base import (
    LONG_TTL,
    AdvanceTime,
    Clock,
    ContractFixtures,
    StoreFactory,
    StoreURLFactory,
    wait_past,
)
from .clock import ManualClock
from .model import run_model

__all__ = ["SPECIAL_KEYS", "StoreContractTests"]

# Characters with a meaning in glob (Redis MATCH), SQL LIKE, regex and paths, control
# characters, NUL, non-ASCII up to the highest code point, and a long key.
SPECIAL_KEYS = [
    "*",
    "?",
    "[",
    "]",
    "[a-z]",
    "\\",
    "a*b",
    "a?b",
    "%",
    "_",
    "a%b_c",
    "'; DROP TABLE t;--",
    ".*",
    "^a$",
    "(a|b)",
    "x{1,2}",
    "+",
    "/",
    "a/b",
    "/a/",
    "../up",
    "a\\b",
    "%2F",
    " ",
    "spaces in key",
    "\t\n\r",
    "\x00",
    "nul\x00inside",
    "\x7f",
    "é",
    "日本語",
    "😀",
    "\U0010ffff",
    "a\U0010ffff",
    "key:with:colons",
    "#frag",
    "?q=1&r=2",
    "k" * 1000,
]
PREFIX_CHARS = "*?[]\\%_.^$+()|{}/:\x00é\U0010ffff"


_CHILD = """
import asyncio, os, sessionkv
async def main():
    async with sessionkv.create_store(os.environ["SESSIONKV_CHILD_URL"]) as store:
        print(repr(await store.get("from-parent")))
        await store.set("from-child", b"c", 300)
asyncio.run(main())
"""


def _in_child_process(url: str) -> str:
    """What a fresh interpreter reads through ``url`` (passed by environment, never on
    a command line: it may hold a password)."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env={**os.environ, "SESSIONKV_CHILD_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return f"nothing: the child process failed ({tail[0]})"
    return done.stdout.strip()


class StoreContractTests(ContractFixtures):
    """Inherit this and define a ``store_factory`` fixture to prove a backend."""

    MODEL_RUNS: ClassVar[tuple[int, int]] = (40, 40)
    """(sequences, operations per sequence) of the model-based clause on a manual clock;
    a real clock runs a quarter of the sequences with waits of at most half a second."""

    # -- declaration ------------------------------------------------------------------

    async def test_declares_semantics(self, store: SessionKVStore) -> None:
        semantics = store.semantics  # an undeclared store already failed in start()
        if semantics.shared_across_hosts:
            assert semantics.shared_across_processes, (
                "StoreSemantics: shared_across_hosts=True implies shared_across_processes=True"
            )
        assert semantics.max_key_bytes >= 1024, (
            f"StoreSemantics.max_key_bytes={semantics.max_key_bytes}: the registry's keys "
            "need at least 1024 bytes (two ids of a few hundred characters)"
        )

    # -- model-based ------------------------------------------------------------------

    async def test_random_operation_sequences_match_the_model(
        self,
        store_factory: StoreFactory,
        namespace: str,
        clock: Clock,
        advance_time: AdvanceTime,
    ) -> None:
        # Random sequences of set / set(only_if_exists) / compare_and_set / mset / expire /
        # delete / get / mget / keys / scan / time passing, checked against a reference
        # model; a failure prints the shrunk sequence of calls (see contract_tests.model).
        sequences, steps = self.MODEL_RUNS
        manual = isinstance(clock, ManualClock)
        await asyncio.to_thread(
            run_model,
            store_factory,
            namespace,
            clock,
            advance_time,
            max_wait=3600.0 if manual else 0.5,
            max_examples=sequences if manual else max(1, sequences // 4),
            steps=steps,
        )

    # -- values and keys round-trip ---------------------------------------------------

    async def test_set_then_get(self, store: SessionKVStore) -> None:
        await store.set("k", b"v", LONG_TTL)
        assert await store.get("k") == b"v"
        assert await store.get("other") is None

    @pytest.mark.parametrize(
        "value",
        [b"", b"\x00", b"\xff\xfe", bytes(range(256)), os.urandom(256 * 1024)],
        ids=["empty", "nul", "invalid-utf8", "all-bytes", "256KiB"],
    )
    async def test_values_round_trip_exactly(self, store: SessionKVStore, value: bytes) -> None:
        await store.set("k", value, LONG_TTL)
        got = await store.get("k")
        assert type(got) is bytes and got == value
        assert await store.mget(["k"]) == [value]
        assert await store.scan("k") == [("k", value)]

    async def test_empty_value_is_present(self, store: SessionKVStore) -> None:
        await store.set("empty", b"", LONG_TTL)
        assert await store.get("empty") == b"", (
            'an empty value b"" is a present value: get() must return b"", not None '
            "(test `is None`, not falsiness, when you decode what the server returns)"
        )
        assert await store.keys("") == ["empty"]
        await store.set("empty", b"now-set", LONG_TTL, only_if_exists=True)
        assert await store.get("empty") == b"now-set"

    async def test_bytes_like_values_are_stored_as_bytes(self, store: SessionKVStore) -> None:
        await store.set("a", bytearray(b"ba"), LONG_TTL)  # type: ignore[arg-type]
        await store.set("m", memoryview(b"mv"), LONG_TTL)  # type: ignore[arg-type]
        assert await store.mget(["a", "m"]) == [b"ba", b"mv"]

    async def test_special_keys_round_trip_exactly(self, store: SessionKVStore) -> None:
        await store.mset([(key, key.encode("utf-8"), LONG_TTL) for key in SPECIAL_KEYS])
        assert await store.mget(SPECIAL_KEYS) == [key.encode("utf-8") for key in SPECIAL_KEYS], (
            "every key must be stored and read back exactly, whatever characters it holds "
            "(glob, LIKE, regex and path characters, NUL, non-ASCII): encode keys "
            "losslessly (UTF-8 bytes), never pattern-match or normalise them"
        )
        assert sorted(await store.keys("")) == sorted(SPECIAL_KEYS), (
            'keys("") must list every key of the namespace exactly as it was written'
        )
        for key in SPECIAL_KEYS:
            assert await store.get(key) == key.encode("utf-8"), (
                f"get({key!r}) must return the value written under that exact key"
            )
            assert sorted(await store.keys(key)) == sorted(
                k for k in SPECIAL_KEYS if k.startswith(key)
            ), f"keys({key!r}) must list exactly the special keys starting with it"

    async def test_keys_and_scan_are_in_code_point_order(self, store: SessionKVStore) -> None:
        await store.mset([(key, b"", LONG_TTL) for key in SPECIAL_KEYS])
        expected = sorted(SPECIAL_KEYS)
        listed = await store.keys("")
        if sorted(listed) != expected:
            return  # a different set of keys: test_special_keys_round_trip_exactly says so
        first = next(i for i, key in enumerate(listed) if key != expected[i]) if (
            listed != expected
        ) else 0
        assert listed == expected, (
            "keys() must return keys in ascending code-point order (Python's sorted() "
            f"of str; UTF-8 byte order is the same): at index {first} it returned "
            f"{listed[first]!r} where {expected[first]!r} belongs"
        )
        assert [k for k, _ in await store.scan("")] == expected, (
            "scan() must return its pairs in ascending code-point order of the keys"
        )

    # -- argument checking --------------------------------------------------------------

    @pytest.mark.parametrize("key", [b"k", 1, None, ("k",)], ids=repr)
    async def test_non_str_key_is_type_error(self, store: SessionKVStore, key: object) -> None:
        with pytest.raises(TypeError):
            await store.set(key, b"v", 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await store.get(key)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await store.mget([key])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            await store.delete([key])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            await store.expire(key, ttl=1)  # type: ignore[arg-type]

    async def test_bad_types_are_type_errors(self, store: SessionKVStore) -> None:
        for bad_call in (
            store.set("k", "text", 1),  # type: ignore[arg-type]
            store.set("k", None, 1),  # type: ignore[arg-type]
            store.set("k", b"v", "1"),  # type: ignore[arg-type]
            store.set("k", b"v", True),
            store.set("k", b"v", None),  # type: ignore[arg-type]
            store.mget("abc"),  # type: ignore[arg-type]
            store.delete("abc"),  # type: ignore[arg-type]
            store.keys(None),  # type: ignore[arg-type]
            store.scan(b"p"),  # type: ignore[arg-type]
            store.mset([("k", b"v")]),  # type: ignore[list-item]
            store.mset("kvt"),  # type: ignore[arg-type]
            store.expire("k", ttl="1"),  # type: ignore[arg-type]
        ):
            with pytest.raises(TypeError):
                await bad_call
        assert await store.keys("") == []

    @pytest.mark.parametrize("ttl", [0, -1, 0.0, -0.5, math.nan, math.inf, -math.inf], ids=repr)
    async def test_ttl_must_be_finite_and_positive(self, store: SessionKVStore, ttl: float) -> None:
        with pytest.raises(ValueError):
            await store.set("k", b"v", ttl)
        with pytest.raises(ValueError):
            await store.mset([("k", b"v", ttl)])
        with pytest.raises(ValueError):
            await store.expire("k", ttl=ttl)
        assert await store.get("k") is None

    @pytest.mark.parametrize("key", ["", "\ud800", "a\udfffb"], ids=["empty", "surrogate", "inner"])
    async def test_unstorable_key_is_value_error(self, store: SessionKVStore, key: str) -> None:
        with pytest.raises(ValueError):
            await store.set(key, b"v", 1)
        with pytest.raises(ValueError):
            await store.get(key)
        with pytest.raises(ValueError):
            await store.delete([key])

    async def test_invalid_item_rejects_the_whole_batch(self, store: SessionKVStore) -> None:
        with pytest.raises(ValueError):
            await store.mset([("good", b"v", LONG_TTL), ("", b"v", LONG_TTL)])
        with pytest.raises(TypeError):
            await store.mset([("good", b"v", LONG_TTL), ("bad", "str", LONG_TTL)])  # type: ignore[list-item]
        assert await store.get("good") is None

    # -- set, only_if_exists, mset ------------------------------------------------------

    async def test_set_overwrites(self, store: SessionKVStore) -> None:
        await store.set("k", b"one", LONG_TTL)
        await store.set("k", b"two", LONG_TTL)
        assert await store.get("k") == b"two"
        assert await store.keys("") == ["k"]

    async def test_only_if_exists_never_creates(self, store: SessionKVStore) -> None:
        await store.set("missing", b"v", LONG_TTL, only_if_exists=True)
        assert await store.get("missing") is None, (
            "set(..., only_if_exists=True) must never create a key: write only when a "
            "live key exists (e.g. Redis SET XX, SQL UPDATE ... WHERE not expired)"
        )
        assert await store.keys("") == []

    async def test_only_if_exists_writes_over_live_key(self, store: SessionKVStore) -> None:
        await store.set("k", b"old", LONG_TTL)
        await store.set("k", b"new", LONG_TTL, only_if_exists=True)
        assert await store.get("k") == b"new"

    async def test_only_if_exists_after_delete_does_not_create(self, store: SessionKVStore) -> None:
        await store.set("k", b"v", LONG_TTL)
        await store.delete(["k"])
        await store.set("k", b"again", LONG_TTL, only_if_exists=True)
        assert await store.get("k") is None

    async def test_mset_writes_every_item(self, store: SessionKVStore) -> None:
        items = [(f"k{i}", f"v{i}".encode(), LONG_TTL) for i in range(50)]
        await store.mset(items)
        assert await store.mget([k for k, _, _ in items]) == [v for _, v, _ in items]

    async def test_mset_later_item_wins(self, store: SessionKVStore) -> None:
        await store.mset([("k", b"first", LONG_TTL), ("k", b"second", LONG_TTL)])
        assert await store.get("k") == b"second"

    async def test_empty_batches_are_no_ops(self, store: SessionKVStore) -> None:
        await store.mset([])
        assert await store.mget([]) == []
        await store.delete([])
        await store.expire(ttl=1)
        assert await store.keys("") == []

    # -- get, mget ---------------------------------------------------------------------

    async def test_mget_keeps_input_order_and_duplicates(self, store: SessionKVStore) -> None:
        await store.mset([("a", b"1", LONG_TTL), ("b", b"2", LONG_TTL)])
        assert await store.mget(["b", "missing", "a", "b"]) == [b"2", None, b"1", b"2"]

    async def test_concurrent_writes_all_land(self, store: SessionKVStore) -> None:
        await asyncio.gather(*(store.set(f"c{i}", b"%d" % i, LONG_TTL) for i in range(200)))
        assert await store.mget([f"c{i}" for i in range(200)]) == [b"%d" % i for i in range(200)]

    # -- keys(prefix), scan -------------------------------------------------------------

    async def test_keys_prefix_is_literal(self, store: SessionKVStore) -> None:
        keys = [f"p{c}" for c in PREFIX_CHARS] + [f"p{c}tail" for c in PREFIX_CHARS]
        keys += ["p", "pa", "pZ", "q", "P", "p\U0010ffff\U0010ffff"]
        await store.mset([(key, b"", LONG_TTL) for key in keys])
        for prefix in ["p", "pa", "q", "nothing", *(f"p{c}" for c in PREFIX_CHARS)]:
            expected = sorted(k for k in keys if k.startswith(prefix))
            assert sorted(await store.keys(prefix)) == expected, (
                f"keys({prefix!r}) must return exactly the keys that start with {prefix!r} "
                "as a literal string: if your backend matches with glob (Redis MATCH), SQL "
                "LIKE or a regex, escape * ? [ ] \\ % _ in the prefix, or use a range "
                "query [prefix, next prefix) and filter with str.startswith"
            )

    async def test_keys_empty_prefix_lists_everything(self, store: SessionKVStore) -> None:
        keys = [f"key-{i:03d}" for i in range(300)]
        await store.mset([(key, b"x", LONG_TTL) for key in keys])
        found = await store.keys("")
        assert len(found) == len(set(found)) == 300
        assert sorted(found) == keys

    async def test_keys_prefix_equal_to_a_key_includes_it(self, store: SessionKVStore) -> None:
        await store.mset([("ab", b"", LONG_TTL), ("abc", b"", LONG_TTL), ("a", b"", LONG_TTL)])
        assert sorted(await store.keys("ab")) == ["ab", "abc"]
        assert await store.keys("abcd") == []

    async def test_keys_after_highest_code_point(self, store: SessionKVStore) -> None:
        top = "\U0010ffff"
        keys = [f"a{top}", f"a{top}{top}", f"a{top}b", "b", "az"]
        await store.mset([(key, b"", LONG_TTL) for key in keys])
        assert sorted(await store.keys(f"a{top}")) == sorted(
            k for k in keys if k.startswith(f"a{top}")
        )
        assert sorted(await store.keys("a")) == sorted(k for k in keys if k.startswith("a"))

    async def test_prefix_no_key_can_start_with_lists_nothing(self, store: SessionKVStore) -> None:
        await store.mset([("a", b"", LONG_TTL), ("a\U0010ffff", b"", LONG_TTL)])
        for prefix in ("\ud800", "a\udfff"):  # lone surrogates: no storable key holds one
            assert await store.keys(prefix) == []
            assert await store.scan(prefix) == []

    async def test_scan_matches_keys_and_mget(self, store: SessionKVStore) -> None:
        await store.mset(
            [(f"s/{i}", b"%d" % i, LONG_TTL) for i in range(20)] + [("t", b"", LONG_TTL)]
        )
        found = await store.scan("s/")
        assert sorted(found) == sorted((f"s/{i}", b"%d" % i) for i in range(20))

    async def test_deleted_keys_are_not_listed(self, store: SessionKVStore) -> None:
        await store.mset([("a1", b"", LONG_TTL), ("a2", b"", LONG_TTL)])
        await store.delete(["a1"])
        assert await store.keys("a") == ["a2"]
        assert await store.scan("a") == [("a2", b"")]

    # -- delete ---------------------------------------------------------------------------

    async def test_delete_ignores_missing_keys(self, store: SessionKVStore) -> None:
        await store.mset([("a", b"", LONG_TTL), ("b", b"", LONG_TTL)])
        await store.delete(["a", "missing", "a"])
        assert await store.mget(["a", "b"]) == [None, b""]

    # -- TTL ------------------------------------------------------------------------------

    async def test_key_lives_for_its_ttl_then_is_gone(
        self,
        store: SessionKVStore,
        short_ttl: float,
        semantics: StoreSemantics,
        clock: Clock,
        advance_time: AdvanceTime,
    ) -> None:
        started = clock()
        await store.set("k", b"v", short_ttl)
        await store.mset([("m", b"w", short_ttl)])
        written = clock()
        reads = 0
        while clock() - started < short_ttl * 0.9:
            seen = await store.mget(["k", "m"])
            answered = clock() - started
            # The store judged expiry at some moment before it answered: a value missing
            # from an answer that came back within the TTL was gone too early. (A read
            # delayed past the TTL proves nothing either way, so it is not judged.)
            if answered < short_ttl:
                assert seen == [b"v", b"w"], (
                    f"a key written with ttl={short_ttl:g} s must stay readable for its "
                    f"whole TTL, but a read answered {answered:.3f} s after the write began "
                    f"returned {seen!r}: compute the expiry as write time + ttl (rounded "
                    "up, never down) and compare it with the time of the read"
                )
                reads += 1
            await advance_time(short_ttl / 6)
        assert reads > 0, "the machine stalled for the whole TTL; no read was made in time"
        await wait_past(clock, advance_time, written, semantics.max_lifetime(short_ttl))
        late = (
            f"a key written with ttl={short_ttl:g} s must be gone after "
            f"{semantics.max_lifetime(short_ttl):g} s (effective TTL + declared expiry_lag "
            f"{semantics.expiry_lag:g} s): filter expired entries on every read, or declare "
            "the expiry lag, TTL resolution or minimum TTL your backend really has"
        )
        assert await store.get("k") is None, late
        assert await store.mget(["k", "m"]) == [None, None], late
        assert await store.keys("") == [], "keys() must not list expired keys; " + late
        assert await store.scan("") == [], "scan() must not return expired keys; " + late

    async def test_upsert_replaces_the_ttl(
        self,
        store: SessionKVStore,
        short_ttl: float,
        semantics: StoreSemantics,
        clock: Clock,
        advance_time: AdvanceTime,
    ) -> None:
        await store.set("shortened", b"", LONG_TTL)
        await store.set("lengthened", b"", short_ttl)
        await store.set("rewritten", b"", LONG_TTL)
        await store.mset([("shortened", b"s", short_ttl), ("lengthened", b"l", LONG_TTL)])
        await store.set("rewritten", b"r", short_ttl, only_if_exists=True)
        written = clock()
        await wait_past(clock, advance_time, written, semantics.max_lifetime(short_ttl))
        assert await store.mget(["shortened", "lengthened", "rewritten"]) == [None, b"l", None]

    async def test_writes_over_live_keys_never_revive_an_expired_one(
        self,
        store: SessionKVStore,
        short_ttl: float,
        semantics: StoreSemantics,
        clock: Clock,
        advance_time: AdvanceTime,
    ) -> None:
        await store.set("k", b"v", short_ttl)
        await wait_past(clock, advance_time, clock(), semantics.max_lifetime(short_ttl))
        await store.set("k", b"again", LONG_TTL, only_if_exists=True)
        assert await store.get("k") is None, "set(only_if_exists=True) revived an expired key"
        assert await store.compare_and_set("k", b"v", b"again", LONG_TTL) is False
        assert await store.get("k") is None, "compare_and_set revived an expired key"
        assert await store.keys("") == []

    async def test_expire_refreshes_live_keys_only(
        self,
        store: SessionKVStore,
        short_ttl: float,
        semantics: StoreSemantics,
        clock: Clock,
        advance_time: AdvanceTime,
    ) -> None:
        await store.mset([("kept", b"value", short_ttl), ("dropped", b"x", short_ttl)])
        written = clock()
        await store.expire("kept", "never-set", ttl=LONG_TTL)
        await wait_past(clock, advance_time, written, semantics.max_lifetime(short_ttl))
        assert await store.mget(["kept", "dropped", "never-set"]) == [b"value", None, None], (
            "expire() must give live keys the new TTL (keeping their values) and leave "
            "missing or expired keys alone"
        )
        await store.expire("dropped", "never-set", ttl=LONG_TTL)  # no resurrection
        assert await store.mget(["dropped", "never-set"]) == [None, None], (
            "expire() must never resurrect an expired or missing key: check the key is "
            "live in the same atomic step that sets its new expiry"
        )
        assert await store.keys("") == ["kept"]

    async def test_expire_can_shorten(
        self,
        store: SessionKVStore,
        short_ttl: float,
        semantics: StoreSemantics,
        clock: Clock,
        advance_time: AdvanceTime,
    ) -> None:
        await store.set("k", b"v", LONG_TTL)
        await store.expire("k", ttl=short_ttl)
        written = clock()
        assert await store.get("k") == b"v"
        await wait_past(clock, advance_time, written, semantics.max_lifetime(short_ttl))
        assert await store.get("k") is None

    async def test_expire_after_delete_does_not_resurrect(self, store: SessionKVStore) -> None:
        await store.set("k", b"v", LONG_TTL)
        await store.delete(["k"])
        await store.expire("k", ttl=LONG_TTL)
        assert await store.get("k") is None

    # -- namespaces -----------------------------------------------------------------------

    async def test_namespaces_are_isolated(
        self, store: SessionKVStore, store_factory: StoreFactory, namespace: str
    ) -> None:
        others = [store_factory(namespace + suffix) for suffix in ("-b", "/x", "*", "%")]
        try:
            await store.set("shared-name", b"mine", LONG_TTL)
            for i, other in enumerate(others):
                await other.set("shared-name", b"other%d" % i, LONG_TTL)
                await other.set("only-there", b"", LONG_TTL)
            assert await store.keys("") == ["shared-name"], (
                f"namespace {namespace!r} sees keys of namespaces {namespace!r} + "
                "'-b', '/x', '*' or '%': escape the namespace so none is a prefix or "
                "pattern of another (e.g. encode it and add a separator it cannot contain)"
            )
            assert await store.get("shared-name") == b"mine", "namespaces must not share keys"
            for i, other in enumerate(others):
                assert sorted(await other.keys("")) == ["only-there", "shared-name"]
                assert await other.get("shared-name") == b"other%d" % i
            await others[0].delete(["shared-name"])
            assert await store.get("shared-name") == b"mine"
        finally:
            for other in others:
                keys = await other.keys("")
                await other.delete(keys)
                await other.close()

    # -- sharing ------------------------------------------------------------------------

    async def test_another_process_shares_the_data_when_declared(
        self,
        store: SessionKVStore,
        semantics: StoreSemantics,
        store_url: StoreURLFactory | None,
        namespace: str,
    ) -> None:
        if not semantics.shared_across_processes:
            return  # nothing promised: the registry suite shares one store object
        assert store_url is not None, (
            f"{type(store).__name__} declares shared_across_processes=True: define a "
            "`store_url` fixture returning `lambda namespace: 'yourscheme://...'` so the "
            "suite can open the same store in a second OS process and prove it"
        )
        await store.set("from-parent", b"p", LONG_TTL)
        seen = await asyncio.to_thread(_in_child_process, store_url(namespace))
        assert seen == "b'p'", (
            "a second OS process that opened the same configuration "
            f"(create_store(store_url(namespace))) read {seen} for a key this process wrote: "
            "the store declares shared_across_processes=True, so it must see the same data "
            "(declare False if it does not)"
        )
        assert await store.get("from-child") == b"c", (
            "a key written by a second OS process is not visible here, but the store "
            "declares shared_across_processes=True"
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def test_start_and_close_are_idempotent(self, store: SessionKVStore) -> None:
        await store.start()
        await store.set("k", b"v", LONG_TTL)
        assert await store.get("k") == b"v"
        await store.close()
        await store.close()
        assert store.closed

    async def test_closed_store_raises(self, store: SessionKVStore) -> None:
        await store.close()
        for call in (
            store.set("k", b"v", 1),
            store.mset([("k", b"v", 1)]),
            store.get("k"),
            store.mget(["k"]),
            store.keys(""),
            store.scan(""),
            store.delete(["k"]),
            store.expire("k", ttl=1),
            store.start(),
        ):
            with pytest.raises(StoreClosedError):
                await call

    async def test_first_operation_starts_the_store(
        self, store_factory: StoreFactory, namespace: str
    ) -> None:
        store = store_factory(namespace + "-lazy")
        try:
            await store.set("k", b"v", LONG_TTL)
            assert await store.get("k") == b"v"
            await store.delete(["k"])
        finally:
            await store.close()

    async def test_async_with_opens_and_closes(
        self, store_factory: StoreFactory, namespace: str
    ) -> None:
        async with store_factory(namespace + "-ctx") as store:
            await store.set("k", b"v", LONG_TTL)
            assert await store.get("k") == b"v"
            await store.delete(["k"])
        assert store.closed

    async def test_close_racing_start_leaves_the_store_closed(
        self, store_factory: StoreFactory, namespace: str
    ) -> None:
        for yields in (0, 1, 2, 5, 20):
            store = store_factory(f"{namespace}-race{yields}")
            starting = asyncio.ensure_future(store.start())
            for _ in range(yields):
                await asyncio.sleep(0)
            await store.close()
            outcome = await asyncio.gather(starting, return_exceptions=True)
            assert outcome[0] is None or isinstance(outcome[0], StoreClosedError), (
                f"start() racing close() must end normally or with StoreClosedError, "
                f"not {outcome[0]!r}"
            )
            assert store.closed, "close() during a pending start() must leave the store closed"
            with pytest.raises(StoreClosedError):
                await store.set("k", b"v", LONG_TTL)  # a closed store never reopens

    async def test_operations_in_flight_during_close_end_cleanly(
        self, store_factory: StoreFactory, namespace: str
    ) -> None:
        store = store_factory(f"{namespace}-inflight")
        await store.start()
        ops: list[Coroutine[Any, Any, object]] = [
            store.set(f"k{i}", b"v", LONG_TTL) for i in range(20)
        ]
        ops += [store.get(f"k{i}") for i in range(20)]
        ops += [store.keys("k") for _ in range(5)]
        running = [asyncio.ensure_future(op) for op in ops]
        await asyncio.sleep(0)
        await store.close()
        for outcome in await asyncio.gather(*running, return_exceptions=True):
            assert not isinstance(outcome, BaseException) or isinstance(
                outcome, StoreClosedError
            ), (
                "an operation in flight when its store is closed must finish or raise "
                f"StoreClosedError ('you closed it'), not {outcome!r}: the base class maps "
                "errors raised after close() for you; do not raise past it"
            )

    async def test_cancelled_operations_leave_the_store_usable(
        self, store: SessionKVStore, semantics: StoreSemantics
    ) -> None:
        batch = [(f"b{i:03d}", b"x", LONG_TTL) for i in range(300)]
        for yields in range(0, 12, 2):
            task = asyncio.ensure_future(store.mset(batch))
            for _ in range(yields):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            found = await store.keys("b")
            if semantics.atomic_mset:
                assert len(found) in (0, len(batch)), (
                    f"a cancelled mset left {len(found)} of {len(batch)} keys, but the store "
                    "declares atomic_mset=True: all or nothing, even when cancelled"
                )
            await store.delete(found)
        await store.set("after", b"ok", LONG_TTL)
        assert await store.get("after") == b"ok", "cancelling operations broke the store"

    async def test_racing_writers_and_cancellations_keep_every_promise(
        self, store: SessionKVStore
    ) -> None:
        # Tasks race sets, compare_and_sets, expires, deletes and reads on the same few
        # keys; a third of them are cancelled after a varying number of event-loop turns.
        keys = [f"race{i}" for i in range(4)]
        written: set[bytes] = set()

        async def worker(n: int) -> None:
            for step in range(6):
                key, value = keys[(n + step) % len(keys)], b"w%d.%d" % (n, step)
                written.add(value)
                op = (n + step) % 5
                if op == 0:
                    await store.set(key, value, LONG_TTL)
                elif op == 1:
                    other = keys[n % len(keys)]
                    await store.mset([(key, value, LONG_TTL), (other, value, LONG_TTL)])
                elif op == 2:
                    await store.expire(*keys, ttl=LONG_TTL)
                elif op == 3:
                    current = await store.get(key)
                    if current is not None:
                        await store.compare_and_set(key, current, value, LONG_TTL)
                else:
                    await store.delete([key])

        tasks = [asyncio.ensure_future(worker(n)) for n in range(24)]
        doomed = tasks[::3]
        for turn, task in enumerate(doomed):
            for _ in range(turn % 7):
                await asyncio.sleep(0)
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for task, outcome in zip(tasks, outcomes, strict=True):
            if task in doomed and isinstance(outcome, asyncio.CancelledError):
                continue
            assert outcome is None, (
                f"a racing {'cancelled ' if task in doomed else ''}task ended with "
                f"{outcome!r}: concurrent operations (and cancelling one of them) must never "
                "fail another; a CancelledError in a task nobody cancelled means a shared "
                "future or connection was cancelled on behalf of someone else"
            )
        for key, value in zip(keys, await store.mget(keys), strict=True):
            assert value is None or value in written, f"{key!r} holds {value!r}, never written"
        await store.set("after-race", b"ok", LONG_TTL)
        assert await store.get("after-race") == b"ok", "the races left the store unusable"

    async def test_a_reader_never_sees_part_of_an_atomic_batch(
        self, store: SessionKVStore, semantics: StoreSemantics
    ) -> None:
        if not semantics.atomic_mset:
            return  # nothing promised
        keys = [f"batch{i:02d}" for i in range(40)]
        await store.mset([(key, b"v0", LONG_TTL) for key in keys])
        seen: list[set[bytes | None]] = []

        async def writer() -> None:
            for version in range(1, 16):
                await store.mset([(key, b"v%d" % version, LONG_TTL) for key in keys])

        async def reader() -> None:
            for _ in range(30):
                seen.append(set(await store.mget(keys)))
                seen.append({value for _, value in await store.scan("batch")})

        await asyncio.gather(writer(), reader(), reader())
        torn = [versions for versions in seen if len(versions) > 1]
        assert not torn, (
            f"{len(torn)} of {len(seen)} reads saw a batch half applied (e.g. values "
            f"{sorted(torn[0], key=repr)[:4]}), but the store declares atomic_mset=True: "
            "apply an mset in one transaction or script, or declare atomic_mset=False"
        )

    # -- compare_and_set ------------------------------------------------------------------

    async def test_compare_and_set_writes_only_over_the_expected_value(
        self, store: SessionKVStore
    ) -> None:
        await store.set("k", b"v1", LONG_TTL)
        assert await store.compare_and_set("k", b"other", b"x", LONG_TTL) is False
        assert await store.get("k") == b"v1", "compare_and_set wrote over an unexpected value"
        assert await store.compare_and_set("k", b"v1", b"v2", LONG_TTL) is True
        assert await store.get("k") == b"v2"
        assert await store.compare_and_set("missing", b"", b"x", LONG_TTL) is False
        assert await store.get("missing") is None, "compare_and_set must never create a key"
        await store.set("empty", b"", LONG_TTL)
        assert await store.compare_and_set("empty", b"", b"full", LONG_TTL) is True
        assert await store.get("empty") == b"full", 'b"" is a value compare_and_set can expect'
        await store.delete(["k"])
        assert await store.compare_and_set("k", b"v2", b"v3", LONG_TTL) is False
        assert await store.get("k") is None

    async def test_compare_and_set_sets_the_ttl(
        self,
        store: SessionKVStore,
        short_ttl: float,
        semantics: StoreSemantics,
        clock: Clock,
        advance_time: AdvanceTime,
    ) -> None:
        await store.set("k", b"v", LONG_TTL)
        assert await store.compare_and_set("k", b"v", b"w", short_ttl)
        written = clock()
        await wait_past(clock, advance_time, written, semantics.max_lifetime(short_ttl))
        assert await store.get("k") is None, "compare_and_set must give the key the new ttl"

    async def test_compare_and_set_is_atomic_when_declared(
        self, store: SessionKVStore, semantics: StoreSemantics
    ) -> None:
        if not semantics.atomic_compare_and_set:
            return  # the non-atomic default makes no promise under races
        await store.set("k", b"start", LONG_TTL)
        winners = await asyncio.gather(
            *(store.compare_and_set("k", b"start", b"w%d" % i, LONG_TTL) for i in range(16))
        )
        assert sum(winners) == 1, (
            f"{sum(winners)} of 16 racing compare_and_set calls from the same expected value "
            "succeeded, but the store declares atomic_compare_and_set=True: check and write "
            "in one atomic step (a transaction, a Lua script, a conditional UPDATE)"
        )
        winner = winners.index(True)
        assert await store.get("k") == b"w%d" % winner

    # -- key size ---------------------------------------------------------------------------

    async def test_keys_up_to_the_declared_size_work_longer_ones_are_refused(
        self, store: SessionKVStore, semantics: StoreSemantics
    ) -> None:
        limit = semantics.max_key_bytes
        longest = "é" * (limit // 2) + "k" * (limit % 2)  # exactly `limit` UTF-8 bytes
        await store.set(longest, b"v", LONG_TTL)
        assert await store.get(longest) == b"v"
        assert await store.keys(longest) == [longest]
        too_long = longest + "k"
        for call in (
            store.set(too_long, b"v", LONG_TTL),
            store.get(too_long),
            store.mset([("fine", b"v", LONG_TTL), (too_long, b"v", LONG_TTL)]),
            store.delete([too_long]),
            store.expire(too_long, ttl=LONG_TTL),
        ):
            with pytest.raises(InvalidKeyError, match=str(limit)):
                await call
        assert await store.get("fine") is None, "a batch with a refused key wrote nothing"
        assert await store.keys(too_long) == [], "no key can start with an over-long prefix"
