"""``sessionkv backends``: every discovered backend, whether its client library is
installed (and which pip extra provides it when not), where it is shared, and every
plugin that failed to load."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Any

from .. import BackendInfo, StoreSemantics, available_backends
from ._output import format_table


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backends",
        help="list installed and missing backends",
        description="List every backend sessionkv discovered through entry points: "
        "installed ones, missing ones with the pip extra that provides them, and plugins "
        "that failed to load.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def _status(info: BackendInfo) -> str:
    if info.error is not None:
        return f"broken: {info.error}"
    if not info.installed:
        return f'missing: pip install "{info.requirement}"'
    return "installed"


def _sharing(semantics: StoreSemantics | None) -> str:
    if semantics is None:
        return "?"
    if semantics.shared_across_hosts:
        return "hosts"
    if semantics.shared_across_processes:
        return "processes"
    return "one process"


def _schemes(info: BackendInfo) -> str:
    served = [f"{s}://" for s in info.schemes if s not in info.shadowed_schemes]
    shadowed = [f"({s}:// taken)" for s in info.shadowed_schemes]
    return " ".join(served + shadowed) or "-"


def _as_json(info: BackendInfo) -> dict[str, Any]:
    semantics = info.semantics
    data = dataclasses.asdict(info)
    data["schemes"] = list(info.schemes)
    data["shadowed_schemes"] = list(info.shadowed_schemes)
    data["semantics"] = None
    if semantics is not None:  # strict JSON: no Infinity (an unbounded max_ttl is null)
        data["semantics"] = {
            name: None if isinstance(value, float) and math.isinf(value) else value
            for name, value in dataclasses.asdict(semantics).items()
        }
    data["status"] = _status(info).split(":", 1)[0]
    data["install"] = None if info.installed or info.error else f'pip install "{info.requirement}"'
    return data


def run(args: argparse.Namespace) -> int:
    infos = available_backends()
    if args.json:
        print(json.dumps([_as_json(info) for info in infos], indent=2))
        return 0
    rows = [
        (info.name, _schemes(info), _sharing(info.semantics), _status(info), info.plugin)
        for info in infos
    ]
    print(format_table(("backend", "schemes", "shared by", "status", "plugin"), rows))
    return 0
