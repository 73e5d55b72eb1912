"""`sessionkv check URL`: the contract suite against a live store, with progress, a
summary, an exit code, and nothing left behind in the store."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sessionkv import create_store
from sessionkv.contract_tests.servers import require_binary

pytestmark = pytest.mark.sqlite

# A third-party backend whose keys(prefix) treats the prefix as a glob: installed as pip
# would (dist-info + modules on PYTHONPATH), so `check` reaches it through its URL.
GLOB_PLUGIN = """
from sessionkv import BackendSpec, hookimpl

@hookimpl
def sessionkv_backends():
    return [BackendSpec(name="globmem", schemes=("globmem",), factory="globmem_store:Store")]
"""
GLOB_STORE = """
import fnmatch
from sessionkv import InMemorySessionKVStore

class Store(InMemorySessionKVStore):
    @classmethod
    def from_url(cls, url, **options):
        return cls(**options)

    async def _scan(self, prefix):
        everything = await super()._scan("")
        return [(k, v) for k, v in everything if fnmatch.fnmatchcase(k, prefix + "*")]

    async def _keys(self, prefix):
        return [k for k, _ in await self._scan(prefix)]
"""


def run_check(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "sessionkv", "check", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_check_passed(result: subprocess.CompletedProcess[str], url: str) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    lines = result.stdout.splitlines()
    total = int(re.fullmatch(r"sessionkv check: (\d+) contract tests against .*", lines[0])[1])
    assert total > 50
    progress = [line for line in lines if line.startswith("[")]
    assert len(progress) == total and all(" ok " in line for line in progress)
    assert progress[-1].startswith(f"[{total}/{total}]")
    assert re.search(
        rf"^sessionkv check: {total} passed, 0 failed, 0 skipped in ", result.stdout, re.M
    )
    assert re.search(
        r"^cleaned up \d+ namespace\(s\) under sessionkv-check-\w+-\*", result.stdout, re.M
    )


def test_check_passes_on_sqlite_and_leaves_no_key(tmp_path: Path) -> None:
    db = tmp_path / "check.db"
    url = f"sqlite:///{db}"
    result = run_check(url, cwd=tmp_path)
    assert_check_passed(result, url)

    rows = sqlite3.connect(db).execute("SELECT DISTINCT namespace FROM sessionkv_entries")
    namespaces = [bytes(ns).decode() if isinstance(ns, bytes) else ns for (ns,) in rows]
    assert all(ns.startswith("sessionkv-check-") for ns in namespaces), namespaces

    async def live_keys() -> list[str]:
        found = []
        for namespace in namespaces:  # only expired rows may wait for the sweep
            async with create_store(url, namespace=namespace) as store:
                found += await store.keys("")
        return found

    assert asyncio.run(live_keys()) == []


def test_failing_clause_exits_1_with_the_fix(tmp_path: Path) -> None:
    info = tmp_path / "globmem-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: globmem\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[sessionkv]\nglobmem = globmem_plugin\n")
    (tmp_path / "globmem_plugin.py").write_text(textwrap.dedent(GLOB_PLUGIN))
    (tmp_path / "globmem_store.py").write_text(textwrap.dedent(GLOB_STORE))

    result = run_check(
        "globmem://", "-k", "prefix_is_literal or set_then_get",
        cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"^\[\d/2\] ok    set then get$", result.stdout, re.M)
    assert re.search(r"^\[\d/2\] FAIL  keys prefix is literal$", result.stdout, re.M)
    assert "as a literal string" in result.stdout and "escape * ? [ ]" in result.stdout
    assert "sessionkv check: 1 passed, 1 failed, 0 skipped in " in result.stdout


def test_unreachable_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = run_check(f"sqlite:///{tmp_path / 'a-file' / 'x.db'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("sessionkv check: ") and result.stderr.count("\n") == 1


def test_unknown_scheme_exit_2(tmp_path: Path) -> None:
    result = run_check("nosuch://", cwd=tmp_path)
    assert result.returncode == 2 and "no backend serves 'nosuch://'" in result.stderr


@pytest.mark.etcd
@pytest.mark.slow  # the whole suite on real leases: ~30 s
def test_check_passes_on_etcd(etcd_server, tmp_path: Path) -> None:
    result = run_check(etcd_server.url, cwd=tmp_path)
    assert_check_passed(result, etcd_server.url)

    # The backend keeps namespace <ns> under the etcd prefix sessionkv/<ns>/.
    etcdctl = require_binary("etcdctl", "apt-get install etcd-client")
    leftovers = subprocess.run(
        [etcdctl, f"--endpoints={etcd_server.endpoint}", "get", "--prefix", "--keys-only",
         "sessionkv/sessionkv-check-"],
        env={**os.environ, "ETCDCTL_API": "3"}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert leftovers.returncode == 0, leftovers.stderr
    assert leftovers.stdout.strip() == ""


@pytest.mark.redis
def test_check_passes_on_redis(redis_server, tmp_path: Path) -> None:
    result = run_check(redis_server.url, cwd=tmp_path)
    assert_check_passed(result, redis_server.url)
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        leftovers = [key for key in client.scan_iter() if b"sessionkv-check-" in key]
    finally:
        client.close()
    assert leftovers == []
