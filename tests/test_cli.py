"""`sessionkv backends` and `sessionkv sessions`, run as users run them: the installed
script or `python -m sessionkv` in a fresh process, on real stores (SQLite files)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sessionkv import SessionRegistry, create_store
from sessionkv.cli import main

pytestmark = pytest.mark.sqlite

# A plugin whose module raises on import, installed as pip would: dist-info + module.
BROKEN_PLUGIN = "raise RuntimeError('this plugin is broken on purpose')\n"


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None):
    # cwd outside the source tree, so `-m sessionkv` runs the installed package.
    return subprocess.run(
        [sys.executable, "-m", "sessionkv", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def install_broken_plugin(root: Path) -> None:
    info = root / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[sessionkv]\nbroken = broken_plugin_mod\n")
    (root / "broken_plugin_mod.py").write_text(BROKEN_PLUGIN)


def test_backends_lists_installed_missing_and_broken(tmp_path: Path) -> None:
    install_broken_plugin(tmp_path)
    # `sys.modules[name] = None` is how Python itself marks a module unimportable.
    code = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None
        from sessionkv.cli import main
        sys.exit(main(["backends"]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "installed" in rows["memory"] and "one process" in rows["memory"]
    assert "installed" in rows["sqlite"] and "processes" in rows["sqlite"]
    assert 'missing: pip install "sessionkv[redis]"' in rows["redis"]
    assert "broken: RuntimeError: this plugin is broken on purpose" in rows["broken-plugin:broken"]
    assert list(rows)[:4] == ["memory", "sqlite", "redis", "etcd"]


def test_backends_json_is_machine_readable(tmp_path: Path) -> None:
    result = run_cli("backends", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert data["sqlite"]["schemes"] == ["sqlite"] and data["sqlite"]["extra"] == "sqlite"
    assert data["sqlite"]["semantics"]["shared_across_processes"] is True
    assert data["memory"]["semantics"]["shared_across_processes"] is False
    assert data["memory"]["status"] == "installed" and data["memory"]["install"] is None


def test_installed_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("sessionkv")
    if not script.exists():
        pytest.fail(f"the `sessionkv` script is not installed next to {sys.executable}")
    result = subprocess.run(
        [str(script), "backends"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("backend ")


async def _populate(url: str) -> None:
    async with create_store(url) as store:
        a = SessionRegistry(store, node_id="node-a", ttl=300)
        b = SessionRegistry(store, node_id="node-b", ttl=300)
        await a.register("call/1", "s1")
        await b.register("call/1", "s2")
        await b.register("call 2", "s3")
        await a.update_metrics("call/1", "s1", {"rtt_ms": 12.5, "loss": None})
        await b.request_close("call/1", "s1")


def test_sessions_of_all_calls_and_of_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    asyncio.run(_populate(url))

    result = run_cli("sessions", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["call", "session", "node", "age", "metrics", "close", "requested"]
    assert lines[1].split()[:3] == ["call", "2", "s3"]
    assert lines[2].split()[:3] == ["call/1", "s1", "node-a"]
    assert "loss=None rtt_ms=12.5" in lines[2] and lines[2].endswith("yes")
    assert lines[3].split()[:3] == ["call/1", "s2", "node-b"] and not lines[3].endswith("yes")
    assert lines[4] == f"3 session(s): {url}"

    result = run_cli("sessions", "--call", "call/1", "--json", cwd=tmp_path)
    assert result.returncode == 2 and "give a store URL or set SESSIONKV_URL" in result.stderr
    result = run_cli(
        "sessions", "--call", "call/1", "--json", cwd=tmp_path, env={"SESSIONKV_URL": url}
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [(d["session_id"], d["node_id"], d["close_requested"]) for d in data] == [
        ("s1", "node-a", True),
        ("s2", "node-b", False),
    ]
    assert data[0]["metrics"] == {"rtt_ms": 12.5, "loss": None}


def test_sessions_respects_the_namespace(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    asyncio.run(_populate(url + "?namespace=tenant-a"))
    assert main(["sessions", url, "--namespace", "tenant-b"]) == 0
    assert capsys.readouterr().out == f"no sessions: {url}\n"
    assert main(["sessions", url, "--namespace", "tenant-a", "--call", "call 2"]) == 0
    assert "1 session(s): call 'call 2' on" in capsys.readouterr().out


def test_configuration_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("sessions", "nosuch://x", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("sessionkv sessions: no backend serves 'nosuch://x'")
    assert "Traceback" not in result.stderr
    result = run_cli("sessions", "sqlite:///x.db?bogus=1", cwd=tmp_path)
    assert result.returncode == 2 and "unknown option(s) ['bogus']" in result.stderr
    result = run_cli("sessions", "sqlite://user:s3cret@host/x.db", cwd=tmp_path)
    assert result.returncode == 2 and "user:***@host" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_no_command_prints_help(capsys) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    for command in ("backends", "sessions", "check", "demo"):
        assert command in out


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:1/0?timeout=0",
        "redis://127.0.0.1:1/0?max_connections=0",
        "sqlite:///x.db?busy_timeout=0",
        "sqlite:///x.db?busy_timeout=inf",
        "sqlite:///x.db?sweep_batch=0",
        "sqlite:///x.db?synchronous=BOGUS",
        "memory://?sweep_interval=-1",
        "etcd://h:1?timeout=0",
        "sqlite:///x.db?busy_timeout=soon",
    ],
)
def test_every_bad_option_value_is_one_line_and_exit_2(tmp_path: Path, url: str) -> None:
    # REVIEW.md C21: out-of-range values were plain ValueErrors: a traceback, exit 1.
    done = run_cli("sessions", url, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sessionkv sessions: "), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.db").exists(), "a refused configuration must create nothing"


def test_a_password_with_reserved_characters_never_reaches_the_error(tmp_path: Path) -> None:
    # REVIEW.md C9: an unescaped '#', '/' or '?' in a password leaked it into messages.
    for url in ("redis://alice:pa#ss@localhost:6379/0", "etcd://bob:pw?x@h1:2379,h2:2379"):
        done = run_cli("sessions", url, cwd=tmp_path)
        assert done.returncode == 2
        secret = url.split(":")[2].split("@")[0]
        assert secret not in done.stderr and "***" in done.stderr, done.stderr
        assert "percent-encoded" in done.stderr
