"""Model-based clause of the store contract: random sequences of operations, checked
against a reference model (hypothesis' stateful testing).

The model knows, for every key, the states the store may be in. On a manual clock it is
exact: a key written with ``ttl`` at ``t`` is live until ``t + ttl`` (the store may round
the TTL up within its declaration, so the model keeps both ends). On a real clock each
operation is bracketed by the clock before and after it, and a key may be live or gone
only inside ``[write start + ttl, write end + max_lifetime(ttl)]``, exactly the window the
store's :class:`~sessionkv.StoreSemantics` declares. Where an answer could go either way,
the model keeps every possibility and the next observation narrows them. A failure
prints the shrunk sequence of calls that breaks the promise.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from ..core.store import SessionKVStore
from ..core.types import StoreSemantics
from ._base import AdvanceTime, Clock, StoreFactory

__all__ = ["run_model"]

_T = TypeVar("_T")

KEYS = ["a", "ab", "a/b", "b", "%", "*", "\x00", "é", "\U0010ffff", "a\U0010ffff"]
"""Few keys, so operations collide; prefixes of each other and glob/LIKE characters."""
PREFIXES = ["", "a", "ab", "b", "%", "*", "\x00", "é", "\U0010ffff", "zz"]
_MAX_ALTERNATIVES = 16


@dataclass(frozen=True)
class Entry:
    """A live value whose expiry lies somewhere in ``[lo, hi]`` (model time)."""

    value: bytes
    lo: float
    hi: float


State = Entry | None
"""One possible state of a key: live with a value, or absent."""


class KeyModel:
    """Every state one key may be in; an observation keeps those that explain it."""

    def __init__(self) -> None:
        self.states: list[State] = [None]

    def possible(self, t0: float, t1: float) -> list[bytes | None]:
        """What a read made during ``[t0, t1]`` may return."""
        seen: list[bytes | None] = []
        for state in self.states:
            if state is None:
                seen.append(None)
                continue
            if t0 < state.hi:
                seen.append(state.value)
            if t1 >= state.lo:
                seen.append(None)
        return seen

    def observe(self, got: bytes | None, t0: float, t1: float) -> bool:
        """Narrow to the states that explain reading ``got``; False if none does."""
        kept: list[State] = []
        for state in self.states:
            if got is None and (state is None or t1 >= state.lo):
                kept.append(None)
            elif state is not None and got == state.value and t0 < state.hi:
                kept.append(state)
        if not kept:
            return False
        self.states = _unique(kept)
        return True

    def write_if_live(
        self, make: Callable[[Entry], State], t0: float, t1: float, wrote: bool | None = None
    ) -> bool:
        """Apply a write that lands only on a live key (``only_if_exists``, ``expire``,
        ``compare_and_set`` via ``make`` returning None when it would not write).
        ``wrote``, when the store reported it, narrows the possibilities."""
        after: list[State] = []
        for state in self.states:
            new = None if state is None else make(state)
            may_write = new is not None and t0 < state.hi  # type: ignore[union-attr]
            may_skip = new is None or t1 >= state.lo  # type: ignore[union-attr]
            if may_write and wrote is not False:
                after.append(new)
            if may_skip and wrote is not True:
                # Not written: unchanged if the write did not apply to it (a value other
                # than `expected`), otherwise because the key had expired.
                after.append(state if new is None else None)
        if not after:
            return False
        self.states = _unique(after)
        return True


def _unique(states: list[State]) -> list[State]:
    unique = list(dict.fromkeys(states))
    if len(unique) > _MAX_ALTERNATIVES:  # keep the model small: forget the oldest
        unique = unique[-_MAX_ALTERNATIVES:]
    return unique


class Bridge:
    """Runs the store on an event loop of its own in the machine's thread: hypothesis'
    rules are synchronous, the store is not."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Awaitable[_T]) -> _T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.close()


