"""Lazy imports of backends' client libraries: a missing one names its pip extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError

__all__ = ["import_client"]


def import_client(
    module: str, *, backend: str, extra: str, package: str = "sessionkv"
) -> ModuleType:
    """Import a backend's client library, or raise :class:`MissingExtraError` naming
    the pip extra that installs it. Backends call this at first use, never at import."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(backend, extra, module, package=package) from exc
