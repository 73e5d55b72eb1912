"""One node of ``sessionkv demo``, run as its own OS process by the demo.

It registers its sessions on the shared store, refreshes them every quarter TTL,
closes (removes) any of them another node asked to close, and obeys commands on
stdin: ``close CALL SESSION`` asks for a close, ``stop`` (or end of input) removes its
sessions and exits. Each line it prints is one event; the demo timestamps them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections.abc import Sequence

from ..core.plugins import create_store
from ..core.registry import SessionRegistry


def emit(text: str) -> None:
    print(text, flush=True)


def _read_commands(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str]) -> None:
    # stdin is read in a thread: portable, and the event loop never blocks on it.
    for line in sys.stdin:
        loop.call_soon_threadsafe(queue.put_nowait, line.strip())
    loop.call_soon_threadsafe(queue.put_nowait, "stop")


async def run_node(url: str, node: str, call: str, sessions: int, ttl: float) -> None:
    store = create_store(url)
    async with SessionRegistry(store, node_id=node, ttl=ttl) as registry:  # closes the store
        mine: dict[str, str] = {}
        for i in range(1, sessions + 1):
            session_id = f"{node}-s{i}"
            await registry.register(call, session_id)
            mine[session_id] = call
            emit(f"registered {session_id} (call {call}, TTL {ttl:g} s)")
        commands: asyncio.Queue[str] = asyncio.Queue()
        threading.Thread(
            target=_read_commands, args=(asyncio.get_running_loop(), commands), daemon=True
        ).start()
        tick = ttl / 4  # refresh well within each TTL
        refreshes = 0
        while True:
            while not commands.empty():
                words = commands.get_nowait().split()
                if words[:1] == ["stop"]:
                    for session_id, call_id in mine.items():
                        await registry.remove(call_id, session_id)
                    emit(f"stopping: removed its {len(mine)} session(s)")
                    return
                if words[:1] == ["close"] and len(words) == 3:
                    await registry.request_close(words[1], words[2])
                    emit(f"asks for a close of {words[2]} (hosted by another node)")
            await registry.refresh(mine)
            refreshes += 1
            if refreshes % 4 == 1:  # one line per TTL, not per refresh
                emit(f"refreshed {len(mine)} session(s): {', '.join(mine) or '-'}")
            for session_id in await registry.get_close_requests(mine):
                emit(f"sees a close request for {session_id}: closing it")
                await registry.remove(mine.pop(session_id), session_id)
            await asyncio.sleep(tick)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sessionkv.cli.demo_node")
    parser.add_argument("--url", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--call", required=True)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--ttl", type=float, default=2.0)
    args = parser.parse_args(argv)
    asyncio.run(run_node(args.url, args.node, args.call, args.sessions, args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
