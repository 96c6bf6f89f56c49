"""``exchnode simulate`` (``python -m exchnode.sim``): run a province under a simulated clock.

    exchnode simulate --province 52 --departments-per-county 3 --hours 12 \\
        --faults faults.toml --seed 7 [--json]

Prints the report as a table; with ``--json``, also one JSON object on the
last line.  Progress (each simulated hour) goes to stderr, as do the nodes'
warnings (``--log-level``).  Exit status 0 when every message sent was
delivered exactly once, 1 when not, 2 for a bad argument or schedule.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from exchnode.errors import UsageError
from exchnode.sim._faults import load_schedule, parse_duration
from exchnode.sim._runner import SERVICES, Scenario, simulate

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=os.environ.get("EXCHNODE_PROG", "exchnode") + " simulate",
        description="Run a federation of real exchnode nodes in one process, on simulated time.",
    )
    parser.add_argument("--province", default="52", help="two-digit GB/T 2260 code (default 52)")
    parser.add_argument("--departments-per-county", type=int, default=3)
    parser.add_argument("--departments-per-city", type=int, default=0)
    parser.add_argument("--departments-per-province", type=int, default=0)
    parser.add_argument("--cities", type=int, help="only the first N cities (default: all)")
    parser.add_argument("--counties-per-city", type=int, help="only the first N counties of each")
    parser.add_argument("--hours", type=float, default=12.0, help="simulated hours (default 12)")
    parser.add_argument(
        "--drain", default="1h", help="time after --hours to finish deliveries (default 1h)"
    )
    parser.add_argument("--faults", type=Path, help="fault schedule (TOML, or .json)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--messages-per-hour", type=float, default=60.0)
    parser.add_argument("--payload-bytes", type=int, default=1024)
    parser.add_argument(
        "--publishes-per-hour", type=float, default=0.0, help="catalog entries published"
    )
    parser.add_argument(
        "--directory",
        choices=("signed", "static"),
        default="signed",
        help="signed: nodes learn keys from the signed directory; static: every key given",
    )
    parser.add_argument(
        "--services",
        default=",".join(SERVICES),
        help=f"comma-separated, of {','.join(SERVICES)} (default all; '' for none)",
    )
    parser.add_argument("--latency", default="2ms", help="one-way latency of every link")
    parser.add_argument(
        "--county-bandwidth", default=None, help="bytes/s below county hubs (default unlimited)"
    )
    parser.add_argument("--top", type=int, default=15, help="nodes and links in the table")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    parser.add_argument(
        "--log-level", default="error", choices=("debug", "info", "warning", "error")
    )
    return parser


def _scenario(args: argparse.Namespace) -> Scenario:
    faults = load_schedule(args.faults) if args.faults is not None else []
    services = tuple(s for s in args.services.split(",") if s)
    bandwidth = None if args.county_bandwidth is None else float(args.county_bandwidth)
    return Scenario(
        province=args.province,
        departments_per_county=args.departments_per_county,
        departments_per_city=args.departments_per_city,
        departments_per_province=args.departments_per_province,
        cities=args.cities,
        counties_per_city=args.counties_per_city,
        hours=args.hours,
        drain=parse_duration(args.drain, "--drain"),
        seed=args.seed,
        faults=faults,
        messages_per_hour=args.messages_per_hour,
        payload_bytes=args.payload_bytes,
        publishes_per_hour=args.publishes_per_hour,
        directory=args.directory,
        services=services,
        latency=parse_duration(args.latency, "--latency"),
        county_bandwidth=bandwidth,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, args.log_level.upper())
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    try:
        scenario = _scenario(args)
        report = simulate(scenario, progress=lambda line: print(line, file=sys.stderr))
    except (UsageError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(report.table(top=args.top))
    if args.json:
        print(report.json_line())
    return 0 if report.messages.exactly_once else 1


if __name__ == "__main__":
    sys.exit(main())
