"""Soak test: many nodes, random cancellations, minutes of load; then count what broke.

Per backend, one after the other (``--minutes`` each):

- SQLite: 4 worker processes on one file, each with one store shared by its 2 node
  tasks and its checker (8 nodes in all).
- Redis, etcd: its own ``redis-server`` / single-member etcd on a free 127.0.0.1 port
  in a temporary directory; 1 worker process with 8 node tasks, each node with its own
  store (so 8 connection pools / lease pools), and a checker with its own store.

Each node (``soak_worker.py``) loops register -> update_metrics -> refresh -> hold ->
(half the time) request_close of another node's session -> get_close_requests -> remove
(5 % are abandoned to expire), with fresh ids, plus now and then a durable session (TTL
of an hour, never removed). A checker lists (``get_all``, ``get_for_call``) all along.
5 % of the operations are cancelled by a tiny ``wait_for`` timeout, and every ~3 s a
random node task is cancelled mid-flight, its store closed and the node restarted.

Only acknowledged operations (those that returned) count. After SIGTERM every worker
closes its stores and counts what they left; then this script lists once more, waits
until every ordinary session's TTL ran out, lists again and counts the leftovers (etcd
leases, Redis connections, SQLite ``integrity_check``). See docs/soak.md.

Run: ``python benchmarks/soak.py --minutes 10 [--backends sqlite,redis,etcd] [--seed N]``
(exit status 1 when an invariant failed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import collections
import contextlib
import json
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from soak_worker import DURABLE_CALL, DURABLE_PREFIX, LISTINGS

import sessionkv
from sessionkv import SessionRegistry

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "soak_worker.py")
NAMESPACE = "soak"
TTL = 5.0
"""Ordinary sessions' TTL: short, so that abandoned ones expire many times a run."""
LATE_GRACE = 5.0
"""How long after it was cancelled a write may still land (a command already sent, a
statement already running in aiosqlite's thread): the stores' default op timeout."""
OUTCOMES = ("ok", "cancelled", "killed", "hang", "cancelled-ignored", "killed-ignored")
"""What the workers log besides an exception name; "-ignored": cancel() was called on
the op, yet it ran on to the end (returned or raised) instead of raising CancelledError."""
CLOCK_SLACK = 0.05  # time.time() read before/after the op, not at the server's commit
BACKENDS = ("sqlite", "redis", "etcd")
SQLITE_PROCESSES = 4  # on one file, each with one store; the nodes are shared out
READY_CAP = 60.0
EXIT_CAP = 60.0  # a worker still running this long after SIGTERM is killed (and reported)


# -- servers -----------------------------------------------------------------------------


@dataclass
class Target:
    """Where the workers of one backend point, and what to count the leaks with."""

    name: str
    url: str
    processes: int
    shared_store: bool
    leak_port: int | None = None
    leak_path: str | None = None
    redis_url: str | None = None
    etcd: Any = None  # the contract tests' EtcdCluster, for its lease list


@contextlib.contextmanager
def backend(name: str, workdir: str) -> Iterator[Target]:
    """Start the server (none for SQLite), yield the target, stop and delete it."""
    if name == "sqlite":
        path = os.path.join(workdir, "soak.db")
        url = f"sqlite:///{path}?namespace={NAMESPACE}"
        yield Target(name, url, processes=SQLITE_PROCESSES, shared_store=True, leak_path=path)
    elif name == "redis":
        from sessionkv.contract_tests.servers.redis import start_redis

        server = start_redis()
        try:
            url = f"{server.url}?namespace={NAMESPACE}"
            yield Target(name, url, processes=1, shared_store=False, leak_port=server.port,
                         redis_url=server.url)  # fmt: skip
        finally:
            server.close()
    elif name == "etcd":
        from sessionkv.contract_tests.servers.etcd import start_etcd

        cluster = start_etcd(1)
        member = cluster.members[0]
        try:
            url = f"etcd://{member.endpoint}?namespace={NAMESPACE}"
            yield Target(name, url, processes=1, shared_store=False,
                         leak_port=member.client_port, etcd=cluster)  # fmt: skip
        finally:
            cluster.stop()
    else:
        raise ValueError(name)


