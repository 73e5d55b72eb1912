"""The examples in examples/ run as a user runs them and print what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SESSIONKV_URL"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.memory
def test_quickstart(tmp_path: Path) -> None:
    out = run_example("quickstart.py", cwd=tmp_path).splitlines()
    assert out[0] == "call-1 session-a on node-a: {'rtt_ms': 41.5, 'frames': 900}"
    assert out[1] == "call-1 session-b on node-a: {}"
    assert out[-2:] == ["close requested: ['session-b']", "left: ['session-a']"]


@pytest.mark.sqlite
def test_multi_node_on_sqlite(tmp_path: Path) -> None:
    out = run_example("multi_node.py", cwd=tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("store: sqlite:////")
    for worker in ("worker-a", "worker-b"):
        assert f"{worker}: hosting ['{worker}-session-1', '{worker}-session-2']" in lines
        assert f"dispatcher: {worker}-session-2 on {worker}, metrics {{'rtt_ms': 40.0}}" in lines
        assert f"{worker}: stopped" in lines
    closing = lines.index("worker-b: closing worker-b-session-1 as requested")
    assert lines.index("dispatcher: worker-b-session-1 is gone") > closing
    assert lines[-1] == "dispatcher: no sessions left"


@pytest.mark.sqlite
def test_configuration(tmp_path: Path) -> None:
    out = run_example("configuration.py", cwd=tmp_path)
    assert "backend sqlite   schemes sqlite" in out
    assert "by URL: SQLiteSessionKVStore(" in out and "namespace='app'" in out
    assert "-> 1 session" in out
    assert "keyword override: namespace 'other-app' []" in out
    assert "default: InMemorySessionKVStore(namespace='', state=open) False" in out
    assert "unknown backend: no backend serves 'postgres://db/sessions'" in out
    assert "bad configuration: unknown option(s) ['colour']" in out
    assert "bad configuration: 'no-scheme.db' is not a store URL" in out
