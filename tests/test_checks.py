"""The shared argument checks and key helpers of sessionkv.core.checks."""

from __future__ import annotations

import itertools

import pytest

from sessionkv import ConfigurationError, InvalidKeyError, InvalidTTLError
from sessionkv.core.checks import (
    check_key,
    check_seconds,
    check_ttl,
    escape_segment,
    prefix_upper_bound,
)


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [
        (b"", None),
        (b"\xff\xff", None),
        (b"ab", b"ac"),
        (b"a\xff", b"b"),
        (b"a\x00", b"a\x01"),
        ("a\U0010ffff".encode(), b"a\xf4\x8f\xbf\xc0"),
    ],
)
def test_prefix_upper_bound(prefix: bytes, bound: bytes | None) -> None:
    assert prefix_upper_bound(prefix) == bound


def test_prefix_upper_bound_is_above_every_extension_and_below_the_next() -> None:
    for prefix in (b"a", b"a\xfe", b"\x00", b"x\xffy"):
        bound = prefix_upper_bound(prefix)
        assert bound is not None
        for tail in (b"", b"\x00", b"\xff" * 8, b"zz"):
            assert prefix + tail < bound
        assert not bound.startswith(prefix)


def test_escaping_is_injective_and_never_yields_a_separator() -> None:
    seen: dict[str, str] = {}
    for n in range(1, 5):
        for chars in itertools.product(["a", "/", "%", "2", "F", "5"], repeat=n):
            text = "".join(chars)
            escaped = escape_segment(text)
            assert "/" not in escaped
            assert seen.setdefault(escaped, text) == text


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), 10**400])
def test_seconds_out_of_range_are_configuration_errors(value: float) -> None:
    with pytest.raises(ConfigurationError):
        check_seconds("timeout", value)
    with pytest.raises(InvalidTTLError):
        check_ttl(value)


@pytest.mark.parametrize("value", ["1", None, True])
def test_seconds_of_the_wrong_type_are_type_errors(value: object) -> None:
    with pytest.raises(TypeError):
        check_seconds("timeout", value)


def test_zero_is_allowed_only_when_asked() -> None:
    assert check_seconds("sweep_interval", 0, allow_zero=True) == 0.0
    with pytest.raises(ConfigurationError, match=">= 0"):
        check_seconds("sweep_interval", -1, allow_zero=True)


def test_key_length_counts_utf8_bytes() -> None:
    assert check_key("é" * 512, 1024) == "é" * 512
    with pytest.raises(InvalidKeyError, match=r"1025 bytes.*1024"):
        check_key("é" * 512 + "x", 1024)
    with pytest.raises(InvalidKeyError, match="lone surrogate"):
        check_key("a\udfff", 1024)