# -- workers -----------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    log: str
    stderr: str
    exit_code: int | str | None = None
    exit_s: float | None = None


def launch(target: Target, args: argparse.Namespace, durable_ttl: float, logdir: str) -> list[Proc]:
    procs = []
    for k in range(target.processes):
        name = f"w{k}"
        log, err = os.path.join(logdir, f"{name}.jsonl"), os.path.join(logdir, f"{name}.err")
        command = [
            sys.executable, "-W", "default", WORKER, target.url, "--worker", name, "--log", log,
            "--nodes", str(args.nodes // target.processes), "--ttl", str(TTL),
            "--durable-ttl", str(durable_ttl), "--cancel-rate", str(args.cancel_rate),
            "--crash-every", str(args.crash_every), "--hold", str(args.hold),
            "--seed", str(args.seed * 1000 + k),
        ]  # fmt: skip
        command += ["--shared-store"] * target.shared_store + ["--sabotage"] * args.self_test
        for flag, value in (
            ("--leak-port", target.leak_port),
            ("--leak-path", target.leak_path),
            ("--redis-url", target.redis_url),
        ):
            if value is not None:
                command += [flag, str(value)]
        with open(err, "wb") as stderr:
            popen = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=stderr, text=True, stdin=subprocess.DEVNULL
            )
        procs.append(Proc(name, popen, log, err))
    return procs


def wait_ready(procs: list[Proc]) -> None:
    """Until each worker printed "ready" (or ended: its exit code tells)."""
    deadline = time.time() + READY_CAP
    for proc in procs:
        assert proc.popen.stdout is not None
        readable, _, _ = select.select([proc.popen.stdout], [], [], max(0, deadline - time.time()))
        line = proc.popen.stdout.readline() if readable else ""
        if line.strip() != "ready":
            print(f"  {proc.name} not ready: {line!r}", file=sys.stderr)


def stop_workers(procs: list[Proc]) -> float:
    """SIGTERM all, then note when each one exits; returns when the last one was gone."""
    t_term = time.time()
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
    running = list(procs)
    while running and time.time() < t_term + EXIT_CAP:
        for proc in [p for p in running if p.popen.poll() is not None]:
            proc.exit_code, proc.exit_s = proc.popen.returncode, round(time.time() - t_term, 3)
            running.remove(proc)
        time.sleep(0.01)
    for proc in running:
        proc.popen.kill()
        proc.popen.wait()
        proc.exit_code = f"still running {EXIT_CAP:g} s after SIGTERM: killed"
    for proc in procs:
        if proc.popen.stdout is not None:
            proc.popen.stdout.close()
    return time.time()


# -- history -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    t0: float
    t1: float
    outcome: str

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


@dataclass
class Session:
    call: str
    durable: bool
    register: Op | None = None
    remove: Op | None = None
    safe_until: float = 0.0
    """Surely readable until then: start of the last acked register/refresh + TTL."""
    gone_by: float = 0.0
    """End of the last write that may have set a TTL (unacked ones: + LATE_GRACE); the
    session must be gone ``max_lifetime(ttl)`` later."""
    close_requests: list[Op] = field(default_factory=list)


@dataclass
class Listing:
    who: str
    scope: str  # a call id, or "*" for get_all
    t0: float
    t1: float
    seen: set[str]  # ordinary session ids (final listings: durable ones too)
    durable: int


