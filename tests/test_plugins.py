"""Plugin discovery through real entry points: distributions written to a temporary
directory on sys.path, exactly as pip would install a third-party plugin."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import sessionkv
from sessionkv import (
    ConfigurationError,
    InMemorySessionKVStore,
    MissingExtraError,
    SessionKVWarning,
    UnknownBackendError,
    available_backends,
    create_store,
)
from sessionkv.backends import BUILTIN_BACKENDS
from sessionkv.core.plugins import reset_discovery

MakeDist = Callable[..., None]

# A complete third-party plugin: a hookimpl declaring one backend with a lazy factory.
GOOD_PLUGIN = """
from sessionkv import BackendSpec, hookimpl

@hookimpl
def sessionkv_backends():
    return [BackendSpec(name="{name}", schemes={schemes!r},
                        factory="{module}_store:Store", description="test backend")]
"""
GOOD_STORE = """
from sessionkv import InMemorySessionKVStore
from sessionkv.core.urls import parse_store_url

class Store(InMemorySessionKVStore):
    @classmethod
    def from_url(cls, url, **options):
        return cls(**parse_store_url(url).options(options, allowed={{"namespace": str}}))
"""


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDist]:
    """Install a fake distribution: dist-info with entry points, plus its modules."""

    def make(dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
        info = tmp_path / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[sessionkv]\n{lines}")
        for module, source in modules.items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            monkeypatch.delitem(sys.modules, module, raising=False)

    monkeypatch.syspath_prepend(str(tmp_path))
    reset_discovery()
    yield make
    reset_discovery()


def _plugin(module: str, name: str, schemes: tuple[str, ...]) -> dict[str, str]:
    return {
        module: GOOD_PLUGIN.format(name=name, schemes=schemes, module=module),
        f"{module}_store": GOOD_STORE.format(),
    }


def test_builtins_are_declared_through_our_own_entry_point() -> None:
    ours = [ep for ep in entry_points(group="sessionkv") if ep.dist and ep.dist.name == "sessionkv"]
    assert [(ep.name, ep.value) for ep in ours] == [("builtin", "sessionkv.backends.plugin")]
    names = [b.name for b in available_backends()]
    builtin = [spec.name for spec in BUILTIN_BACKENDS]
    assert names[: len(builtin)] == builtin == ["memory", "sqlite", "redis", "etcd"]
    assert all(b.plugin == "sessionkv:builtin" and b.builtin for b in available_backends()[:4])


def test_builtin_backends_report_extras() -> None:
    info = {b.name: b for b in available_backends()}
    assert info["redis"].schemes == ("redis", "rediss", "unix")
    assert info["redis"].requirement == "sessionkv[redis]"
    assert info["etcd"].schemes == ("etcd", "etcds")
    assert info["sqlite"].extra == "sqlite"
    assert info["memory"].installed and info["memory"].extra is None


def test_third_party_backend_is_discovered_and_selected(make_dist: MakeDist) -> None:
    make_dist("acme-kv", {"acme": "acme_plugin"}, _plugin("acme_plugin", "acme", ("acme",)))
    info = {b.name: b for b in available_backends()}
    assert info["acme"].plugin == "acme-kv:acme" and info["acme"].installed
    store = create_store("acme://?namespace=n1")
    assert type(store).__module__ == "acme_plugin_store" and store.namespace == "n1"


def test_broken_plugins_are_reported_not_fatal(make_dist: MakeDist) -> None:
    make_dist(
        "mixed-kv",
        {
            "a-missing": "no_such_module_anywhere",
            "b-raises": "raising_plugin",
            "c-bad-hook": "bad_hook_plugin",
            "d-good": "good_plugin",
        },
        {
            "raising_plugin": "raise RuntimeError('plugin exploded at import')",
            "bad_hook_plugin": """
                from sessionkv import hookimpl
                @hookimpl
                def sessionkv_backends():
                    return ["not a BackendSpec"]
            """,
            **_plugin("good_plugin", "good", ("good",)),
        },
    )
    backends = available_backends()
    broken = {b.plugin: b.error for b in backends if b.error}
    assert set(broken) == {"mixed-kv:a-missing", "mixed-kv:b-raises", "mixed-kv:c-bad-hook"}
    assert "ModuleNotFoundError" in (broken["mixed-kv:a-missing"] or "")
    assert "plugin exploded at import" in (broken["mixed-kv:b-raises"] or "")
    assert "BackendSpec" in (broken["mixed-kv:c-bad-hook"] or "")
    assert isinstance(create_store("good://"), InMemorySessionKVStore)
    assert isinstance(create_store("memory://"), InMemorySessionKVStore)
    with pytest.raises(UnknownBackendError, match=r"raising_plugin|b-raises"):
        create_store("nothing://")


def test_scheme_claimed_twice_resolves_deterministically(make_dist: MakeDist) -> None:
    make_dist("zeta-kv", {"z": "zeta_plugin"}, _plugin("zeta_plugin", "zeta", ("dup", "memory")))
    make_dist("alpha-kv", {"a": "alpha_plugin"}, _plugin("alpha_plugin", "alpha", ("dup",)))
    with pytest.warns(SessionKVWarning) as record:
        backends = {b.name: b for b in available_backends()}
    messages = " ".join(str(w.message) for w in record)
    assert "'dup'" in messages and "'memory'" in messages
    # Built-ins first, then plugins by name: alpha-kv beats zeta-kv for "dup".
    assert backends["alpha"].shadowed_schemes == ()
    assert backends["zeta"].shadowed_schemes == ("dup", "memory")
    assert type(create_store("dup://")).__module__ == "alpha_plugin_store"
    assert type(create_store("memory://")) is InMemorySessionKVStore


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(UnknownBackendError) as caught:
        create_store("nosuch://host")
    message = str(caught.value)
    for scheme in ("memory://", "sqlite://", "redis://", "etcd://"):
        assert scheme in message
    assert isinstance(caught.value, ValueError)


def test_url_from_environment_then_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONKV_URL", "memory://?namespace=from-env")
    assert create_store().namespace == "from-env"
    monkeypatch.delenv("SESSIONKV_URL")
    store = create_store()
    assert isinstance(store, InMemorySessionKVStore) and store.namespace == ""


def test_options_override_the_url_and_unknown_ones_are_errors() -> None:
    assert create_store("memory://?namespace=a", namespace="b").namespace == "b"
    with pytest.raises(ConfigurationError, match="sweep_intervall"):
        create_store("memory://?sweep_intervall=1")
    with pytest.raises(ConfigurationError, match="sweep_interval"):
        create_store("memory://?sweep_interval=soon")
    with pytest.raises(ConfigurationError, match="not a store URL"):
        create_store("memory")


def _run_without_clients(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the optional clients cannot be imported."""
    prelude = (
        "import sys\nfor m in ('redis', 'etcd3', 'aiosqlite', 'aiohttp'): sys.modules[m] = None\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_needs_no_client_library() -> None:
    result = _run_without_clients(
        """
        import asyncio, sessionkv
        from sessionkv import *  # every public name, backends included
        for name in ("redis", "etcd3", "aiosqlite"):
            assert sys.modules.get(name) is None, name
        info = {
            b.name: b.installed
            for b in sessionkv.available_backends()
            if b.plugin == "sessionkv:builtin"
        }
        from sessionkv.backends import BUILTIN_BACKENDS
        expected = {spec.name: not spec.requires for spec in BUILTIN_BACKENDS}
        assert info == expected, info
        async def main():
            async with sessionkv.SessionRegistry() as registry:
                await registry.register("call", "session")
                assert len(await registry.get_for_call("call")) == 1
        asyncio.run(main())
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("sqlite:///x.db", "sqlite"),
        ("redis://localhost:1/0", "redis"),
        ("etcd://localhost:1", "etcd"),
    ],
)
def test_missing_extra_names_the_pip_extra(url: str, extra: str) -> None:
    result = _run_without_clients(
        f"""
        import sessionkv
        try:
            sessionkv.create_store({url!r})
        except sessionkv.MissingExtraError as exc:
            assert isinstance(exc, ImportError)
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert f'pip install "sessionkv[{extra}]"' in result.stdout


def test_missing_extra_error_is_an_import_error() -> None:
    error = MissingExtraError("redis", "redis", "redis")
    assert isinstance(error, ImportError) and isinstance(error, ConfigurationError)
    assert 'pip install "sessionkv[redis]"' in str(error)


def test_public_names_are_all_exported() -> None:
    for name in sessionkv.__all__:
        assert getattr(sessionkv, name) is not None, name
    public = {n for n in dir(sessionkv) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(sessionkv.__all__)


def test_disable_plugins_turns_third_party_ones_off(
    make_dist: MakeDist, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dist("acme-kv", {"acme": "acme_plugin"}, _plugin("acme_plugin", "acme", ("acme",)))
    make_dist("zeta-kv", {"z": "zeta_plugin"}, _plugin("zeta_plugin", "zeta", ("zeta",)))
    monkeypatch.setenv("SESSIONKV_DISABLE_PLUGINS", "acme-kv")
    reset_discovery()
    names = {b.name for b in available_backends()}
    assert "acme" not in names and "zeta" in names
    monkeypatch.setenv("SESSIONKV_DISABLE_PLUGINS", "1")
    reset_discovery()
    assert [b.name for b in available_backends()] == [s.name for s in BUILTIN_BACKENDS]
    with pytest.raises(UnknownBackendError):
        create_store("zeta://")


def test_a_builtin_scheme_never_loads_third_party_plugins(make_dist: MakeDist) -> None:
    make_dist("lazy-kv", {"lazy": "lazy_plugin"}, {"lazy_plugin": "raise SystemExit('loaded')"})
    reset_discovery()
    assert isinstance(create_store("memory://"), InMemorySessionKVStore)
    assert "lazy_plugin" not in sys.modules, "entry points load only when needed"


def test_a_bad_url_in_the_environment_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONKV_URL", "bogus")
    with pytest.raises(ConfigurationError, match=r"^\$SESSIONKV_URL='bogus': "):
        create_store()
    monkeypatch.setenv("SESSIONKV_URL", "  memory://?namespace=trimmed ")
    assert create_store().namespace == "trimmed"


def test_catalogs_are_independent() -> None:
    from sessionkv.core.plugins import BackendCatalog

    first, second = BackendCatalog(), BackendCatalog()
    assert [b.name for b in first.available()] == [b.name for b in second.available()]
    assert first.spec_for("memory://") is second.spec_for("memory://")  # the same table


def test_the_backends_package_exports_exactly_the_tables_store_classes() -> None:
    import sessionkv.backends as backends

    assert sorted(backends.__all__) == sorted(spec.class_name for spec in BUILTIN_BACKENDS)
    assert set(backends.__all__) <= set(sessionkv.__all__)
