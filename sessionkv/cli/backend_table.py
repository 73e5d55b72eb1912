"""The README's backend table, rendered from the backends' own declarations.

A backend's :class:`~sessionkv.StoreSemantics` come from its :class:`BackendSpec`
(``semantics=``): no store module is imported, so no client library is needed.
``python -m sessionkv.cli.backend_table --write README.md`` refreshes the block between
the ``backend-table`` markers; ``--check`` fails when it has drifted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .. import StoreSemantics, available_backends

__all__ = [
    "BEGIN_MARKER",
    "END_MARKER",
    "render_backend_table",
    "replace_table_block",
]

BEGIN_MARKER = "<!-- backend-table:start -->"
END_MARKER = "<!-- backend-table:end -->"

HEADER = (
    "backend",
    "TTL resolution",
    "minimum TTL",
    "expiry lag",
    "shared across processes / hosts",
    "longest key",
    "scan cost",
    "extra",
)


class Declared(Protocol):
    """What a row needs: a :class:`BackendSpec` or a :class:`~sessionkv.BackendInfo`."""

    @property
    def name(self) -> str: ...
    @property
    def extra(self) -> str | None: ...
    @property
    def requirement(self) -> str: ...
    @property
    def semantics(self) -> StoreSemantics | None: ...


def _seconds(value: float, zero: str) -> str:
    if value == 0:
        return zero
    return f"{value:g} s" if value >= 1 else f"{value * 1000:g} ms"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _row(spec: Declared) -> tuple[str, ...]:
    extra = f"`{spec.requirement}`" if spec.extra else "built in"
    semantics = spec.semantics
    if semantics is None:
        return (spec.name, *(["not declared"] * 6), extra)
    return (
        spec.name,
        _seconds(semantics.ttl_resolution, "exact"),
        _seconds(semantics.min_ttl, "none"),
        _seconds(semantics.expiry_lag, "0 s"),
        f"{_yes_no(semantics.shared_across_processes)} / {_yes_no(semantics.shared_across_hosts)}",
        f"{semantics.max_key_bytes:,} B",
        f"`{semantics.scan_cost}`",
        extra,
    )


def render_backend_table(specs: Sequence[Declared] | None = None) -> str:
    """The Markdown table of ``specs`` (default: the built-in backends)."""
    if specs is None:
        specs = [info for info in available_backends() if info.builtin]
    rows = [HEADER, *(_row(spec) for spec in specs)]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(HEADER))
    return "\n".join(lines) + "\n"


def replace_table_block(text: str, table: str) -> str:
    """``text`` with the block between the markers replaced by ``table``."""
    start, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    if start == -1 or end == -1 or end < start:
        raise ValueError(f"no {BEGIN_MARKER} ... {END_MARKER} block found")
    head = text[: start + len(BEGIN_MARKER)]
    return f"{head}\n{table}{text[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sessionkv.cli.backend_table",
        description="Print the backend table, or update/check it in a Markdown file.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", type=Path, help="update the block in FILE")
    group.add_argument("--check", metavar="FILE", type=Path, help="exit 1 if FILE has drifted")
    args = parser.parse_args(argv)
    table = render_backend_table()
    if args.write is None and args.check is None:
        sys.stdout.write(table)
        return 0
    path: Path = args.write or args.check
    text = path.read_text(encoding="utf-8")
    updated = replace_table_block(text, table)
    if args.check is not None:
        if updated != text:
            print(
                f"{path}: the backend table is out of date; run "
                f"python -m sessionkv.cli.backend_table --write {path}",
                file=sys.stderr,
            )
            return 1
        return 0
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
