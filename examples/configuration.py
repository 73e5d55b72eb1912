"""Configuration: choose the store by URL, by environment, or in code.

Run: python examples/configuration.py
Deployments usually set one environment variable and write no store code at all:
    SESSIONKV_URL="redis://:password@redis.internal:6379/0?namespace=agents"
"""

import asyncio
import os
import tempfile
from pathlib import Path

from sessionkv import (
    ConfigurationError,
    MissingExtraError,
    SessionRegistry,
    UnknownBackendError,
    available_backends,
    create_store,
)


async def main() -> None:
    # 1. What is installed, and which extra provides what is not.
    for backend in available_backends():
        state = "installed" if backend.installed else f'pip install "{backend.requirement}"'
        print(f"backend {backend.name:<8} schemes {', '.join(backend.schemes):<20} {state}")

    with tempfile.TemporaryDirectory() as tmp:
        # 2. By URL, with options in the query: a SQLite file in namespace "app".
        url = f"sqlite:///{Path(tmp) / 'sessions.db'}?namespace=app"
        try:
            store = create_store(url)
        except MissingExtraError as exc:  # the message names the pip extra
            print("sqlite needs its extra:", exc)
            store = create_store("memory://?namespace=app")
        async with SessionRegistry(store, ttl=30) as registry:  # closes the store after
            await registry.register("call-1", "session-a")
            print("by URL:", store, "->", len(await registry.get_for_call("call-1")), "session")

        # 3. By environment: create_store() with no URL reads SESSIONKV_URL...
        os.environ["SESSIONKV_URL"] = url
        async with create_store() as store:
            print("by SESSIONKV_URL:", store, "namespace", repr(store.namespace))
        # ...and keyword options override the URL's: a second namespace on one file.
        async with create_store(namespace="other-app") as other:
            print("keyword override: namespace", repr(other.namespace), await other.keys(""))
        # ...and so does SessionRegistry() with no store: no store code at all.
        async with SessionRegistry(ttl=30) as registry:
            print("SessionRegistry() follows SESSIONKV_URL:", registry.store)
        del os.environ["SESSIONKV_URL"]

    # 4. Without URL or environment: memory://, private to this process.
    async with create_store() as store:
        print("default:", store, store.semantics.shared_across_processes)

    # 5. Configuration mistakes are ConfigurationError (a ValueError) with a clear message.
    for bad in ("postgres://db/sessions", "memory://?colour=blue", "no-scheme.db"):
        try:
            create_store(bad)
        except UnknownBackendError as exc:
            print("unknown backend:", exc)
        except ConfigurationError as exc:
            print("bad configuration:", exc)


if __name__ == "__main__":
    asyncio.run(main())
