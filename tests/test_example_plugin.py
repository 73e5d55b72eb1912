"""The example third-party distribution (examples/plugin), installed as CI installs it
(`pip install ./examples/plugin`): discovered through its entry point, selected by its
URL scheme, proven by its own contract tests, and shown verbatim by the backend guide."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sessionkv import SessionRegistry, available_backends, create_store
from sessionkv.contract_tests.servers import unavailable

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"
GUIDE = ROOT / "docs" / "writing-a-backend.md"


@pytest.fixture(autouse=True)
def example_installed() -> None:
    if importlib.util.find_spec("sessionkv_example") is None:
        unavailable("the example plugin is not installed: pip install ./examples/plugin")


def test_discovered_through_its_entry_point() -> None:
    found = {b.name: b for b in available_backends()}
    info = found["dictfile"]
    assert info.plugin == "sessionkv-example:example"
    assert info.schemes == ("dictfile",) and info.installed and info.error is None
    assert info.requirement == "sessionkv-example"
    assert info.semantics is not None and info.semantics.shared_across_processes


def test_selected_by_url_scheme_and_shared_between_stores(tmp_path: Path) -> None:
    url = f"dictfile://{tmp_path / 'sessions.json'}?namespace=app"

    async def scenario() -> None:
        node_a, node_b = create_store(url), create_store(url)
        assert type(node_a).__name__ == "JSONFileSessionKVStore"
        assert node_a.namespace == "app"
        async with node_a, node_b:
            await SessionRegistry(node_a, node_id="a").register("call", "s1")
            found = await SessionRegistry(node_b, node_id="b").get_for_call("call")
            assert [(i.session_id, i.node_id) for i in found] == [("s1", "a")]

    asyncio.run(scenario())


def test_its_own_contract_tests_pass() -> None:
    # Run from the plugin's directory with its own pytest configuration, as its CI would.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=PLUGIN,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    match = re.match(r"(\d+) passed in ", summary)
    assert match and int(match[1]) >= 60, summary


def _guide_blocks(kind: str) -> list[tuple[str, str]]:
    """(path, code) of every block the guide marks with ``<!-- kind: path -->``."""
    pattern = rf"<!-- {kind}: (\S+) -->\n```\w*\n(.*?)```"
    return re.findall(pattern, GUIDE.read_text(encoding="utf-8"), re.S)


def test_guide_shows_exactly_the_example_files() -> None:
    files = _guide_blocks("file")
    assert {path for path, _ in files} >= {
        "examples/plugin/tests/test_contract.py",
        "examples/plugin/src/sessionkv_example/plugin.py",
    }
    for path, code in files:
        assert (ROOT / path).read_text(encoding="utf-8") == code, f"{path} drifted from the guide"
    excerpts = _guide_blocks("excerpt")
    assert len(excerpts) >= 4
    for path, code in excerpts:
        assert code in (ROOT / path).read_text(encoding="utf-8"), f"{path} drifted from the guide"