@dataclass
class History:
    """Every worker's log, folded into what the invariants need."""

    ttl: float
    durable_ttl: float
    sessions: dict[str, Session] = field(default_factory=dict)
    listings: list[Listing] = field(default_factory=list)
    close_checks: list[tuple[str, Op, list[str]]] = field(default_factory=list)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    by_op: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")
    crashes: int = 0
    first_t0: float = float("inf")
    last_t1: float = 0.0
    summaries: dict[str, Any] = field(default_factory=dict)

    def read(self, worker: str, path: str) -> None:
        with contextlib.suppress(FileNotFoundError), open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:  # a worker killed mid-line: its last line
                    continue
                if record[0] == "op":
                    self.add(*record[1:])
                elif record[0] == "crash":
                    self.crashes += 1
                elif record[0] == "summary":
                    self.summaries[worker] = record[1]

    def add(
        self,
        who: str,
        name: str,
        sid: str,
        call: str,
        t0: float,
        t1: float,
        outcome: str,
        extra: Any,
    ) -> None:
        op = Op(t0, t1, outcome)
        self.count(name, op)
        if name in LISTINGS:
            if op.ok:
                self.listings.append(Listing(who, call, t0, t1, set(extra[0]), extra[1]))
            return
        if not sid:
            return  # store_start / store_close
        s = self.sessions.get(sid)
        if s is None:
            s = self.sessions[sid] = Session(call, sid.startswith(DURABLE_PREFIX))
        ttl = self.durable_ttl if s.durable else self.ttl
        if name == "register":
            s.register = op
        if name in ("register", "refresh") and op.ok:
            s.safe_until = max(s.safe_until, t0 + ttl)
        if name in ("register", "update_metrics", "refresh"):
            s.gone_by = max(s.gone_by, t1 + (0.0 if op.ok else LATE_GRACE))
        elif name == "remove":
            s.remove = op
        elif name == "request_close":
            s.close_requests.append(op)
        elif name == "get_close_requests" and op.ok:
            self.close_checks.append((sid, op, extra))

    def count(self, name: str, op: Op) -> None:
        kind = op.outcome if op.outcome in OUTCOMES else "error"
        self.outcomes[kind] += 1
        self.by_op[f"{name}: {kind}"] += 1
        self.first_t0, self.last_t1 = min(self.first_t0, op.t0), max(self.last_t1, op.t1)
        if op.outcome != "ok" and op.outcome in OUTCOMES:
            return  # cancelled: its latency is the timeout we chose
        if op.outcome != "ok":
            self.errors[f"{name}: {op.outcome}"] += 1
        latency = op.t1 - op.t0
        self.latencies.append(latency)
        if latency > self.slowest[0]:
            self.slowest = (latency, name)


# -- invariants --------------------------------------------------------------------------


def lost_registers(h: History) -> list[dict[str, Any]]:
    """Sessions acked, not (yet) being removed, surely within their TTL, yet missing from
    a listing of their call that started after the ack."""
    windows = []  # (acked at, must be listed until, sid)
    for sid, s in h.sessions.items():
        if not s.durable and s.register and s.register.ok:
            until = min(s.safe_until, s.remove.t0 if s.remove else float("inf"))
            windows.append((s.register.t1, until, sid))
    windows.sort()
    active: dict[str, float] = {}  # sweep the listings in time order: few live at once
    lost, i = [], 0
    for listing in sorted(h.listings, key=lambda x: x.t0):
        while i < len(windows) and windows[i][0] < listing.t0:
            active[windows[i][2]] = windows[i][1]
            i += 1
        for sid, until in list(active.items()):
            if until <= listing.t0:
                del active[sid]
            elif (
                until > listing.t1
                and listing.scope in ("*", h.sessions[sid].call)
                and sid not in listing.seen
            ):
                lost.append(
                    {
                        "session": sid,
                        "registered": h.sessions[sid].register,
                        "listing": [listing.who, listing.scope, listing.t0, listing.t1],
                    }
                )
    return lost


