"""Value types shared by stores and the registry: store semantics and session records."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BackendSpec", "Metrics", "SessionInfo", "StoreSemantics"]

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
    max_key_bytes: int = 1024
    """Longest key, in UTF-8 bytes, the store accepts; a longer one raises
    :class:`~sessionkv.InvalidKeyError` naming this limit. It is what the server holds
    and still serves fast (huge keys slow down every range scan they sit in)."""
    max_ttl: float = math.inf
    """Longest TTL the server can apply; a longer one is lowered to this (for the
    built-ins it is centuries: "no expiry in practice")."""
    atomic_compare_and_set: bool = False
    """``compare_and_set`` checks and writes in one atomic step (no write can slip in
    between): what lets two nodes update one record without losing an update."""
    failover_renews_ttl: bool = False
    """A failover of the server (an etcd leader change) can renew a live key's TTL in
    full once more: keys alive during one then live up to
    :meth:`max_lifetime_with_failover`."""

    def __post_init__(self) -> None:
        for name in ("ttl_resolution", "min_ttl", "expiry_lag"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"StoreSemantics.{name} must be a finite number >= 0")
        if isinstance(self.max_key_bytes, bool) or not isinstance(self.max_key_bytes, int):
            raise ValueError("StoreSemantics.max_key_bytes must be an int")
        if self.max_key_bytes < 1:
            raise ValueError("StoreSemantics.max_key_bytes must be >= 1")
        if not isinstance(self.max_ttl, (int, float)) or not self.max_ttl > 0:
            raise ValueError("StoreSemantics.max_ttl must be a number > 0")

    def effective_ttl(self, ttl: float) -> float:
        """The TTL the backend really applies for a requested ``ttl``."""
        if self.ttl_resolution > 0:
            ttl = math.ceil(ttl / self.ttl_resolution - 1e-9) * self.ttl_resolution
        return min(max(ttl, self.min_ttl), self.max_ttl)

    def max_lifetime(self, ttl: float) -> float:
        """Longest a key written with ``ttl`` may stay readable."""
        return self.effective_ttl(ttl) + self.expiry_lag

    def max_lifetime_with_failover(self, ttl: float, failover: float) -> float:
        """Longest a key written with ``ttl`` may stay readable when a failover lasting
        ``failover`` seconds happens during its life: with :attr:`failover_renews_ttl`,
        one more full lifetime after the failover ends."""
        lifetime = self.max_lifetime(ttl)
        if not self.failover_renews_ttl:
            return lifetime
        return lifetime + failover + lifetime


@dataclass(frozen=True)
class BackendSpec:
    """A backend as a plugin declares it.

    ``factory`` is ``"module:StoreClass"``, imported only when a store is created;
    ``requires`` are the client libraries' top-level module names, probed without
    importing them; ``extra`` is the pip extra of ``package`` that installs them.
    ``semantics`` is the store's declaration, so tools (``sessionkv backends``, the
    README table) show it without importing the store; built-ins always carry it.
    """

    name: str
    schemes: tuple[str, ...]
    factory: str
    requires: tuple[str, ...] = ()
    extra: str | None = None
    package: str = "sessionkv"
    description: str = ""
    semantics: StoreSemantics | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("BackendSpec.name must be a non-empty str")
        if isinstance(self.schemes, str) or not self.schemes:
            raise ValueError(f"BackendSpec {self.name!r}: schemes must be a non-empty tuple")
        if ":" not in self.factory:
            raise ValueError(f"BackendSpec {self.name!r}: factory must be 'module:attribute'")
        if self.semantics is not None and not isinstance(self.semantics, StoreSemantics):
            raise ValueError(f"BackendSpec {self.name!r}: semantics must be a StoreSemantics")
        object.__setattr__(self, "schemes", tuple(s.lower() for s in self.schemes))
        object.__setattr__(self, "requires", tuple(self.requires))

    @property
    def requirement(self) -> str:
        """What to ``pip install`` for this backend's client libraries."""
        return f"{self.package}[{self.extra}]" if self.extra else self.package

    @property
    def class_name(self) -> str:
        """The store class's name (the part of ``factory`` after the colon)."""
        return self.factory.rpartition(":")[2].rpartition(".")[2]


_REQUIRED = ("session_id", "call_id", "node_id", "started_at", "metrics_updated_at")


@dataclass
class SessionInfo:
    """One session as the registry stores it. Times are Unix timestamps (seconds):
    ``metrics_updated_at`` is ``started_at`` until the first ``update_metrics``."""

    session_id: str
    call_id: str
    node_id: str
    started_at: float
    metrics_updated_at: float
    metrics: Metrics = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionInfo:
        """Build from :meth:`to_dict` output; unknown keys are ignored (newer writers),
        a missing required key or a value of the wrong kind raises :class:`TypeError`."""
        if not isinstance(data, dict):
            raise TypeError(f"SessionInfo.from_dict needs a dict, not {type(data).__name__}")
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise TypeError(f"SessionInfo.from_dict: missing required key(s) {missing}")
        info = cls(**{k: v for k, v in data.items() if k in _FIELDS})
        if info.metrics_updated_at is None:  # records written before 0.2 kept None
            info.metrics_updated_at = info.started_at
        _check_record(info)
        return info

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "call_id": self.call_id,
            "node_id": self.node_id,
            "started_at": self.started_at,
            "metrics_updated_at": self.metrics_updated_at,
            "metrics": dict(self.metrics),
        }


def _check_record(info: SessionInfo) -> None:
    for name in ("session_id", "call_id", "node_id"):
        if not isinstance(getattr(info, name), str):
            raise TypeError(f"SessionInfo.{name} must be str")
    for name in ("started_at", "metrics_updated_at"):
        value = getattr(info, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"SessionInfo.{name} must be a number")
    if not isinstance(info.metrics, dict):
        raise TypeError("SessionInfo.metrics must be a dict")


_FIELDS = frozenset(f.name for f in dataclasses.fields(SessionInfo))
