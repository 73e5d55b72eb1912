"""What the etcd JSON gateway speaks, built and read by hand: base64 keys and values
under a namespace prefix, range ends computed on bytes, and request/response bodies as
plain dicts. etcd3-py's model layer does the same with a swagger-driven walk over every
field, which costs several times etcd's own time per call; these few functions are the
hot path instead.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ..core.checks import escape_segment, prefix_upper_bound

__all__ = [
    "MAX_TXN_OPS",
    "KeyCodec",
    "chunks",
    "compare_exists",
    "compare_value",
    "delete_op",
    "put_op",
    "range_op",
    "txn",
]

T = TypeVar("T")

ROOT = b"sessionkv/"
"""Every key this backend writes starts with this, so an etcd cluster shared with other
software never mixes its keys with ours."""

MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``: a transaction with more operations is refused."""

MAX_TXN_BYTES = 1024 * 1024
"""Budget for the base64 payload of one transaction, under etcd's default 1.5 MiB
``--max-request-bytes``."""

_b64encode = base64.b64encode
_b64decode = base64.b64decode


def b64(data: bytes) -> str:
    return _b64encode(data).decode("ascii")


class KeyCodec:
    """Maps the store's ``str`` keys to etcd keys (``sessionkv/<namespace>/<key>`` as
    UTF-8 bytes, base64 on the wire) and back. The namespace is one escaped segment
    (``%`` and ``/`` escaped), so ``ns/`` is never a prefix of ``ns-b/`` or ``ns%2Fx/``."""

    __slots__ = ("_prefix", "_prefix_len")

    def __init__(self, namespace: str) -> None:
        self._prefix = ROOT + escape_segment(namespace).encode("utf-8") + b"/"
        self._prefix_len = len(self._prefix)

    def encode(self, key: str) -> str:
        """The base64 wire form of ``key`` inside the namespace."""
        return _b64encode(self._prefix + key.encode("utf-8")).decode("ascii")

    def decode(self, wire: str) -> str:
        """The store key of a base64 etcd key returned by a range in this namespace."""
        return _b64decode(wire)[self._prefix_len :].decode("utf-8")

    def prefix_range(self, prefix: str) -> tuple[str, str]:
        """``(key, range_end)`` in wire form covering every key starting with ``prefix``."""
        start = self._prefix + prefix.encode("utf-8")
        # etcd's range_end b"\x00" means "every key from here on".
        return b64(start), b64(prefix_upper_bound(start) or b"\x00")


def decode_value(kv: dict[str, Any]) -> bytes:
    """The value of a gateway ``kv``; the gateway omits an empty value's field."""
    value = kv.get("value")
    return _b64decode(value) if value else b""


def kvs(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``kvs`` of a range response (absent when nothing matched)."""
    found: list[dict[str, Any]] = response.get("kvs") or []
    return found


# -- request bodies -------------------------------------------------------------------


def put_op(key: str, value: bytes | None, lease: str) -> dict[str, Any]:
    """A put of ``value`` (``None``: keep the current value) attached to ``lease`` (an
    int64 id, kept as the decimal string the gateway returns)."""
    put: dict[str, Any] = {"key": key, "lease": lease}
    if value is None:
        put["ignore_value"] = True
    elif value:
        put["value"] = b64(value)
    return {"request_put": put}


def delete_op(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": key}}


def range_op(key: str) -> dict[str, Any]:
    return {"request_range": {"key": key}}


def compare_exists(key: str) -> dict[str, Any]:
    """True when ``key`` exists: a missing key has version 0. Checked inside the same
    transaction as the write it guards, so no delete or expiry can slip in between."""
    return {"key": key, "target": "VERSION", "result": "GREATER", "version": 0}


def compare_value(key: str, expected: bytes) -> dict[str, Any]:
    """True when ``key`` holds exactly ``expected``; etcd fails a value comparison on a
    missing key, so ``b""`` never matches a key that is not there."""
    return {"key": key, "target": "VALUE", "result": "EQUAL", "value": b64(expected)}


def succeeded(answer: dict[str, Any]) -> bool:
    """Whether a transaction took its ``success`` branch (the gateway omits ``false``)."""
    return bool(answer.get("succeeded", False))


def txn(
    success: list[dict[str, Any]], compare: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"success": success}
    if compare:
        body["compare"] = compare
    return body


def guarded(op: dict[str, Any], key: str) -> dict[str, Any]:
    """``op`` as a nested transaction that runs only if ``key`` exists: many of them fit
    in one outer transaction, each with its own condition (etcd >= 3.3)."""
    return {"request_txn": {"compare": [compare_exists(key)], "success": [op]}}


def b64_size(size: int) -> int:
    """Length of ``size`` bytes in base64."""
    return (size + 2) // 3 * 4


def put_size(key: str, value: bytes) -> int:
    """Rough wire size of a put of ``value`` to the base64 ``key``."""
    return len(key) + b64_size(len(value)) + 64


def guarded_size(key: str) -> int:
    """Rough wire size of a guarded put that keeps the value (see :func:`guarded`)."""
    return len(key) + 128


def op_size(op: dict[str, Any]) -> int:
    """Rough wire size of an operation, for splitting transactions under the byte limit."""
    put = op.get("request_put")
    if put is None:
        nested = op.get("request_txn")
        if nested is not None:
            return sum(op_size(inner) for inner in nested["success"]) + 64
        return 96
    return len(put["key"]) + len(put.get("value", "")) + 64


def chunks(items: Sequence[T], limit: int, size: Callable[[T], int]) -> Iterator[list[T]]:
    """Split ``items`` (operations, or what they are built from) into transactions of at
    most ``limit`` operations and etcd's size limit, ``size`` giving each one's rough
    wire size. For nested transactions etcd allows only ``MAX_TXN_OPS`` minus the outer
    count to each inner one, so guarded writes go ``MAX_TXN_OPS // 2`` at a time."""
    batch: list[T] = []
    size_so_far = 0
    for item in items:
        cost = size(item)
        if batch and (len(batch) == limit or size_so_far + cost > MAX_TXN_BYTES):
            yield batch
            batch, size_so_far = [], 0
        batch.append(item)
        size_so_far += cost
    if batch:
        yield batch


def last_wins(items: Iterable[tuple[str, bytes, float]]) -> list[tuple[str, bytes, float]]:
    """Drop all but the last item per key, keeping order: etcd refuses a transaction
    that writes one key twice."""
    latest: dict[str, tuple[str, bytes, float]] = {}
    for item in items:
        latest.pop(item[0], None)
        latest[item[0]] = item
    return list(latest.values())
