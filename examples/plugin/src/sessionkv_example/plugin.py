"""The plugin module the ``sessionkv`` entry point names: it declares the backend as
data. It must stay cheap (no I/O, no client imports): it runs during discovery."""

from __future__ import annotations

from sessionkv import BackendSpec, hookimpl


@hookimpl
def sessionkv_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="dictfile",
            schemes=("dictfile",),
            factory="sessionkv_example.store:JSONFileSessionKVStore",
            package="sessionkv-example",
            description="example plugin: a JSON file shared by processes on one host",
        )
    ]