def durable_deficits(h: History) -> list[dict[str, Any]]:
    """Whole-registry listings that held fewer durable sessions than were acked before
    they started (durable ids are only counted in the workers' logs)."""
    acked = sorted(
        s.register.t1 for s in h.sessions.values() if s.durable and s.register and s.register.ok
    )
    out = []
    for listing in h.listings:
        expected = bisect.bisect_left(acked, listing.t0)
        if listing.scope == "*" and listing.durable < expected:
            out.append(
                {
                    "listing": [listing.who, listing.t0],
                    "seen": listing.durable,
                    "acked_before": expected,
                }
            )
    return out


def resurrections(h: History, max_lifetime: float) -> dict[str, list[dict[str, Any]]]:
    """Sessions listed after their acked remove returned, or after their TTL (from the
    last write that could have set it) plus the store's declared expiry lag ran out."""
    found: dict[str, dict[str, dict[str, Any]]] = {
        "after_remove": {},
        "after_expiry": {},
        "late_unacked_register": {},
        "unknown_id": {},
    }
    for listing in h.listings:
        for sid in listing.seen:
            s = h.sessions.get(sid)
            where = {"session": sid, "listing": [listing.who, listing.scope, listing.t0]}
            if s is None:
                found["unknown_id"].setdefault(sid, where)
            elif s.durable:
                continue
            elif s.remove and s.remove.ok and s.remove.t1 < listing.t0:
                # An acked register ended before its remove began (one node does both in
                # turn); a register that failed or was cancelled may have landed late.
                kind = "after_remove" if s.register and s.register.ok else "late_unacked_register"
                found[kind].setdefault(sid, {**where, "removed": [s.remove.t0, s.remove.t1]})
            elif listing.t0 > s.gone_by + max_lifetime + CLOCK_SLACK:
                found["after_expiry"].setdefault(sid, {**where, "last_write": s.gone_by})
    return {kind: list(items.values()) for kind, items in found.items()}


def close_request_checks(h: History) -> dict[str, list[dict[str, Any]]]:
    """``get_close_requests`` by the owner must report a close request acked before it
    started (on a session registered before the request), while both surely live; and
    must never report a session nobody asked to close."""
    lost, spurious = [], []
    for sid, check, result in h.close_checks:
        s = h.sessions[sid]
        if sid in result and not any(r.t0 < check.t1 for r in s.close_requests):
            spurious.append({"session": sid, "checked": [check.t0, check.t1]})
        if sid in result or not (s.register and s.register.ok):
            continue
        for r in s.close_requests:
            if (
                r.ok
                and r.t1 < check.t0
                and s.register.t1 < r.t0
                and check.t1 < min(r.t0 + h.ttl, s.safe_until)
            ):
                lost.append(
                    {"session": sid, "requested": [r.t0, r.t1], "checked": [check.t0, check.t1]}
                )
                break
    return {"lost": lost, "spurious": spurious}


# -- after the run -----------------------------------------------------------------------


async def final_listing(registry: SessionRegistry, who: str) -> Listing:
    t0 = time.time()
    found = await registry.get_all()
    ids = {info.session_id for info in found}
    durable = sum(sid.startswith(DURABLE_PREFIX) for sid in ids)
    return Listing(who, "*", t0, time.time(), ids, durable)


async def final_checks(target: Target, h: History, expired_at: float) -> dict[str, Any]:
    """With every worker gone: the durable sessions must all be there; once every
    ordinary TTL ran out (``expired_at``), only durable session keys may remain."""
    store = sessionkv.create_store(target.url)
    registry = SessionRegistry(store, node_id="soak-final", ttl=TTL, close_store=False)
    try:
        first = await final_listing(registry, "final")
        await asyncio.sleep(max(0.0, expired_at - time.time()))
        second = await final_listing(registry, "final-after-ttl")
        keys = await store.keys("")
    finally:
        close_error = None
        try:
            await store.close()
        except Exception as exc:  # noqa: BLE001 - a finding to report, not to stop on
            close_error = f"{type(exc).__name__}: {exc}"
    h.listings += [first, second]
    acked = [sid for sid, s in h.sessions.items() if s.durable and s.register and s.register.ok]
    missing = sorted(sid for sid in acked if sid not in first.seen)
    leftover = [k for k in keys if not k.startswith(f"s/{DURABLE_CALL}/")]
    result: dict[str, Any] = {
        "durable_acked": len(acked),
        "durable_present": first.durable,
        "durable_missing": missing,
        "keys_at_end": len(keys),
        "keys_left_over": leftover[:20],
        "keys_left_over_count": len(leftover),
        "close_error": close_error,
    }
    result.update(await server_leaks(target))
    return result


