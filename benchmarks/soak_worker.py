"""One soak worker process, started by ``soak.py``: node tasks and a checker on one store
URL until SIGTERM; then it closes its stores, counts what they left behind and exits.

Every operation is one JSON line in ``--log`` (``["op", who, name, sid, call, t0, t1,
outcome, extra]``, wall-clock times shared by every process on the host), so the parent
can check the invariants across processes after the run. ``outcome`` is ``"ok"``,
``"cancelled"`` (a tiny ``wait_for`` timeout), ``"killed"`` (its node task was
cancelled), ``"hang"`` (over 30 s) or the exception's type with its cause's.

usage: python soak_worker.py URL --worker w0 --nodes 8 --log PATH [--shared-store] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import sessionkv
from sessionkv import SessionKVStore, SessionRegistry

HANG_CAP = 30.0
"""An op still running after this is cancelled and logged as a hang."""
TINY_TIMEOUTS = (0.0, 0.0, 0.0001, 0.0003, 0.001, 0.003)
"""Timeouts of the ops picked for cancellation: 0 cancels at the op's first await (the
request may be on its way), the others mid-flight or not at all (the op was faster)."""
N_CALLS = 16  # few calls, so one call's listing holds sessions of several nodes
DURABLE_CALL = "durable"
DURABLE_PREFIX = "D"  # durable session ids start with it; nothing else does
CLOSE_RATE = 0.5  # fraction of iterations that ask another node's session to close
ABANDON_RATE = 0.05  # fraction of sessions never removed: they must expire by TTL
DURABLE_RATE = 0.05  # fraction of iterations that also register a durable session
CHECK_PAUSE = 0.2
LISTINGS = ("get_all", "get_for_call")


def error_name(exc: BaseException) -> str:
    cause = exc.__cause__
    return type(exc).__name__ + (f"<{type(cause).__name__}>" if cause is not None else "")


def listing_extra(found: list[sessionkv.SessionInfo]) -> list[Any]:
    """What a log line keeps of a listing: the ordinary session ids, and only the
    number of durable ones (thousands by the end; the parent checks them at the end)."""
    ids = [info.session_id for info in found]
    ordinary = sorted(sid for sid in ids if not sid.startswith(DURABLE_PREFIX))
    return [ordinary, len(ids) - len(ordinary)]


@dataclass
class Config:
    url: str
    worker: str
    nodes: int
    log: str
    shared_store: bool
    ttl: float
    durable_ttl: float
    cancel_rate: float
    crash_every: float
    hold: float
    seed: int
    leak_port: int | None
    leak_path: str | None
    redis_url: str | None
    sabotage: bool


@dataclass(eq=False)
class Node:
    slot: int
    node_id: str
    store: SessionKVStore
    registry: SessionRegistry
    durable: SessionRegistry
    i: int = 0
    current: tuple[str, str] | None = None  # (session_id, call_id) it holds right now
    durables: list[str] = field(default_factory=list)  # acked durable session ids
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class OpLog:
    """JSON lines, buffered: the parent reads the file after this process exited."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "w", buffering=1 << 16)  # noqa: SIM115 - closed in close()

    def write(self, record: list[Any]) -> None:
        if self._file.closed:  # an op of a killed node that ended after the summary
            return
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()


