"""``sessionkv demo``: several node processes share one store and the demo narrates.

By default the store is a fresh SQLite file (``sqlite:////<tmp>/demo.db``). The demo
starts ``--nodes`` OS processes (:mod:`sessionkv.cli.demo_node`), each registering two
sessions of one call and refreshing them; an observer (this process, a registry of its
own) watches ``get_for_call``. Then the story: refreshes keep every session alive past
its TTL; the last node is killed without cleaning up, and its sessions expire; the
first node asks for a close of a session the second node hosts, which closes it; the
remaining nodes stop. Every step has a deadline: a step that does not happen fails the
demo (exit 1), so the demo doubles as a cross-process smoke test of a store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import ConfigurationError
from ..core.plugins import create_store
from ..core.registry import SessionRegistry
from ..core.urls import redact_url

CALL_ID = "demo-call"
POLL = 0.1  # how often the observer reads the call's sessions


class DemoFailed(Exception):
    """A step did not happen within its deadline."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="watch node processes share sessions on one store",
        description="Start node processes that share one store (default: a temporary "
        "SQLite file), register and refresh sessions, let one node die so its sessions "
        "expire, and have one node close another's session, printing each event.",
    )
    parser.add_argument("--url", help="a store shared across processes (default: SQLite)")
    parser.add_argument("--nodes", type=int, default=3, help="node processes (default 3)")
    parser.add_argument("--ttl", type=float, default=2.0, help="session TTL in s (default 2)")
    parser.set_defaults(run=run)


class Narrator:
    """Prints events with the time since the demo started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, who: str, text: str) -> None:
        print(f"[{self.elapsed():5.2f}s] {who:<9} {text}", flush=True)


class Observer:
    """Polls the call's sessions; prints each change; lets the demo wait on them."""

    def __init__(self, registry: SessionRegistry, narrator: Narrator) -> None:
        self.registry = registry
        self.narrator = narrator
        self.sessions: set[tuple[str, str]] = set()  # (node_id, session_id)

    async def watch(self) -> None:
        while True:
            found = {(i.node_id, i.session_id) for i in await self.registry.get_for_call(CALL_ID)}
            if found != self.sessions:
                self.sessions = found
                per_node = Counter(node for node, _ in found)
                detail = ", ".join(f"{n}: {c}" for n, c in sorted(per_node.items()))
                self.narrator.say("observer", f"sees {len(found)} session(s) ({detail or '-'})")
            await asyncio.sleep(POLL)

    async def until(
        self, predicate: Callable[[set[tuple[str, str]]], bool], within: float, what: str
    ) -> float:
        """Wait until ``predicate(sessions)`` holds; return how long it took."""
        started = time.monotonic()
        while not predicate(self.sessions):
            if time.monotonic() - started > within:
                raise DemoFailed(f"{what} did not happen within {within:g} s")
            await asyncio.sleep(POLL / 2)
        return time.monotonic() - started


class Node:
    """A node process and the task that narrates its output."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.reader: asyncio.Task[None] | None = None

    async def narrate(self, narrator: Narrator) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            narrator.say(self.name, line.decode(errors="replace").rstrip())

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()


async def _start_node(name: str, url: str, ttl: float, narrator: Narrator) -> Node:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessionkv.cli.demo_node",
        "--url", url, "--node", name, "--call", CALL_ID, "--ttl", str(ttl),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    node = Node(name, process)
    node.reader = asyncio.get_running_loop().create_task(node.narrate(narrator))
    return node


async def _story(url: str, count: int, ttl: float, narrator: Narrator) -> None:
    store = create_store(url)
    if not store.semantics.shared_across_processes:
        raise ConfigurationError(
            f"{redact_url(url)} is not shared across processes, so nodes could not see "
            "each other; use e.g. sqlite:////tmp/demo.db or redis://127.0.0.1:6379/0"
        )
    lag = store.semantics.max_lifetime(ttl)
    names = [f"node-{i}" for i in range(1, count + 1)]
    nodes: list[Node] = []
    async with SessionRegistry(store, node_id="observer", ttl=ttl) as registry:
        observer = Observer(registry, narrator)
        watcher = asyncio.get_running_loop().create_task(observer.watch())
        try:
            narrator.say("demo", f"store {redact_url(url)}, TTL {ttl:g} s, {count} nodes")
            for name in names:
                nodes.append(await _start_node(name, url, ttl, narrator))
            await observer.until(lambda s: len(s) == 2 * count, 30, "registration")
            narrator.say("demo", f"every node registered; waiting {1.5 * ttl:g} s, past the TTL")
            await asyncio.sleep(1.5 * ttl)
            if len(observer.sessions) != 2 * count:
                raise DemoFailed("refreshed sessions disappeared")
            narrator.say("demo", "all sessions outlived their TTL: the refreshes keep them alive")

            crashed = nodes[-1]
            crashed.process.kill()
            await crashed.process.wait()
            narrator.say("demo", f"{crashed.name} is killed: it will not remove its sessions")
            took = await observer.until(
                lambda s: not any(n == crashed.name for n, _ in s), lag + 5, "expiry"
            )
            narrator.say("demo", f"{crashed.name}'s sessions expired {took:.1f} s after it died")

            asker, host = nodes[0], nodes[1]
            target = f"{host.name}-s1"
            await asker.send(f"close {CALL_ID} {target}")
            took = await observer.until(lambda s: (host.name, target) not in s, 10, "the close")
            narrator.say("demo", f"{target} closed by its host {took:.1f} s after the request")

            for node in nodes[:-1]:
                await node.send("stop")
            for node in nodes[:-1]:
                await asyncio.wait_for(node.process.wait(), 10)
            await observer.until(lambda s: not s, 5, "the nodes' clean stop")
            if any(node.process.returncode for node in nodes[:-1]):
                raise DemoFailed("a node exited with an error")
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            for node in nodes:
                if node.process.returncode is None:
                    node.process.kill()
                    await node.process.wait()
                if node.reader is not None:
                    await node.reader


def run(args: argparse.Namespace) -> int:
    if args.nodes < 2:
        raise ConfigurationError("the demo needs at least 2 nodes")
    if not args.ttl > 0:
        raise ConfigurationError("--ttl must be > 0")
    tmp = None
    url = args.url
    if url is None:
        tmp = Path(tempfile.mkdtemp(prefix="sessionkv-demo-"))
        url = f"sqlite:///{tmp / 'demo.db'}"  # an absolute path: four slashes
    narrator = Narrator()
    try:
        asyncio.run(_story(url, args.nodes, args.ttl, narrator))
    except DemoFailed as exc:
        narrator.say("demo", f"FAILED: {exc}")
        return 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    narrator.say("demo", "done: every step happened as the contract says")
    return 0
