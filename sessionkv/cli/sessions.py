"""``sessionkv sessions [URL]``: the sessions registered on a store, of one call
(``--call``) or of every call, with their node, age, metrics and pending close
requests, as a table or as JSON. Read-only: it never writes to the store."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import defaultdict
from typing import Any

from ..core.errors import ConfigurationError
from ..core.plugins import create_store
from ..core.registry import SessionRegistry
from ..core.store import SessionKVStore
from ..core.types import SessionInfo
from ..core.urls import redact_url
from ._output import format_table


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sessions",
        help="list the sessions on a store",
        description="List the sessions registered on the store at URL (default: "
        "$SESSIONKV_URL): those of one call with --call, else those of every call.",
    )
    parser.add_argument("url", nargs="?", help="store URL, e.g. sqlite:///sessions.db")
    parser.add_argument("--call", metavar="CALL_ID", help="only the sessions of this call")
    parser.add_argument("--namespace", help="the store namespace the registry uses")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


async def list_sessions(
    store: SessionKVStore, call_id: str | None
) -> list[tuple[SessionInfo, bool]]:
    """Each session (of ``call_id``, or of every call) with whether a close is pending."""
    registry = SessionRegistry(store, node_id="sessionkv-cli")
    infos = await (registry.get_for_call(call_id) if call_id else registry.get_all())
    by_call: dict[str, dict[str, str]] = defaultdict(dict)
    for info in infos:
        by_call[info.call_id][info.session_id] = info.call_id
    closing: set[tuple[str, str]] = set()
    for call, sessions in by_call.items():
        closing.update((call, s) for s in await registry.get_close_requests(sessions))
    infos.sort(key=lambda i: (i.call_id, i.session_id))
    return [(info, (info.call_id, info.session_id) in closing) for info in infos]


def _age(since: float | None, now: float) -> str:
    return "-" if since is None else f"{max(0.0, now - since):.1f} s"


def _metrics(metrics: dict[str, Any]) -> str:
    return " ".join(f"{name}={value}" for name, value in sorted(metrics.items())) or "-"


async def _run(url: str, args: argparse.Namespace) -> int:
    options = {} if args.namespace is None else {"namespace": args.namespace}
    async with create_store(url, **options) as store:
        found = await list_sessions(store, args.call)
    if args.json:
        print(json.dumps([{**i.to_dict(), "close_requested": c} for i, c in found], indent=2))
        return 0
    where = f"call {args.call!r} on {redact_url(url)}" if args.call else redact_url(url)
    if not found:
        print(f"no sessions: {where}")
        return 0
    now = time.time()
    rows = [
        (
            info.call_id,
            info.session_id,
            info.node_id,
            _age(info.started_at, now),
            _metrics(info.metrics),
            "yes" if closing else "",
        )
        for info, closing in found
    ]
    header = ("call", "session", "node", "age", "metrics", "close requested")
    print(format_table(header, rows))
    print(f"{len(found)} session(s): {where}")
    return 0


def run(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("SESSIONKV_URL")
    if not url:
        raise ConfigurationError("give a store URL or set SESSIONKV_URL")
    return asyncio.run(_run(url, args))
