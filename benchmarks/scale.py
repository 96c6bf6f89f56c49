#!/usr/bin/env python3
"""National scale: what a node holds and sends as the federation grows (issue 13).

    python3 dev.py bench scale [--quick] [--only directory,catalog,sharing,audit] [--json]

Each section measures one part of the design on the library's real classes,
beside the figure the issue measured on the code before it ("before"), and
says whether the issue's target is met:

* **directory** (``_scale_directory``): a province of 10,000 nodes (1
  province hub, 9 city hubs, 88 county hubs, the rest departments); state a
  department and each hub holds, bytes per link per refresh, the cost of one
  change, a county hub's state when the rest of the province doubles.
* **catalog** (``_scale_catalog``): the same province's catalogs: rounds
  until every hub holds its subtree, state per node, bytes per link for one
  changed entry at 10,000 and 20,000 nodes, bytes written per change.
* **sharing** (``_scale_sharing``): one record published to 10,000
  subscriptions (CPU and bytes written, and at half the size to show the
  growth), a subscriber's read, 2,000 subscribers with identical terms.
* **audit** (``_scale_audit``): a log of 1,000,000 records verified and
  restarted, peak memory of each in a fresh process.

``--quick`` runs each section at a size CI can afford (its rows say the size);
the targets are judged on the full run.  Every section reports what it
measured; a target it does not meet says so in the ``met`` column.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from _scale_report import COLUMNS, Row, report, table

SECTIONS = ("directory", "catalog", "sharing", "audit")


def _run_section(name: str, quick: bool) -> list[Row]:
    module = importlib.import_module(f"_scale_{name}")
    rows: list[Row] = module.section(quick)
    return [{"section": name, **row} for row in rows]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI sizes (targets judged on full)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"sections, comma-separated: {SECTIONS}"
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    rows: list[Row] = []
    timings: dict[str, float] = {}
    for name in chosen:
        print(f"scale: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        rows.extend(_run_section(name, args.quick))
        timings[name] = round(time.perf_counter() - started, 1)
        print(f"scale: {name} done in {timings[name]} s", file=sys.stderr, flush=True)
    print(table(rows, ("section", *COLUMNS)))
    unmet = [row for row in rows if row.get("met") is False]
    print(
        f"\n{len(rows)} figures, {len(unmet)} target(s) not met"
        + (" (quick sizes)" if args.quick else "")
    )
    if args.json:
        print(report("scale", rows, quick=args.quick, seconds=timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