class Worker:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.log = OpLog(cfg.log)
        self.stop = asyncio.Event()
        self.nodes: dict[int, Node] = {}
        self.stores: list[SessionKVStore] = []  # every store ever opened, to close at the end
        self.shared: SessionKVStore | None = None
        self.remote_targets: list[tuple[str, str]] = []  # other processes' sessions
        self.background: list[asyncio.Task[None]] = []
        self.busy: set[str] = set()  # who is inside an op right now

    def new_store(self) -> SessionKVStore:
        if self.cfg.shared_store and self.shared is not None:
            return self.shared
        store = sessionkv.create_store(self.cfg.url)
        self.stores.append(store)
        if self.cfg.shared_store:
            self.shared = store
        return store

    async def op(
        self,
        who: str,
        name: str,
        call: Awaitable[Any],
        sid: str = "",
        call_id: str = "",
        *,
        extra: Callable[[Any], Any] | None = None,
        cancellable: bool = True,
    ) -> tuple[str, Any]:
        """Run one operation, maybe cancelled after a tiny timeout, and log it."""
        tiny = cancellable and self.rng.random() < self.cfg.cancel_rate
        task = asyncio.ensure_future(call)
        t0 = time.time()
        self.busy.add(who)
        try:
            timeout = self.rng.choice(TINY_TIMEOUTS) if tiny else HANG_CAP
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:  # our node task was cancelled (a "crash")
            accepted = task.cancel()  # False: it had just finished
            log = functools.partial(self.after_kill, who, name, sid, call_id, t0, accepted)
            task.add_done_callback(log)
            raise
        finally:
            self.busy.discard(who)
        result, outcome = None, "ok"
        if not done:
            accepted = task.cancel()
            await asyncio.wait({task}, timeout=HANG_CAP)
            outcome = "cancelled" if tiny else "hang"
            if accepted and task.done() and not task.cancelled():
                task.exception()  # retrieved: the op ran on, reported as "-ignored"
                outcome += "-ignored"
        elif task.exception() is not None:
            outcome = error_name(task.exception())  # type: ignore[arg-type]
        else:
            result = task.result()
        logged = extra(result) if extra is not None and outcome == "ok" else result
        self.write(who, name, sid, call_id, t0, outcome, logged)
        return outcome, result

    def after_kill(
        self,
        who: str,
        name: str,
        sid: str,
        call_id: str,
        t0: float,
        accepted: bool,
        task: asyncio.Future[Any],
    ) -> None:
        """Log the op of a cancelled node task once it ended: "killed", or
        "killed-ignored" when it accepted ``cancel()`` yet ran on to the end."""
        outcome = "killed"
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not print it
            outcome += "-ignored" if accepted else ""
        self.write(who, name, sid, call_id, t0, outcome, None)

    def write(
        self, who: str, name: str, sid: str, call_id: str, t0: float, outcome: str, extra: Any
    ) -> None:
        t1 = time.time()
        self.log.write(["op", who, name, sid, call_id, round(t0, 6), round(t1, 6), outcome, extra])

    # -- nodes --------------------------------------------------------------------------

    async def start_node(self, slot: int, generation: int) -> None:
        node_id = f"{self.cfg.worker}n{slot}g{generation}"
        store = self.new_store()
        node = Node(
            slot, node_id, store,
            SessionRegistry(store, node_id=node_id, ttl=self.cfg.ttl, close_store=False),
            SessionRegistry(store, node_id=node_id, ttl=self.cfg.durable_ttl, close_store=False),
        )  # fmt: skip
        await self.op(node_id, "store_start", store.start())  # may be cancelled: lazy start
        node.task = asyncio.create_task(self.node_loop(node), name=node_id)
        self.nodes[slot] = node

    async def node_loop(self, node: Node) -> None:
        rng, reg, who = self.rng, node.registry, node.node_id
        while not self.stop.is_set():
            node.i += 1
            call, sid = f"call{rng.randrange(N_CALLS)}", f"{node.node_id}-{node.i}"
            node.current = (sid, call)
            await self.op(who, "register", reg.register(call, sid), sid, call)
            metrics = {"i": node.i, "x": None}
            await self.op(who, "update_metrics", reg.update_metrics(call, sid, metrics), sid, call)
            await self.op(who, "refresh", reg.refresh({sid: call}), sid, call)
            await asyncio.sleep(rng.uniform(0, self.cfg.hold))  # others may ask to close it
            if rng.random() < CLOSE_RATE:
                await self.request_close_other(node)
            abandon = rng.random() < ABANDON_RATE
            if self.cfg.sabotage:
                abandon = await self.sabotage(node, call, sid) or abandon
            await self.op(who, "get_close_requests", reg.get_close_requests({sid: call}), sid, call)
            node.current = None
            if not abandon:
                outcome, _ = await self.op(who, "remove", reg.remove(call, sid), sid, call)
                if self.cfg.sabotage and outcome == "ok" and rng.random() < 0.03:
                    await reg.register(call, sid)  # unlogged: a resurrection after remove
            if rng.random() < DURABLE_RATE:
                dsid = f"{DURABLE_PREFIX}{sid}"
                outcome, _ = await self.op(
                    who, "register", node.durable.register(DURABLE_CALL, dsid), dsid, DURABLE_CALL
                )
                if outcome == "ok":
                    node.durables.append(dsid)

    async def sabotage(self, node: Node, call: str, sid: str) -> bool:
        """``--sabotage`` (``soak.py --self-test``): break each invariant now and then,
        behind the log's back, so the parent must report every kind of failure. Returns
        whether to abandon the session."""
        pick = self.rng.random()
        if pick < 0.03:  # a lost register: the record vanishes, and no remove comes
            await node.store.delete([f"s/{call}/{sid}"])
            return True
        if pick < 0.06:  # outlives its TTL: the same record again, with an hour's TTL
            await node.durable.register(call, sid)
            return True
        if pick < 0.09:  # a spurious close request (nobody logged asking for it)
            await node.registry.request_close(call, sid)
        elif pick < 0.10 and node.durables:  # a durable session lost
            await node.store.delete([f"s/{DURABLE_CALL}/{node.durables.pop()}"])
        return False

    async def request_close_other(self, node: Node) -> None:
        targets = [n.current for n in self.nodes.values() if n is not node and n.current]
        targets += self.remote_targets
        if targets:
            sid, call = self.rng.choice(targets)
            await self.op(
                node.node_id, "request_close", node.registry.request_close(call, sid), sid, call
            )

    async def crasher(self) -> None:
        """Cancel a random node task mid-flight now and then, close its store (when it
        has its own) and start the node again under a new id, as a node restart does."""
        generation = 0
        while not await self.stopped_within(self.rng.uniform(0.5, 1.5) * self.cfg.crash_every):
            generation += 1
            old = self.nodes[self.rng.randrange(self.cfg.nodes)]
            assert old.task is not None
            for _ in range(1000):  # nodes mostly sleep (hold): wait until it is in an op
                if old.node_id in self.busy:
                    break
                await asyncio.sleep(0.001)
            old.task.cancel()
            await asyncio.wait({old.task}, timeout=HANG_CAP)
            self.log.write(["crash", round(time.time(), 6), old.node_id])
            if not self.cfg.shared_store:
                await self.close_store(old.node_id, old.store)
            await self.start_node(old.slot, generation)

    async def close_store(self, who: str, store: SessionKVStore) -> None:
        """Close, maybe cancelled mid-way; a cancelled close is retried to the end, as a
        careful owner does, so only what close itself leaves behind counts as a leak."""
        outcome, _ = await self.op(who, "store_close", store.close())
        if outcome != "ok":
            await self.op(who, "store_close", store.close(), cancellable=False)

    async def stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        return self.stop.is_set()

    # -- checker -------------------------------------------------------------------------

    async def checker(self) -> None:
        """List concurrently with the nodes: every listing is checked by the parent."""
        store = self.new_store()
        who = f"{self.cfg.worker}-checker"
        reg = SessionRegistry(store, node_id=who, ttl=self.cfg.ttl, close_store=False)
        mine = f"{self.cfg.worker}n"
        while not await self.stopped_within(CHECK_PAUSE):
            outcome, found = await self.op(
                who, "get_all", reg.get_all(), "", "*", extra=listing_extra
            )
            if outcome == "ok":
                self.remote_targets = [
                    (info.session_id, info.call_id) for info in found
                    if not info.session_id.startswith((mine, DURABLE_PREFIX))
                ][:50]  # fmt: skip
            for _ in range(3):
                call = f"call{self.rng.randrange(N_CALLS)}"
                await self.op(
                    who, "get_for_call", reg.get_for_call(call), "", call, extra=listing_extra
                )

    # -- run and shut down ----------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        for slot in range(self.cfg.nodes):
            await self.start_node(slot, 0)
        self.background = [asyncio.create_task(self.checker(), name="checker")]
        if self.cfg.crash_every > 0:
            self.background.append(asyncio.create_task(self.crasher(), name="crasher"))
        print("ready", flush=True)
        await self.stop.wait()
        return await self.shutdown()

    async def shutdown(self) -> dict[str, Any]:
        t_stop = time.time()
        # The crasher first: a node it restarts meanwhile must be in the list below.
        _, pending = await asyncio.wait(self.background, timeout=HANG_CAP)
        tasks = [n.task for n in self.nodes.values() if n.task]
        _, pending_nodes = await asyncio.wait(tasks, timeout=HANG_CAP)
        pending |= pending_nodes
        for task in pending:  # a loop stuck past HANG_CAP: a finding, reported
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        t_close = time.time()
        for store in self.stores:
            await self.close_store("shutdown", store)
        if self.cfg.sabotage:  # a leak: a store left open
            self.stores.append(sessionkv.create_store(self.cfg.url))
            await self.stores[-1].get("leaked")
        done = time.time()
        await asyncio.sleep(0.2)  # closed transports finish in callbacks; then count
        return {
            "stuck_tasks": sorted(t.get_name() for t in pending),
            "loops_stop_s": round(t_close - t_stop, 3),
            "stores": len(self.stores),
            "close_s": round(done - t_close, 3),
            "leaks": await count_leaks(self.cfg),
        }


