"""The ``sessionkv`` command line: ``backends``, ``sessions``, ``check`` and ``demo``.

Each command is one module with ``add_parser(subparsers)`` and ``run(args) -> int``;
:func:`main` dispatches. Expected failures (bad URL, missing extra, unreachable
server) print one line to stderr and exit 2; ``check`` exits 1 when a clause fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..core.errors import SessionKVError
from . import backends, check, demo, sessions

__all__ = ["main"]

COMMANDS = (backends, sessions, check, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessionkv",
        description="Inspect sessionkv backends and stores, check a live store against the "
        "contract, or watch a multi-node demo.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.run(args)
    except SessionKVError as exc:
        print(f"sessionkv {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
