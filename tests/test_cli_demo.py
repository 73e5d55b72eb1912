"""`sessionkv demo`: real node processes on a SQLite file; the story happens in order
and the command exits 0 (each step has a deadline, so a broken store fails it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sqlite


def run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionkv", "demo", *args],
        cwd=cwd,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_tells_the_whole_story_in_order(tmp_path: Path) -> None:
    result = run_demo(cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    stamps = [float(re.match(r"\[\s*([\d.]+)s\] ", line)[1]) for line in lines]
    assert stamps == sorted(stamps)
    text = [line.split("] ", 1)[1] for line in lines]
    expected_in_order = [
        r"demo +store sqlite:////\S+/demo\.db, TTL 2 s, 3 nodes",
        r"observer +sees 6 session\(s\) \(node-1: 2, node-2: 2, node-3: 2\)",
        r"demo +all sessions outlived their TTL: the refreshes keep them alive",
        r"demo +node-3 is killed: it will not remove its sessions",
        r"observer +sees 4 session\(s\) \(node-1: 2, node-2: 2\)",
        r"demo +node-3's sessions expired [\d.]+ s after it died",
        r"node-1 +asks for a close of node-2-s1",
        r"node-2 +sees a close request for node-2-s1: closing it",
        r"observer +sees 3 session\(s\) \(node-1: 2, node-2: 1\)",
        r"demo +node-2-s1 closed by its host",
        r"observer +sees 0 session\(s\)",
        r"demo +done: every step happened as the contract says",
    ]
    position = 0
    for pattern in expected_in_order:
        while position < len(text) and not re.match(pattern, text[position]):
            position += 1
        assert position < len(text), f"missing, or out of order: {pattern}\n{result.stdout}"
    for node in ("node-1", "node-2", "node-3"):
        for session in ("s1", "s2"):
            assert f"registered {node}-{session} (call demo-call, TTL 2 s)" in result.stdout
    expired_after = float(re.search(r"sessions expired ([\d.]+) s after", result.stdout)[1])
    assert expired_after <= 2.0 + 0.5 + 0.5  # TTL, one refresh period, polling
    database = Path(re.search(r"store sqlite:///(\S+), TTL", result.stdout)[1])
    assert database.name == "demo.db" and not database.parent.exists()  # cleaned up


def test_demo_refuses_a_store_nodes_cannot_share(tmp_path: Path) -> None:
    result = run_demo("--url", "memory://", cwd=tmp_path)
    assert result.returncode == 2
    assert "memory:// is not shared across processes" in result.stderr