async def count_leaks(cfg: Config) -> dict[str, Any]:
    """What is left after every store was closed: tasks, threads, sockets to the server
    or files of the database, and (Redis) the server's other client connections."""
    tasks = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    # asyncio's default executor threads (getaddrinfo) are the loop's, not a store's.
    threads = [
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.name.startswith("asyncio_")
    ]
    leaks: dict[str, Any] = {
        "tasks": tasks,
        "threads": threads,
        "fds": open_fds(cfg.leak_port, cfg.leak_path),
    }
    if cfg.redis_url:
        import redis.asyncio as aioredis

        probe = aioredis.Redis.from_url(cfg.redis_url)
        try:
            clients = await probe.client_list()
        finally:
            await probe.aclose()
        leaks["redis_other_clients"] = len(clients) - 1  # minus this probe
    return leaks


def open_fds(port: int | None, path: str | None) -> list[str]:
    """This process's open descriptors on the database files, or its TCP sockets to the
    server's port (from /proc: Linux only)."""
    inodes: set[str] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if port is not None and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            socket_inode = link[len("socket:[") : -1] if link.startswith("socket:[") else ""
            if (path and link.startswith(path)) or socket_inode in inodes:
                found.append(link)
    return found


def parse_args(argv: list[str]) -> Config:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--worker", required=True)
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--log", required=True)
    ap.add_argument("--shared-store", action="store_true")
    ap.add_argument("--ttl", type=float, default=5.0)
    ap.add_argument("--durable-ttl", type=float, default=3600.0)
    ap.add_argument("--cancel-rate", type=float, default=0.05)
    ap.add_argument("--crash-every", type=float, default=3.0)
    ap.add_argument("--hold", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--leak-port", type=int)
    ap.add_argument("--leak-path")
    ap.add_argument("--redis-url")
    ap.add_argument("--sabotage", action="store_true")
    return Config(**vars(ap.parse_args(argv)))


async def main(argv: list[str]) -> int:
    worker = Worker(parse_args(argv))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop.set)
    try:
        summary = await worker.run()
        worker.log.write(["summary", summary])
    finally:
        worker.log.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