async def server_leaks(target: Target) -> dict[str, Any]:
    if target.name == "redis":
        import redis.asyncio as aioredis

        probe = aioredis.Redis.from_url(str(target.redis_url))
        try:
            return {"redis_clients_besides_probe": len(await probe.client_list()) - 1}
        finally:
            await probe.aclose()
    if target.name == "etcd":
        return etcd_leases(target.etcd.members[0])
    con = sqlite3.connect(str(target.leak_path))
    try:
        return {"integrity_check": [row[0] for row in con.execute("PRAGMA integrity_check")]}
    finally:
        con.close()


def etcd_leases(member: Any) -> dict[str, Any]:
    """Leases etcd still holds, split by what they hold: only durable session keys are
    expected; a lease with no key, or with another key, is a leak."""
    answer = member.request("/v3/lease/leases", {}, timeout=10)
    durable_marker = f"/s/{DURABLE_CALL}/".encode()
    holding_durable, empty, other = 0, [], []
    for item in answer.get("leases", []):
        info = member.request("/v3/lease/timetolive", {"ID": item["ID"], "keys": True}, timeout=10)
        keys = [base64.b64decode(k) for k in info.get("keys", [])]
        if not keys:
            empty.append({"id": item["ID"], "ttl": info.get("TTL")})
        elif all(durable_marker in k for k in keys):
            holding_durable += 1
        else:
            other.append({"id": item["ID"], "keys": [k.decode(errors="replace") for k in keys][:3]})
    return {
        "etcd_leases_holding_durable": holding_durable,
        "etcd_leases_without_keys": empty,
        "etcd_leases_with_other_keys": other,
    }


# -- one backend -------------------------------------------------------------------------


