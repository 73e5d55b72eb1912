"""Backend discovery on pluggy: hookspecs, entry-point loading, ``create_store``.

A plugin is any module or object named by an entry point in group ``sessionkv`` that
implements :meth:`BackendSpecs.sessionkv_backends`. Backends are declared as data
(:class:`BackendSpec`): the store class is a dotted string imported on first use, so
discovery never imports a client library. Entry points are loaded one at a time: a
broken plugin is logged and reported by :func:`available_backends`, never fatal.
Built-in backends come first; among the rest, plugins are ordered by name, and the
first backend to claim a URL scheme keeps it (the others get a
:class:`~sessionkv.core.errors.SessionKVWarning`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import pluggy

from .errors import ConfigurationError, MissingExtraError, SessionKVWarning, UnknownBackendError
from .imports import import_client
from .store import SessionKVStore
from .types import StoreSemantics
from .urls import redact_url, url_scheme

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendInfo",
    "BackendSpec",
    "BackendSpecs",
    "available_backends",
    "create_store",
    "hookimpl",
    "hookspec",
    "import_client",
    "load_backend",
]

log = logging.getLogger("sessionkv.plugins")

ENTRY_POINT_GROUP = "sessionkv"
BUILTIN_PLUGIN = "sessionkv.backends.plugin"

hookspec = pluggy.HookspecMarker("sessionkv")
hookimpl = pluggy.HookimplMarker("sessionkv")


@dataclass(frozen=True)
class BackendSpec:
    """A backend as a plugin declares it.

    ``factory`` is ``"module:StoreClass"``, imported only when a store is created;
    ``requires`` are the client libraries' top-level module names, probed without
    importing them; ``extra`` is the pip extra of ``package`` that installs them.
    ``semantics``, optional, repeats the store's declaration so tools (``sessionkv
    backends``, the README table) can show it without importing the store.
    """

    name: str
    schemes: tuple[str, ...]
    factory: str
    requires: tuple[str, ...] = ()
    extra: str | None = None
    package: str = "sessionkv"
    description: str = ""
    semantics: StoreSemantics | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("BackendSpec.name must be a non-empty str")
        if isinstance(self.schemes, str) or not self.schemes:
            raise ValueError(f"BackendSpec {self.name!r}: schemes must be a non-empty tuple")
        if ":" not in self.factory:
            raise ValueError(f"BackendSpec {self.name!r}: factory must be 'module:attribute'")
        if self.semantics is not None and not isinstance(self.semantics, StoreSemantics):
            raise ValueError(f"BackendSpec {self.name!r}: semantics must be a StoreSemantics")
        object.__setattr__(self, "schemes", tuple(s.lower() for s in self.schemes))
        object.__setattr__(self, "requires", tuple(self.requires))

    @property
    def requirement(self) -> str:
        """What to ``pip install`` for this backend's client libraries."""
        return f"{self.package}[{self.extra}]" if self.extra else self.package


class BackendSpecs:
    """The hooks a sessionkv plugin implements (decorate with :data:`hookimpl`)."""

    @hookspec
    def sessionkv_backends(self) -> Sequence[BackendSpec]:  # type: ignore[empty-body]
        """Declare the backends this plugin provides. Must not do I/O or import
        client libraries: it runs during discovery, in every process."""


@dataclass(frozen=True)
class BackendInfo:
    """One discovered backend, or one plugin that failed to load (``error`` set)."""

    name: str
    schemes: tuple[str, ...]
    plugin: str
    installed: bool
    extra: str | None
    requirement: str
    description: str = ""
    error: str | None = None
    shadowed_schemes: tuple[str, ...] = ()
    """Schemes this backend claims but another backend, loaded first, serves."""
    semantics: StoreSemantics | None = None
    """The semantics the plugin declared with the backend, if it did."""


@dataclass
class _Discovery:
    backends: list[tuple[BackendSpec, str]] = field(default_factory=list)
    broken: list[BackendInfo] = field(default_factory=list)
    by_scheme: dict[str, tuple[BackendSpec, str]] = field(default_factory=dict)


_lock = threading.Lock()
_cache: _Discovery | None = None


def reset_discovery() -> None:
    """Forget discovered plugins; the next call discovers again (after installs)."""
    global _cache
    with _lock:
        _cache = None


def _plugin_name(ep: EntryPoint) -> str:
    dist = ep.dist.name if ep.dist is not None else "?"
    return f"{dist}:{ep.name}"


def _is_importable(module: str) -> bool:
    top = module.split(".", 1)[0]
    if top in sys.modules:
        return sys.modules[top] is not None
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _broken(name: str, error: str) -> BackendInfo:
    log.warning("sessionkv plugin %s is broken and was skipped: %s", name, error)
    return BackendInfo(
        name=name,
        schemes=(),
        plugin=name,
        installed=False,
        extra=None,
        requirement="",
        error=error,
    )


