"""The README's backend table is generated from the backends' own declarations; these
tests fail when the README drifts from them or a declaration drifts from its store."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from sessionkv import BackendSpec, StoreSemantics
from sessionkv.backends.plugin import BUILTIN_BACKENDS
from sessionkv.cli.backend_table import (
    BEGIN_MARKER,
    END_MARKER,
    main,
    render_backend_table,
    replace_table_block,
)
from sessionkv.core.plugins import load_backend

README = Path(__file__).resolve().parents[1] / "README.md"

def test_readme_table_matches_the_declarations() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    block = text[start : text.index(END_MARKER)].strip("\n") + "\n"
    assert block == render_backend_table(), (
        "README.md's backend table is out of date: "
        "python -m sessionkv.cli.backend_table --write README.md"
    )


def test_every_builtin_declares_its_semantics() -> None:
    for spec in BUILTIN_BACKENDS:
        assert spec.semantics is not None, spec.name
    assert "not declared" not in render_backend_table()


@pytest.mark.parametrize("spec", BUILTIN_BACKENDS, ids=lambda spec: spec.name)
def test_the_store_class_carries_its_specs_declaration(spec: BackendSpec) -> None:
    # One route: the store class reads the spec's declaration (a store may refine it
    # once connected, e.g. etcd learns the cluster's minimum TTL).
    store_class = load_backend(spec)  # the class only: no client library is imported
    assert store_class.SEMANTICS is spec.semantics is not None


def test_table_shows_sqlite_file_case() -> None:
    row = next(line for line in render_backend_table().splitlines() if line.startswith("| sqlite"))
    assert "| yes / no |" in row  # a file is shared by processes; `sqlite://` in memory is not


def test_rendering_imports_no_client_library() -> None:
    code = (
        "import sys\n"
        "from sessionkv.cli.backend_table import render_backend_table\n"
        "render_backend_table()\n"
        "print(sorted({'aiosqlite', 'redis', 'etcd3', 'aiohttp'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_rendering_of_declared_and_undeclared_plugins() -> None:
    semantics = StoreSemantics(
        ttl_resolution=1.0,
        min_ttl=2.0,
        expiry_lag=0.5,
        shared_across_processes=True,
        shared_across_hosts=True,
        atomic_mset=False,
        scan_cost="O(n)",
    )
    declared = BackendSpec(
        name="acme", schemes=("acme",), factory="acme:Store", extra="acme",
        package="sessionkv-acme", semantics=semantics,
    )  # fmt: skip
    silent = dataclasses.replace(declared, name="quiet", semantics=None)
    lines = render_backend_table([declared, silent]).splitlines()
    assert lines[2] == (
        "| acme | 1 s | 2 s | 500 ms | yes / yes | 1,024 B | `O(n)` | `sessionkv-acme[acme]` |"
    )
    assert lines[3].startswith("| quiet | not declared |")  # its module is never imported


def test_write_and_check_round_trip(tmp_path: Path, capsys) -> None:
    doc = tmp_path / "README.md"
    doc.write_text(f"# x\n\n{BEGIN_MARKER}\n| stale |\n{END_MARKER}\n\nafter\n")
    assert main(["--check", str(doc)]) == 1
    assert "python -m sessionkv.cli.backend_table --write" in capsys.readouterr().err
    assert main(["--write", str(doc)]) == 0
    assert main(["--check", str(doc)]) == 0
    text = doc.read_text()
    assert text == replace_table_block(text, render_backend_table())
    assert text.startswith(f"# x\n\n{BEGIN_MARKER}\n| backend |") and text.endswith("\n\nafter\n")
