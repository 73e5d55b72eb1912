"""What the Redis, SQLite and etcd benchmarks share: the registry's JSON, built the way
``sessionkv.core.registry`` builds it, for their raw sides; and a plain rate loop.

Not a benchmark: ``python benchmarks/bench_*.py`` puts this folder on ``sys.path``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any


def encode(data: dict[str, Any]) -> bytes:
    """JSON as the registry writes it."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def session_record(call: str, session: str, node: str, registration: str | None = None) -> bytes:
    """A session record as ``register`` writes it (a fresh registration token unless
    one is given)."""
    now = time.time()
    record = {
        "session_id": session,
        "call_id": call,
        "node_id": node,
        "started_at": now,
        "metrics_updated_at": now,
        "metrics": {},
        "registration": secrets.token_hex(8) if registration is None else registration,
    }
    return encode(record)


def with_metrics(record: bytes | str, metrics: dict[str, Any]) -> bytes:
    """``record`` with new metrics, as ``update_metrics`` rewrites it."""
    data = json.loads(record)
    data["metrics"] = metrics
    data["metrics_updated_at"] = time.time()
    return encode(data)


def close_request(node: str, registration: str) -> bytes:
    """A close request as ``request_close`` writes it, naming the registration it is for."""
    return encode({"requested_by": node, "requested_at": time.time(), "registration": registration})


def close_request_for(node: str, record: bytes | str) -> bytes:
    """The close request for the session whose stored record is ``record``."""
    return close_request(node, json.loads(record)["registration"])


def asks_to_close(request: bytes | str, record: bytes | str) -> bool:
    """Whether a close request still applies to the session's current record."""
    wanted = json.loads(request).get("registration")
    return wanted is None or wanted == json.loads(record).get("registration")


async def rate(op: Callable[[], Awaitable[object]], n: int) -> float:
    """Calls per second of ``n`` sequential awaits of ``op``."""
    started = time.perf_counter()
    for _ in range(n):
        await op()
    return n / (time.perf_counter() - started)