def run_backend(name: str, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    seconds = args.minutes * 60
    durable_ttl = max(3600.0, 2 * seconds + 600)  # outlives the run and the checks after it
    logdir = os.path.join(workdir, name)
    os.makedirs(logdir)
    with backend(name, logdir) as target:
        max_lifetime = sessionkv.create_store(target.url).semantics.max_lifetime(TTL)
        print(
            f"[{time.strftime('%H:%M:%S')}] {name}: {target.processes} process(es), "
            f"{args.nodes} nodes, {seconds:g} s",
            flush=True,
        )
        procs = launch(target, args, durable_ttl, logdir)
        wait_ready(procs)
        time.sleep(seconds)
        exited = stop_workers(procs)
        h = History(TTL, durable_ttl)
        for proc in procs:
            h.read(proc.name, proc.log)
        # After the last exit no write is in flight; LATE_GRACE covers what was sent.
        expired_at = exited + LATE_GRACE + max_lifetime + 1.0
        final = asyncio.run(final_checks(target, h, expired_at))
    report = summarize(h, procs, final, max_lifetime)
    report["config"] = {
        "processes": target.processes,
        "nodes": args.nodes,
        "store_per": "process" if target.shared_store else "node",
        "seconds": seconds,
        "ttl": TTL,
        "durable_ttl": durable_ttl,
        "max_lifetime": max_lifetime,
    }
    return report


def worker_leaks(h: History, procs: list[Proc]) -> dict[str, Any]:
    """What each worker found open after closing its stores (no summary: it crashed)."""
    out: dict[str, Any] = {}
    for proc in procs:
        summary = h.summaries.get(proc.name)
        if summary is None:
            out[proc.name] = "no summary (crashed?): see " + proc.stderr
            continue
        leaks = {k: v for k, v in summary["leaks"].items() if v}
        if summary["stuck_tasks"]:
            leaks["stuck_tasks"] = summary["stuck_tasks"]
        out[proc.name] = leaks
    return out


def leak_count(workers: dict[str, Any], final: dict[str, Any]) -> int:
    n = 0
    for leaks in workers.values():
        if isinstance(leaks, str):
            n += 1
            continue
        n += sum(v if isinstance(v, int) else len(v) for v in leaks.values())
    n += int(final["keys_left_over_count"]) + int(final.get("redis_clients_besides_probe", 0))
    for kind in ("etcd_leases_without_keys", "etcd_leases_with_other_keys"):
        n += len(final.get(kind, []))
    return n + int(final.get("integrity_check", ["ok"]) != ["ok"])


def summarize(
    h: History, procs: list[Proc], final: dict[str, Any], max_lifetime: float
) -> dict[str, Any]:
    lost, deficits = lost_registers(h), durable_deficits(h)
    resurrected = resurrections(h, max_lifetime)
    closes = close_request_checks(h)
    workers = worker_leaks(h, procs)
    latencies = sorted(h.latencies) or [0.0]
    elapsed = max(h.last_t1 - h.first_t0, 1e-9)
    ops = sum(h.outcomes.values())
    acked = sum(1 for s in h.sessions.values() if s.register and s.register.ok and not s.durable)
    return {
        "ops": ops,
        "ops_per_s": round(ops / elapsed),
        "outcomes": dict(h.outcomes),
        "outcomes_by_op": dict(sorted(h.by_op.items())),
        "errors": dict(h.errors.most_common()),
        "node_restarts": h.crashes,
        "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "latency_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2),
        "latency_max_s": round(h.slowest[0], 3),
        "slowest_op": h.slowest[1],
        "registers_acked": acked,
        "removes_acked": sum(1 for s in h.sessions.values() if s.remove and s.remove.ok),
        "listings": len(h.listings),
        "close_requests_acked": sum(
            1 for s in h.sessions.values() for r in s.close_requests if r.ok
        ),
        "lost": len({x["session"] for x in lost}),
        "lost_sample": lost[:5],
        "durable_deficits": len(deficits),
        "durable_deficit_sample": deficits[:5],
        "resurrections": {k: len(v) for k, v in resurrected.items()},
        "resurrection_samples": {k: v[:5] for k, v in resurrected.items() if v},
        "close_requests_lost": len(closes["lost"]),
        "close_requests_spurious": len(closes["spurious"]),
        "close_request_samples": {k: v[:5] for k, v in closes.items() if v},
        "worker_leaks": workers,
        "final": final,
        "leaks": leak_count(workers, final),
        "exits": {
            p.name: {
                "code": p.exit_code,
                "seconds_after_sigterm": p.exit_s,
                "close_s": h.summaries.get(p.name, {}).get("close_s"),
                "stderr": stderr_head(p.stderr),
            }
            for p in procs
        },
    }


def stderr_head(path: str) -> list[str]:
    """A worker's first stderr lines (the message comes before its traceback): it runs
    with ``-W default``, so a ResourceWarning for an unclosed store or socket, or a task
    exception nobody retrieved, shows up here."""
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        lines = f.read().splitlines()
        return lines[:12] + ([f"... {len(lines)} lines in all"] if len(lines) > 12 else [])
    return []


