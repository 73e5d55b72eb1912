"""Value types shared by stores and the registry: store semantics and session records."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Metrics", "SessionInfo", "StoreSemantics"]

Metrics = dict[str, "int | float | None"]


@dataclass(frozen=True)
class StoreSemantics:
    """What a store promises about time and sharing, declared as data.

    Users read it to pick a backend; the contract suite reads it to size its timing
    checks. Times are in seconds.
    """

    ttl_resolution: float
    """TTLs are rounded *up* to a multiple of this (0: kept as given)."""
    min_ttl: float
    """A shorter TTL is raised to this (0: any TTL > 0 is honoured)."""
    expiry_lag: float
    """Worst case a key stays readable after its (effective) TTL ran out."""
    shared_across_processes: bool
    """Two stores opened with the same configuration in two processes see one data set."""
    shared_across_hosts: bool
    """As above, for processes on different machines."""
    atomic_mset: bool
    """``mset`` applies all its items or none."""
    scan_cost: str = "O(log n + k)"
    """Cost of ``keys(prefix)`` for n stored keys and k matches, for docs and tables."""

    def __post_init__(self) -> None:
        for name in ("ttl_resolution", "min_ttl", "expiry_lag"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"StoreSemantics.{name} must be a finite number >= 0")

    def effective_ttl(self, ttl: float) -> float:
        """The TTL the backend really applies for a requested ``ttl``."""
        if self.ttl_resolution > 0:
            ttl = math.ceil(ttl / self.ttl_resolution - 1e-9) * self.ttl_resolution
        return max(ttl, self.min_ttl)

    def max_lifetime(self, ttl: float) -> float:
        """Longest a key written with ``ttl`` may stay readable."""
        return self.effective_ttl(ttl) + self.expiry_lag


_REQUIRED = ("session_id", "call_id", "node_id", "started_at", "metrics_updated_at")


@dataclass
class SessionInfo:
    """One session as the registry stores it. Times are Unix timestamps (seconds)."""

    session_id: str
    call_id: str
    node_id: str
    started_at: float
    metrics_updated_at: float | None
    metrics: Metrics = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionInfo:
        """Build from :meth:`to_dict` output; unknown keys are ignored (newer writers),
        a missing required key raises :class:`TypeError`."""
        if data.keys() == _FIELDS:  # the common case: a record this version wrote
            return cls(**data)
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise TypeError(f"SessionInfo.from_dict: missing required key(s) {missing}")
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "call_id": self.call_id,
            "node_id": self.node_id,
            "started_at": self.started_at,
            "metrics_updated_at": self.metrics_updated_at,
            "metrics": dict(self.metrics),
        }


_FIELDS = frozenset(f.name for f in dataclasses.fields(SessionInfo))
