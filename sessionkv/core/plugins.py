"""Backend discovery on pluggy: hookspecs, the backend catalog, ``create_store``.

A plugin is any module or object named by an entry point in group ``sessionkv`` that
implements :meth:`BackendHooks.sessionkv_backends`. Backends are declared as data
(:class:`BackendSpec`): the store class is a dotted string imported on first use, so
discovery never imports a client library. A :class:`BackendCatalog` owns its own
pluggy ``PluginManager`` and loads entry points only when it needs them: sessionkv's
own (the built-in backends) first, third-party ones only for a scheme the built-ins do
not serve or for a full listing. Entry points load one at a time: a broken plugin is
logged and reported by :func:`available_backends`, never fatal. Built-ins come first;
among the rest, plugins are ordered by name, and the first backend to claim a URL scheme
keeps it (the others get a :class:`~sessionkv.core.errors.SessionKVWarning`).
``SESSIONKV_DISABLE_PLUGINS=1`` turns every third-party plugin off; a comma-separated
list (``dist:name``, ``dist`` or ``name``) turns off just those.
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
from typing import Any

import pluggy

from .errors import ConfigurationError, MissingExtraError, SessionKVWarning, UnknownBackendError
from .imports import import_client
from .store import SessionKVStore
from .types import BackendSpec, StoreSemantics
from .urls import redact_url, url_scheme

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendCatalog",
    "BackendHooks",
    "BackendInfo",
    "BackendSpec",
    "BackendSpecs",
    "available_backends",
    "create_store",
    "default_catalog",
    "hookimpl",
    "hookspec",
    "import_client",
    "load_backend",
]

log = logging.getLogger("sessionkv.plugins")

ENTRY_POINT_GROUP = "sessionkv"
DISTRIBUTION = "sessionkv"
BUILTIN_PLUGIN_NAME = "sessionkv:builtin"
DISABLE_VARIABLE = "SESSIONKV_DISABLE_PLUGINS"

hookspec = pluggy.HookspecMarker("sessionkv")
hookimpl = pluggy.HookimplMarker("sessionkv")


class BackendHooks:
    """The hooks a sessionkv plugin implements (decorate with :data:`hookimpl`)."""

    @hookspec
    def sessionkv_backends(self) -> Sequence[BackendSpec]:  # type: ignore[empty-body]
        """Declare the backends this plugin provides. Must not do I/O or import
        client libraries: it runs during discovery, in every process."""


BackendSpecs = BackendHooks
"""The 0.1 name of :class:`BackendHooks` (one letter from :class:`BackendSpec`)."""


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
    builtin: bool = False
    """Shipped with sessionkv itself."""


@dataclass
class _Loaded:
    backends: list[tuple[BackendSpec, str]] = field(default_factory=list)
    broken: list[BackendInfo] = field(default_factory=list)
    by_scheme: dict[str, tuple[BackendSpec, str]] = field(default_factory=dict)
    builtin_done: bool = False
    plugins_done: bool = False


def _plugin_name(ep: EntryPoint) -> str:
    return f"{ep.dist.name if ep.dist is not None else '?'}:{ep.name}"


def _is_importable(module: str) -> bool:
    top = module.split(".", 1)[0]
    if top in sys.modules:
        return sys.modules[top] is not None
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _blocked_names() -> tuple[bool, frozenset[str]]:
    """(every third-party plugin off?, names turned off) from the environment."""
    raw = os.environ.get(DISABLE_VARIABLE, "").strip()
    if raw.lower() in ("1", "true", "yes", "all", "*"):
        return True, frozenset()
    return False, frozenset(part.strip() for part in raw.split(",") if part.strip())


class BackendCatalog:
    """The backends one process knows: sessionkv's own, then installed plugins'.

    Each catalog owns a pluggy ``PluginManager``. ``fallback_builtin`` is the plugin
    used when sessionkv's own entry point is missing (a source tree used without
    ``pip install``); the package wires in its built-in declarations.
    """

    def __init__(self, *, fallback_builtin: object | None = None) -> None:
        self._fallback = fallback_builtin
        self._lock = threading.RLock()
        self._pm = pluggy.PluginManager("sessionkv")
        self._pm.add_hookspecs(BackendHooks)
        self._loaded = _Loaded()

    # -- loading -------------------------------------------------------------------

    def _entry_points(self, *, ours: bool) -> list[tuple[str, EntryPoint]]:
        found = {
            (_plugin_name(ep), ep.value): ep
            for ep in entry_points(group=ENTRY_POINT_GROUP)
            if (ep.dist is not None and ep.dist.name == DISTRIBUTION) == ours
        }
        return [(name, ep) for (name, _), ep in sorted(found.items())]

    def _ensure_builtin(self) -> _Loaded:
        with self._lock:
            loaded = self._loaded
            if not loaded.builtin_done:
                names = [self._register(name, ep) for name, ep in self._entry_points(ours=True)]
                if not any(names) and self._fallback is not None:
                    if not self._pm.is_registered(self._fallback):
                        self._pm.register(self._fallback, name=BUILTIN_PLUGIN_NAME)
                    names.append(BUILTIN_PLUGIN_NAME)
                for name in names:
                    if name is not None:
                        self._declare(name, builtin=True)
                loaded.builtin_done = True
            return loaded

    def _ensure_plugins(self) -> _Loaded:
        loaded = self._ensure_builtin()
        with self._lock:
            if not loaded.plugins_done:
                all_off, blocked = _blocked_names()
                for name, ep in [] if all_off else self._entry_points(ours=False):
                    if {name, name.partition(":")[0], ep.name} & blocked:
                        self._pm.set_blocked(name)
                        continue
                    registered = self._register(name, ep)
                    if registered is not None:
                        self._declare(registered, builtin=False)
                loaded.plugins_done = True
            return loaded

    def _register(self, name: str, ep: EntryPoint) -> str | None:
        """Load and register one entry point; a failure is reported, never raised."""
        try:
            plugin = ep.load()
            if self._pm.is_registered(plugin):
                return None  # the same plugin reached twice (e.g. two installs on the path)
            self._pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break discovery
            self._broken(name, exc)
            return None
        return name

    def _broken(self, name: str, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("sessionkv plugin %s is broken and was skipped: %s", name, error)
        self._loaded.broken.append(
            BackendInfo(name, (), name, installed=False, extra=None, requirement="", error=error)
        )

    def _declare(self, name: str, *, builtin: bool) -> None:
        """Ask one registered plugin for its backends (through the hook, isolated from
        the other plugins so one that raises cannot hide theirs)."""
        plugin = self._pm.get_plugin(name)
        others = [p for p in self._pm.get_plugins() if p is not plugin]
        call = self._pm.subset_hook_caller("sessionkv_backends", remove_plugins=others)
        try:
            declared = [spec for result in call() for spec in result]
            bad = [s for s in declared if not isinstance(s, BackendSpec)]
            if bad:
                raise TypeError(
                    f"sessionkv_backends() must return BackendSpec objects, got {bad[0]!r}"
                )
        except Exception as exc:  # noqa: BLE001 - reported like a plugin that fails to load
            self._broken(name, exc)
            return
        for spec in declared:
            self._add(spec, name)

    def _add(self, spec: BackendSpec, plugin: str) -> None:
        loaded = self._loaded
        loaded.backends.append((spec, plugin))
        for scheme in spec.schemes:
            owner = loaded.by_scheme.setdefault(scheme, (spec, plugin))
            if owner[0] is not spec:
                message = (
                    f"URL scheme {scheme!r} is claimed by backend {owner[0].name!r} "
                    f"(plugin {owner[1]}) and by backend {spec.name!r} (plugin {plugin}); "
                    f"{owner[0].name!r} serves it"
                )
                log.warning(message)
                warnings.warn(message, SessionKVWarning, stacklevel=5)

    # -- queries -------------------------------------------------------------------

    def available(self) -> list[BackendInfo]:
        """Every backend (built-ins first), then every plugin that failed to load."""
        loaded = self._ensure_plugins()
        infos = [
            BackendInfo(
                name=spec.name,
                schemes=spec.schemes,
                plugin=plugin,
                installed=all(_is_importable(module) for module in spec.requires),
                extra=spec.extra,
                requirement=spec.requirement,
                description=spec.description,
                shadowed_schemes=tuple(
                    s for s in spec.schemes if loaded.by_scheme[s][0] is not spec
                ),
                semantics=spec.semantics,
                builtin=spec.package == DISTRIBUTION and plugin.startswith(DISTRIBUTION + ":"),
            )
            for spec, plugin in loaded.backends
        ]
        return infos + list(loaded.broken)

    def spec_for(self, url: str) -> BackendSpec:
        """The backend serving ``url``'s scheme; third-party plugins load only if no
        built-in serves it."""
        scheme = url_scheme(url)
        loaded = self._ensure_builtin()
        if scheme not in loaded.by_scheme:
            loaded = self._ensure_plugins()
        if scheme not in loaded.by_scheme:
            known = ", ".join(f"{s}://" for s in sorted(loaded.by_scheme))
            hint = ""
            if loaded.broken:
                hint = "; plugins that failed to load: " + ", ".join(
                    f"{b.plugin} ({b.error})" for b in loaded.broken
                )
            raise UnknownBackendError(
                f"no backend serves {redact_url(url)!r}; known schemes: {known}{hint}"
            )
        return loaded.by_scheme[scheme][0]

    def create(self, url: str, **options: Any) -> SessionKVStore:
        """A store for ``url``, made by the backend that serves its scheme."""
        spec = self.spec_for(url)
        store = load_backend(spec).from_url(url, **options)
        if not isinstance(store, SessionKVStore):
            raise ConfigurationError(f"backend {spec.name!r}: from_url() did not return a store")
        return store


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


# -- the process's default catalog ---------------------------------------------------

_default_lock = threading.Lock()
_default: BackendCatalog | None = None
_fallback_builtin: object | None = None


def set_fallback_builtin(plugin: object) -> None:
    """Called by the ``sessionkv`` package with its built-in declarations, so a source
    tree without installed entry points still knows them (``core`` imports no backend)."""
    global _fallback_builtin
    _fallback_builtin = plugin


def default_catalog() -> BackendCatalog:
    """The catalog :func:`create_store` and :func:`available_backends` use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = BackendCatalog(fallback_builtin=_fallback_builtin)
        return _default


def reset_discovery() -> None:
    """Forget discovered plugins; the next call discovers again (after installs)."""
    global _default
    with _default_lock:
        _default = None


def available_backends() -> list[BackendInfo]:
    """Every discovered backend (built-ins first), then every plugin that failed to load."""
    return default_catalog().available()


def create_store(url: str | None = None, **options: Any) -> SessionKVStore:
    """A store for ``url`` (else ``$SESSIONKV_URL``, else ``memory://``), made by the
    backend that serves its scheme. ``options`` override the URL's query options."""
    if url is not None:
        return default_catalog().create(url, **options)
    from_env = os.environ.get("SESSIONKV_URL", "").strip()
    if not from_env:
        return default_catalog().create("memory://", **options)
    try:
        return default_catalog().create(from_env, **options)
    except ConfigurationError as exc:
        exc.args = (f"$SESSIONKV_URL={redact_url(from_env)!r}: {exc}",)
        raise
