"""Several nodes, one store: the pattern an agent server copies.

Each worker node is its own OS process with its own ``SessionRegistry`` on the shared
store. It registers the sessions it hosts and runs a heartbeat: refresh them (so they
outlive their TTL) and close any that another node asked to close. The parent process is
a third node, a dispatcher: it lists the call's sessions across nodes, reads their
metrics and asks for one to be closed.

Run: python examples/multi_node.py [STORE_URL]
The default URL is a SQLite file in a temporary directory (pip install "sessionkv[sqlite]");
with a Redis or etcd URL the nodes could as well run on different hosts.
"""

import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

from sessionkv import SessionRegistry, create_store

CALL = "call-7"
TTL = 5.0  # seconds a session outlives its node's last heartbeat


class AgentNode:
    """The sessions one node hosts, kept alive and closed on request."""

    def __init__(self, registry: SessionRegistry) -> None:
        self.registry = registry
        self.sessions: dict[str, str] = {}  # session_id -> call_id

    async def start_session(self, call_id: str, session_id: str) -> None:
        await self.registry.register(call_id, session_id)
        self.sessions[session_id] = call_id

    async def end_session(self, session_id: str) -> None:
        await self.registry.remove(self.sessions.pop(session_id), session_id)

    async def heartbeat_once(self) -> None:
        await self.registry.refresh(dict(self.sessions))
        for session_id in await self.registry.get_close_requests(dict(self.sessions)):
            print(f"{self.registry.node_id}: closing {session_id} as requested", flush=True)
            await self.end_session(session_id)


async def run_worker(url: str, name: str, stop: "multiprocessing.synchronize.Event") -> None:
    # Leaving the registry closes its store (pass close_store=False to share one).
    async with SessionRegistry(create_store(url), node_id=name, ttl=TTL) as registry:
        node = AgentNode(registry)
        for i in (1, 2):
            await node.start_session(CALL, f"{name}-session-{i}")
            await node.registry.update_metrics(CALL, f"{name}-session-{i}", {"rtt_ms": 20.0 * i})
        print(f"{name}: hosting {sorted(node.sessions)}", flush=True)
        while not stop.is_set():
            await node.heartbeat_once()
            await asyncio.sleep(TTL / 5)
        for session_id in list(node.sessions):  # a clean shutdown removes its sessions
            await node.end_session(session_id)
        print(f"{name}: stopped", flush=True)


def worker(url: str, name: str, stop: "multiprocessing.synchronize.Event") -> None:
    asyncio.run(run_worker(url, name, stop))


async def wait_for(registry: SessionRegistry, check, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check(await registry.get_for_call(CALL)):
        if time.monotonic() > deadline:
            raise SystemExit(f"dispatcher: gave up waiting for {what}")
        await asyncio.sleep(0.1)


async def dispatcher(url: str, stop: "multiprocessing.synchronize.Event") -> None:
    async with SessionRegistry(create_store(url), node_id="dispatcher", ttl=TTL) as registry:
        await wait_for(registry, lambda found: len(found) == 4, "4 sessions")
        for info in await registry.get_for_call(CALL):
            print(f"dispatcher: {info.session_id} on {info.node_id}, metrics {info.metrics}")
        await registry.request_close(CALL, "worker-b-session-1")
        await wait_for(
            registry,
            lambda found: "worker-b-session-1" not in {i.session_id for i in found},
            "the close",
        )
        print("dispatcher: worker-b-session-1 is gone")
        stop.set()
        await wait_for(registry, lambda found: not found, "the workers' shutdown")
        print("dispatcher: no sessions left")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{Path(tmp) / 'sessions.db'}"
        print(f"store: {url}")
        spawn = multiprocessing.get_context("spawn")  # fresh interpreters, as on other hosts
        stop = spawn.Event()
        workers = [
            spawn.Process(target=worker, args=(url, n, stop)) for n in ("worker-a", "worker-b")
        ]
        for process in workers:
            process.start()
        try:
            asyncio.run(dispatcher(url, stop))
        finally:
            stop.set()
            for process in workers:
                process.join(10)
        if any(process.exitcode != 0 for process in workers):
            raise SystemExit("a worker failed")


if __name__ == "__main__":
    main()
