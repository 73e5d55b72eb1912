"""The plugin module the ``sessionkv`` entry point names: it declares the backend as
data. It runs during discovery, in every process that uses sessionkv, so it must stay
cheap: no I/O and no client-library imports."""

from __future__ import annotations

from sessionkv import BackendSpec, hookimpl

# store.py imports nothing beyond the standard library and sessionkv, so reading its
# declaration here is cheap. A store built on a client library would write its
# StoreSemantics in a small module of its own, imported by both.
from .store import JSONFileSessionKVStore


@hookimpl
def sessionkv_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="dictfile",
            schemes=("dictfile",),
            factory="sessionkv_example.store:JSONFileSessionKVStore",
            package="sessionkv-example",
            description="example plugin: a JSON file shared by processes on one host",
            semantics=JSONFileSessionKVStore.SEMANTICS,
        )
    ]
