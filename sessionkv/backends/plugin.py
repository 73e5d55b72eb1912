"""The built-in backends' plugin: the module this distribution's own entry point
(group ``sessionkv``) names, exactly as a third-party plugin's entry point names its
own. The backends themselves are declared in :mod:`sessionkv.backends`."""

from __future__ import annotations

from ..core.plugins import hookimpl
from ..core.types import BackendSpec
from . import BUILTIN_BACKENDS

__all__ = ["BUILTIN_BACKENDS", "sessionkv_backends"]


@hookimpl
def sessionkv_backends() -> tuple[BackendSpec, ...]:
    return BUILTIN_BACKENDS