def failures(r: dict[str, Any]) -> list[str]:
    """The invariants a run must keep; errors and late unacked registers are reported
    but are not failures (a cancelled write's outcome is unknown by definition)."""
    res = r["resurrections"]
    checks = {
        "acked registers lost": r["lost"] + r["durable_deficits"],
        "durable sessions missing at the end": len(r["final"]["durable_missing"]),
        "resurrections": res["after_remove"] + res["after_expiry"] + res["unknown_id"],
        "close requests lost or spurious": r["close_requests_lost"] + r["close_requests_spurious"],
        "leaks": r["leaks"],
        "hangs": r["outcomes"].get("hang", 0),
        "cancellations ignored": sum(
            n for kind, n in r["outcomes"].items() if kind.endswith("-ignored")
        ),
        "bad exits": sum(e["code"] != 0 for e in r["exits"].values()),
        "workers that wrote to stderr (warnings, tracebacks)": sum(
            bool(e["stderr"]) for e in r["exits"].values()
        ),
        "error closing the final store": int(r["final"]["close_error"] is not None),
    }
    return [f"{what}: {n}" for what, n in checks.items() if n]


# -- output ------------------------------------------------------------------------------


def leak_text(r: dict[str, Any]) -> str:
    f = r["final"]
    parts = [f"{r['leaks']} in all", f"keys left after the TTLs: {f['keys_left_over_count']}"]
    if "etcd_leases_holding_durable" in f:
        parts.append(
            f"leases: {len(f['etcd_leases_without_keys'])} without keys, "
            f"{len(f['etcd_leases_with_other_keys'])} with expired keys "
            f"({f['etcd_leases_holding_durable']} hold durable sessions)"
        )
    if "redis_clients_besides_probe" in f:
        in_worker = [
            w.get("redis_other_clients", 0)
            for w in r["worker_leaks"].values()
            if isinstance(w, dict)
        ]
        parts.append(
            f"CLIENT LIST: {sum(in_worker)} other clients after the worker's "
            f"close, {f['redis_clients_besides_probe']} at the end"
        )
    if "integrity_check" in f:
        parts.append(f"integrity_check {' '.join(f['integrity_check'])}")
    bad = {w: v for w, v in r["worker_leaks"].items() if v}
    parts.append(
        f"left open in workers: {bad}"
        if bad
        else "workers: no task, thread, socket or file left open after close"
    )
    return "; ".join(parts)