def run_model(
    store_factory: StoreFactory,
    namespace: str,
    clock: Clock,
    advance_time: AdvanceTime,
    *,
    max_wait: float,
    max_examples: int,
    steps: int,
) -> None:
    """Run the state machine (blocking: call it in a thread of its own). ``max_wait``
    caps one wait of the model's time (seconds; keeps real-clock runs short)."""
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import run_state_machine_as_test

    machine = _machine_class(store_factory, namespace, clock, advance_time, max_wait)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


_KEYS = st.sampled_from(KEYS)
_VALUES = st.binary(max_size=6)
_TTL_UNITS = st.sampled_from([1, 2, 4, 1000])  # in units of the shortest useful TTL
_WAITS = st.sampled_from([0.0, 0.5, 1.0, 2.5])  # in the same units


class StoreMachine(RuleBasedStateMachine):  # type: ignore[misc, unused-ignore]
    """A store and its model, driven by random operations. :func:`run_model` makes a
    subclass that sets the configuration below."""

    store_factory: Callable[[str], SessionKVStore]
    namespace: str
    clock: Clock
    advance_time: AdvanceTime
    max_wait: float
    runs: Iterator[int]

    def __init__(self) -> None:
        super().__init__()
        self.bridge = Bridge()
        self.store: SessionKVStore = self.store_factory(f"{self.namespace}-m{next(self.runs)}")
        self.bridge.run(self.store.start())
        self.semantics: StoreSemantics = self.store.semantics
        self.unit = self.semantics.effective_ttl(max(0.3, self.semantics.min_ttl))
        self.model: dict[str, KeyModel] = {key: KeyModel() for key in KEYS}

    # -- helpers ---------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, _T]) -> tuple[_T, float, float]:
        t0 = self.clock()
        result = self.bridge.run(coro)
        return result, t0, self.clock()

    def entry(self, value: bytes, ttl: float, t0: float, t1: float) -> Entry:
        # Readable at least `ttl` after the call began, never later than the
        # declared lifetime after it ended.
        return Entry(value, t0 + ttl, t1 + self.semantics.max_lifetime(ttl))

    def check_read(self, key: str, got: bytes | None, t0: float, t1: float) -> None:
        possible = self.model[key].possible(t0, t1)
        assert self.model[key].observe(got, t0, t1), (
            f"get({key!r}) returned {got!r}, but the store's contract allows only "
            f"{sorted(set(possible), key=repr)} here (TTL at least as given, gone by "
            f"max_lifetime = effective TTL + expiry_lag {self.semantics.expiry_lag:g} s)"
        )

    # -- rules: every store operation -------------------------------------------

    @rule(key=_KEYS, value=_VALUES, units=_TTL_UNITS)
    def set(self, key: str, value: bytes, units: int) -> None:
        ttl = units * self.unit
        _, t0, t1 = self.call(self.store.set(key, value, ttl))
        self.model[key].states = [self.entry(value, ttl, t0, t1)]

    @rule(key=_KEYS, value=_VALUES, units=_TTL_UNITS)
    def set_only_if_exists(self, key: str, value: bytes, units: int) -> None:
        ttl = units * self.unit
        _, t0, t1 = self.call(self.store.set(key, value, ttl, only_if_exists=True))
        self.model[key].write_if_live(lambda old: self.entry(value, ttl, t0, t1), t0, t1)

    @rule(key=_KEYS, value=_VALUES, units=_TTL_UNITS, expect_current=st.booleans())
    def compare_and_set(self, key: str, value: bytes, units: int, expect_current: bool) -> None:
        states = [s for s in self.model[key].states if s is not None]
        expected = states[0].value if states and expect_current else b"\xffnever"
        ttl = units * self.unit
        wrote, t0, t1 = self.call(self.store.compare_and_set(key, expected, value, ttl))
        ok = self.model[key].write_if_live(
            lambda old: self.entry(value, ttl, t0, t1) if old.value == expected else None,
            t0,
            t1,
            wrote,
        )
        assert ok, (
            f"compare_and_set({key!r}, {expected!r}, ...) returned {wrote}, but the key "
            "could not have held that value live then: True only if it wrote over a "
            "live key holding exactly `expected`"
        )

    @rule(items=st.lists(st.tuples(_KEYS, _VALUES, _TTL_UNITS), min_size=1, max_size=4))
    def mset(self, items: list[tuple[str, bytes, int]]) -> None:
        batch = [(key, value, units * self.unit) for key, value, units in items]
        _, t0, t1 = self.call(self.store.mset(batch))
        for key, value, ttl in batch:  # a later item wins
            self.model[key].states = [self.entry(value, ttl, t0, t1)]

    @rule(chosen=st.lists(_KEYS, min_size=1, max_size=3), units=_TTL_UNITS)
    def expire(self, chosen: list[str], units: int) -> None:
        ttl = units * self.unit
        _, t0, t1 = self.call(self.store.expire(*chosen, ttl=ttl))
        for key in dict.fromkeys(chosen):
            self.model[key].write_if_live(
                lambda old: self.entry(old.value, ttl, t0, t1), t0, t1
            )

    @rule(chosen=st.lists(_KEYS, max_size=3))
    def delete(self, chosen: list[str]) -> None:
        self.call(self.store.delete(chosen))
        for key in chosen:
            self.model[key].states = [None]

    @rule(key=_KEYS)
    def get(self, key: str) -> None:
        got, t0, t1 = self.call(self.store.get(key))
        self.check_read(key, got, t0, t1)

    @rule(chosen=st.lists(_KEYS, max_size=4))
    def mget(self, chosen: list[str]) -> None:
        got, t0, t1 = self.call(self.store.mget(chosen))
        assert len(got) == len(chosen), "mget returns one answer per key, in input order"
        for key, value in zip(chosen, got, strict=True):
            self.check_read(key, value, t0, t1)

    @rule(prefix=st.sampled_from(PREFIXES), with_values=st.booleans())
    def scan(self, prefix: str, with_values: bool) -> None:
        pairs: list[tuple[str, bytes | None]]
        if with_values:
            scanned, t0, t1 = self.call(self.store.scan(prefix))
            pairs = list(scanned)
        else:
            listed, t0, t1 = self.call(self.store.keys(prefix))
            pairs = [(key, None) for key in listed]
        found = [key for key, _ in pairs]
        assert found == sorted(found), f"keys({prefix!r}) out of code-point order: {found}"
        unknown = [key for key in found if key not in self.model or not key.startswith(prefix)]
        assert not unknown, f"keys({prefix!r}) listed {unknown}: not live keys under it"
        by_key = dict(pairs)
        for key in KEYS:
            if not key.startswith(prefix):
                continue
            model = self.model[key]
            if key not in by_key:
                assert model.observe(None, t0, t1), (
                    f"keys({prefix!r}) left out {key!r}, which was surely live"
                )
            elif with_values:
                self.check_read(key, by_key[key], t0, t1)
            else:
                live: list[State] = [s for s in model.states if s is not None and t0 < s.hi]
                assert live, f"keys({prefix!r}) listed {key!r}, which was surely gone"
                model.states = live

    @rule(units=_WAITS)
    def time_passes(self, units: float) -> None:
        if units:
            self.bridge.run(self.advance_time(min(units * self.unit, self.max_wait)))

    def teardown(self) -> None:
        try:
            leftover = self.bridge.run(self.store.keys(""))
            self.bridge.run(self.store.delete(leftover))
        finally:
            self.bridge.run(self.store.close())
            self.bridge.close()


def _machine_class(
    store_factory: StoreFactory,
    namespace: str,
    clock: Clock,
    advance_time: AdvanceTime,
    max_wait: float,
) -> type:
    config = {
        "store_factory": staticmethod(store_factory),
        "namespace": namespace,
        "clock": staticmethod(clock),
        "advance_time": staticmethod(advance_time),
        "max_wait": max_wait,
        "runs": itertools.count(),
    }
    return type("StoreMachine", (StoreMachine,), config)
