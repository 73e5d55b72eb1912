"""Quickstart: the registry API on the default in-process store.

Run: python examples/quickstart.py  (no extra needed). For several nodes, pass every
registry a shared store instead: see multi_node.py and configuration.py.
"""

import asyncio

from sessionkv import SessionRegistry


async def main() -> None:
    # No store given: an in-memory store, private to this process, closed on exit.
    async with SessionRegistry(node_id="node-a", ttl=30) as registry:
        await registry.register("call-1", "session-a")
        await registry.register("call-1", "session-b")
        await registry.update_metrics("call-1", "session-a", {"rtt_ms": 41.5, "frames": 900})

        for info in await registry.get_for_call("call-1"):  # every node's sessions of the call
            print(f"{info.call_id} {info.session_id} on {info.node_id}: {info.metrics}")

        info = await registry.get("call-1", "session-a")
        assert info is not None
        print("session-a started at", round(info.started_at), "metrics", info.metrics)

        await registry.request_close("call-1", "session-b")  # any node may ask
        mine = {"session-a": "call-1", "session-b": "call-1"}  # session_id -> call_id
        await registry.refresh(mine)  # the hosting node keeps its sessions alive...
        to_close = await registry.get_close_requests(mine)  # ...and polls for close requests
        print("close requested:", to_close)
        for session_id in to_close:
            await registry.remove(mine.pop(session_id), session_id)

        print("left:", [i.session_id for i in await registry.get_for_call("call-1")])


if __name__ == "__main__":
    asyncio.run(main())