def table(name: str, r: dict[str, Any]) -> str:
    o, res, f = r["outcomes"], r["resurrections"], r["final"]
    errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"
    exits = r["exits"].values()
    codes = sorted({str(e["code"]) for e in exits})
    rows = [
        ("ops (nodes + checkers)", f"{r['ops']:,} ({o.get('ok', 0):,} ok)"),
        ("ops/s", f"{r['ops_per_s']:,}"),
        ("errors by type", errors),
        (
            "cancellations",
            f"{o.get('cancelled', 0):,} by a tiny timeout, {o.get('killed', 0)} "
            f"in flight in a node task cancelled ({r['node_restarts']} restarts)",
        ),
        (
            "cancellations ignored",
            f"{o.get('cancelled-ignored', 0):,} ops given a tiny timeout and "
            f"{o.get('killed-ignored', 0)} ops of a cancelled node task ran on to the end",
        ),
        (
            "op latency p50 / p99 / max",
            f"{r['latency_p50_ms']} ms / {r['latency_p99_ms']} ms / "
            f"{r['latency_max_s']} s ({r['slowest_op']})",
        ),
        (
            "acked registers lost",
            f"{r['lost']} of {r['registers_acked']:,} "
            f"(listings checked: {r['listings']:,}; durable count "
            f"short in {r['durable_deficits']})",
        ),
        (
            "durable sessions at the end",
            f"{f['durable_acked'] - len(f['durable_missing'])} "
            f"of {f['durable_acked']} acked present",
        ),
        (
            "resurrections",
            f"{res['after_remove']} after remove, {res['after_expiry']} after "
            f"expiry, {res['unknown_id']} unknown ids (not counted: "
            f"{res['late_unacked_register']} cancelled registers landed late)",
        ),
        (
            "close requests",
            f"{r['close_requests_acked']:,} acked; {r['close_requests_lost']} "
            f"lost, {r['close_requests_spurious']} spurious",
        ),
        ("leaks", leak_text(r)),
        (
            "exit",
            f"{len(exits)} process(es), exit code {'/'.join(codes)}; slowest "
            f"{max(e['seconds_after_sigterm'] for e in exits)} s after SIGTERM; "
            f"stderr: {'empty' if not any(e['stderr'] for e in exits) else 'not empty'}",
        ),
    ]
    lines = [f"### {name}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def self_test_verdict(backends: dict[str, dict[str, Any]]) -> int:
    """With ``--self-test`` every kind of injected failure must have been reported."""
    missed = []
    for name, r in backends.items():
        if "harness_error" in r:
            missed.append(f"{name}: everything (the soak itself failed)")
            continue
        res = r["resurrections"]
        detected = {
            "lost register": r["lost"],
            "durable missing": len(r["final"]["durable_missing"]),
            "resurrection after remove": res["after_remove"],
            "resurrection after expiry": res["after_expiry"],
            "spurious close request": r["close_requests_spurious"],
            "leak": r["leaks"],
        }
        print(f"self-test {name}: " + ", ".join(f"{k} {v}" for k, v in detected.items()))
        missed += [f"{name}: {k}" for k, v in detected.items() if not v]
    print("self-test: MISSED " + ", ".join(missed) if missed else "self-test: all detected")
    return 1 if missed else 0


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="of load, per backend")
    ap.add_argument("--backends", default="sqlite,redis,etcd")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nodes", type=int, default=8, help="node tasks per backend, in all")
    ap.add_argument(
        "--cancel-rate",
        type=float,
        default=0.05,
        help="fraction of ops given a tiny timeout (cancelled if slower than it)",
    )
    ap.add_argument(
        "--crash-every",
        type=float,
        default=3.0,
        help="mean seconds between node-task cancellations, per process",
    )
    ap.add_argument(
        "--hold",
        type=float,
        default=0.1,
        help="max seconds a node holds each session before removing it",
    )
    ap.add_argument("--json", help="where to write the run (default: in the work directory)")
    ap.add_argument("--keep", action="store_true", help="keep the logs and database")
    ap.add_argument(
        "--self-test",
        action="store_true",
        help="the workers break every invariant now and then: each must fail",
    )
    args = ap.parse_args()
    args.backends = [name.strip() for name in args.backends.split(",")]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        ap.error(f"unknown backend(s) {sorted(unknown)}: choose among {', '.join(BACKENDS)}")
    return args


def code_version() -> str:
    """The commit under test, and whether the working tree differs from it."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        git = ["git", "-C", here]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "../sessionkv"],
                               capture_output=True, text=True)  # fmt: skip
    except OSError:
        return "unknown"
    return commit.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def main() -> int:
    args = parse_args()
    workdir = tempfile.mkdtemp(prefix="sessionkv-soak-")
    run: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "settings": vars(args),
        "python": sys.version.split()[0],
        "code": code_version(),
        "backends": {},
    }
    failed = []
    for name in args.backends:
        try:
            report = run_backend(name, args, workdir)
        except Exception as exc:  # noqa: BLE001 - one backend's crash must not hide the others
            report = {"harness_error": f"{type(exc).__name__}: {exc}", "failures": [str(exc)]}
            print(f"{name}: the soak itself failed: {report['harness_error']}", file=sys.stderr)
        else:
            report["failures"] = failures(report)
            print("\n" + table(name, report) + "\n", flush=True)
        run["backends"][name] = report
        failed += [f"{name}: {x}" for x in report["failures"]]
    path = args.json or os.path.join(workdir, "soak.json")
    with open(path, "w") as f:
        json.dump(run, f, indent=1, default=str)
    if not args.keep:
        for name in args.backends:
            shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    print(f"run written to {path}")
    if args.self_test:
        return self_test_verdict(run["backends"])
    print("FAILED:\n  " + "\n  ".join(failed) if failed else "all invariants held")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