def _discover() -> _Discovery:
    global _cache
    with _lock:
        if _cache is not None:
            return _cache
        found = _Discovery()
        pm = pluggy.PluginManager("sessionkv")
        pm.add_hookspecs(BackendSpecs)
        eps = sorted(
            {
                (_plugin_name(ep), ep.value): ep for ep in entry_points(group=ENTRY_POINT_GROUP)
            }.items()
        )
        for (name, _), ep in eps:
            try:
                plugin = ep.load()
                if pm.is_registered(plugin):
                    continue  # the same plugin reached twice (e.g. two installs on the path)
                pm.register(plugin, name=name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break discovery
                found.broken.append(_broken(name, f"{type(exc).__name__}: {exc}"))
        builtin = importlib.import_module(BUILTIN_PLUGIN)
        if not pm.is_registered(builtin):
            # A source tree used without `pip install`: no entry points, same built-ins.
            pm.register(builtin, name="sessionkv:builtin")
        impls = pm.hook.sessionkv_backends.get_hookimpls()
        impls.sort(key=lambda impl: (impl.plugin is not builtin, impl.plugin_name))
        for impl in impls:
            try:
                result: Any = impl.function()
                declared: list[object] = list(result)
                specs = [s for s in declared if isinstance(s, BackendSpec)]
                bad = [s for s in declared if not isinstance(s, BackendSpec)]
                if bad:
                    raise TypeError(
                        f"sessionkv_backends() must return BackendSpec objects, got {bad[0]!r}"
                    )
            except Exception as exc:  # noqa: BLE001
                found.broken.append(_broken(impl.plugin_name, f"{type(exc).__name__}: {exc}"))
                continue
            for spec in specs:
                found.backends.append((spec, impl.plugin_name))
                for scheme in spec.schemes:
                    owner = found.by_scheme.setdefault(scheme, (spec, impl.plugin_name))
                    if owner[0] is not spec:
                        message = (
                            f"URL scheme {scheme!r} is claimed by backend {owner[0].name!r} "
                            f"(plugin {owner[1]}) and by backend {spec.name!r} (plugin "
                            f"{impl.plugin_name}); {owner[0].name!r} serves it"
                        )
                        log.warning(message)
                        warnings.warn(message, SessionKVWarning, stacklevel=3)
        _cache = found
        return found


def available_backends() -> list[BackendInfo]:
    """Every discovered backend (built-ins first), then every plugin that failed to load."""
    found = _discover()
    infos = [
        BackendInfo(
            name=spec.name,
            schemes=spec.schemes,
            plugin=plugin,
            installed=all(_is_importable(module) for module in spec.requires),
            extra=spec.extra,
            requirement=spec.requirement,
            description=spec.description,
            shadowed_schemes=tuple(s for s in spec.schemes if found.by_scheme[s][0] is not spec),
            semantics=spec.semantics,
        )
        for spec, plugin in found.backends
    ]
    return infos + list(found.broken)


def load_backend(spec: BackendSpec) -> type[SessionKVStore]:
    """Import the store class of ``spec``."""
    for module in spec.requires:
        if not _is_importable(module):
            if spec.extra is None:
                raise ConfigurationError(
                    f"backend {spec.name!r} needs {module!r}: pip install {spec.package!r}"
                )
            raise MissingExtraError(spec.name, spec.extra, module, package=spec.package)
    module_name, _, attr = spec.factory.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except MissingExtraError:
        raise
    except Exception as exc:
        raise ConfigurationError(
            f"backend {spec.name!r} could not be loaded from {spec.factory!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(target, type) and issubclass(target, SessionKVStore)):
        raise ConfigurationError(
            f"backend {spec.name!r}: {spec.factory!r} is not a SessionKVStore subclass"
        )
    return target


def create_store(url: str | None = None, **options: Any) -> SessionKVStore:
    """A store for ``url`` (else ``$SESSIONKV_URL``, else ``memory://``), made by the
    backend that serves its scheme. ``options`` override the URL's query options."""
    if url is None:
        url = os.environ.get("SESSIONKV_URL") or "memory://"
    scheme = url_scheme(url)
    found = _discover()
    if scheme not in found.by_scheme:
        known = ", ".join(f"{s}://" for s in sorted(found.by_scheme))
        hint = ""
        if found.broken:
            hint = "; plugins that failed to load: " + ", ".join(
                f"{b.plugin} ({b.error})" for b in found.broken
            )
        raise UnknownBackendError(
            f"no backend serves {redact_url(url)!r}; known schemes: {known}{hint}"
        )
    spec, _ = found.by_scheme[scheme]
    store = load_backend(spec).from_url(url, **options)
    if not isinstance(store, SessionKVStore):
        raise ConfigurationError(f"backend {spec.name!r}: from_url() did not return a store")
    return store
