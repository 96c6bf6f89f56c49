"""The rows every section of ``scale.py`` reports, as a table and as JSON (one place for both).

A section is a module ``_scale_<name>.py`` with ``section(quick) -> list[Row]``;
each row says what was measured (``figure``, ``value``, ``unit``), the
issue's ``target``, the figure ``before`` the change, and whether the target
is ``met`` (None where the figure has no target or a quick run cannot judge
it).  ``scale.py`` runs them together; each also runs alone through
:func:`section_main`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence

Row = dict[str, object]
COLUMNS = ("figure", "value", "unit", "target", "before", "met")


def cell(value: object) -> str:
    """A value as the table shows it: yes/NO for a target, '-' for nothing, thousands separated."""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if value is None or value == "":
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def table(rows: Sequence[Row], columns: Sequence[str] = COLUMNS) -> str:
    """The rows as an aligned text table with a rule under the header."""
    lines = [tuple(columns)] + [tuple(cell(row.get(key)) for key in columns) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def report(name: str, rows: Sequence[Row], *, quick: bool, seconds: object) -> str:
    """The one JSON object a benchmark prints last with ``--json``."""
    return json.dumps(
        {
            "benchmark": name,
            "quick": quick,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "seconds": seconds,
            "rows": list(rows),
        },
        default=str,
    )


def section_main(
    name: str,
    doc: str,
    run: Callable[[argparse.Namespace], list[Row]],
    argv: Sequence[str],
    *,
    quick_help: str,
    configure: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Run one section alone: its table, and with ``--json`` one JSON object on the last line."""
    parser = argparse.ArgumentParser(description=doc.strip().split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    if configure is not None:
        configure(parser)
    args = parser.parse_args(list(argv))
    started = time.perf_counter()
    rows = run(args)
    print(table(rows))
    if args.json:
        print(report(name, rows, quick=args.quick, seconds=round(time.perf_counter() - started, 1)))
    return 0
