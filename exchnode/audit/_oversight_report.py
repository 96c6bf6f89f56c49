"""The oversight report as values, and its forms: JSON, a fixed-width table, CSV (pure).

``oversight`` counts; this module holds what it counted and shows it.  A
:class:`OversightReport` is per department (:class:`Department`, each with
its :class:`Figures`), per level and in total (:class:`LevelRow`), the
:class:`StaleResource` list and every node read (:class:`NodeRow`).

* :meth:`OversightReport.to_json`: plain types; times as ms and as CST text.
* :meth:`OversightReport.table`: for a terminal.  Columns are aligned by
  display width (a CJK character takes two), counts right-aligned.
* CSV, for auditors opening it in a spreadsheet.  :meth:`~OversightReport.csv_tables`
  gives one rectangular table per section (``summary``, ``levels`` with an
  ``all`` row, ``departments``, ``stale_resources``, ``nodes``): a header
  row, one row per line, empty cells for unknown values (never a zero that
  was not counted).  :meth:`~OversightReport.csv_long` gives every figure on
  its own row (``section, subject, level, metric, value``), the input a pivot
  table wants.  Lines end in CRLF (RFC 4180); writers should add a UTF-8 BOM
  (``encoding="utf-8-sig"``) so that spreadsheets read the Chinese names.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from exchnode.catalog import UpdateCycle
from exchnode.core import Level, NodeName
from exchnode.sharing import CHINA_STANDARD_TIME

__all__ = [
    "DAY_S",
    "Department",
    "Figures",
    "LevelRow",
    "LogStatus",
    "NodeRow",
    "OversightReport",
    "StaleResource",
    "level_name",
]

DAY_S: Final = 86_400


class LogStatus(enum.Enum):
    VERIFIED = "verified"  # verified end to end; every record counted
    FAILED = "failed"  # findings: only the records under the last head that verifies
    UNREACHABLE = "unreachable"  # nothing could be read
    NOT_READ = "not-read"  # a provider known from the catalog whose node was not asked


def level_name(level: Level) -> str:
    return level.name.lower()


def _level_of(name: str) -> Level:
    return NodeName.parse(name).level


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    """The scored figures of a department, a level, or the whole report (flat, CSV-ready)."""

    resources: int
    unconditional: int
    conditional: int
    not_shared: int
    requested: int
    granted: int
    refused: int
    refused_not_shared: int
    expired: int
    pending: int
    escalated: int
    revoked: int
    conditional_answers: int  # grants and refusals of conditional requests
    answers_within_rule: int
    answers_over_rule: int  # late answers and expiries
    answer_hours_median: float | None
    answer_hours_max: float | None
    answer_workdays_median: float | None
    answer_workdays_max: int | None
    records_published: int
    records_sent: int
    records_used: int  # this department's records received by their users
    records_received: int  # records this department received as a user

    @property
    def shared(self) -> int:
        return self.unconditional + self.conditional

    def columns(self) -> dict[str, Any]:
        """Every figure by name, ratios included, in a fixed order (JSON and CSV)."""
        out: dict[str, Any] = {
            "resources": self.resources,
            "unconditional": self.unconditional,
            "conditional": self.conditional,
            "not_shared": self.not_shared,
            "shared_ratio": _ratio(self.shared, self.resources),
            "unconditional_ratio": _ratio(self.unconditional, self.resources),
            "conditional_ratio": _ratio(self.conditional, self.resources),
            "not_shared_ratio": _ratio(self.not_shared, self.resources),
        }
        for name in self.__slots__:
            if name not in out:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Department:
    name: str
    level: Level
    log: LogStatus
    figures: Figures


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelRow:
    level: Level | None  # None: every level
    departments: int
    figures: Figures

    @property
    def label(self) -> str:
        return "all" if self.level is None else level_name(self.level)


@dataclass(frozen=True, slots=True, kw_only=True)
class StaleResource:
    provider: str
    code: str
    name: str
    update_cycle: UpdateCycle
    last_update_ms: int
    source: str  # "records" (a publication in the provider's log) or "catalog"
    due_ms: int  # when it became stale

    def overdue_days(self, now_ms: int) -> float:
        return round((now_ms - self.due_ms) / (DAY_S * 1000), 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRow:
    node: str
    log: LogStatus
    records: int  # read (from the checkpoint on)
    last_traffic_ms: int | None
    zombie: bool | None  # None: not known (the log could not be read)
    problem: str = ""


# --- the report and its forms ----------------------------------------------------------


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    # ISO 8601 with its offset, to the minute: the one convention of every output.
    moment = dt.datetime.fromtimestamp(ms / 1000, CHINA_STANDARD_TIME)
    return moment.isoformat(timespec="minutes")


@dataclass(frozen=True, slots=True, kw_only=True)
class OversightReport:
    generated_ms: int
    since_ms: int | None
    answer_days: int
    zombie_after_s: int
    stale_grace_s: int
    departments: tuple[Department, ...]
    levels: tuple[LevelRow, ...]
    totals: LevelRow
    stale: tuple[StaleResource, ...]
    nodes: tuple[NodeRow, ...]

    @property
    def zombies(self) -> list[NodeRow]:
        return [n for n in self.nodes if n.zombie]

    @property
    def unread(self) -> list[NodeRow]:
        """Nodes whose log failed verification or could not be read."""
        return [n for n in self.nodes if n.log is not LogStatus.VERIFIED]

    # -- JSON

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_ms": self.generated_ms,
            "generated": _when(self.generated_ms),
            "since_ms": self.since_ms,
            "settings": {
                "answer_days": self.answer_days,
                "zombie_after_s": self.zombie_after_s,
                "stale_grace_s": self.stale_grace_s,
            },
            "totals": {"departments": self.totals.departments, **self.totals.figures.columns()},
            "levels": [self._level_json(row) for row in self.levels],
            "departments": [self._department_json(d) for d in self.departments],
            "stale_resources": [self._stale_json(s) for s in self.stale],
            "nodes": [self._node_json(n) for n in self.nodes],
            "zombies": [n.node for n in self.zombies],
            "unverified": [
                {"node": n.node, "log": n.log.value, "problem": n.problem} for n in self.unread
            ],
        }

    @staticmethod
    def _level_json(row: LevelRow) -> dict[str, Any]:
        return {"level": row.label, "departments": row.departments, **row.figures.columns()}

    @staticmethod
    def _department_json(d: Department) -> dict[str, Any]:
        return {
            "department": d.name,
            "level": level_name(d.level),
            "log": d.log.value,
            **d.figures.columns(),
        }

    def _stale_json(self, s: StaleResource) -> dict[str, Any]:
        return {
            "provider": s.provider,
            "code": s.code,
            "name": s.name,
            "update_cycle": s.update_cycle.value,
            "last_update_ms": s.last_update_ms,
            "last_update": _when(s.last_update_ms),
            "source": s.source,
            "overdue_days": s.overdue_days(self.generated_ms),
        }

    def _node_json(self, n: NodeRow) -> dict[str, Any]:
        idle = None if n.last_traffic_ms is None else self.generated_ms - n.last_traffic_ms
        return {
            "node": n.node,
            "level": level_name(_level_of(n.node)),
            "log": n.log.value,
            "records": n.records,
            "last_traffic_ms": n.last_traffic_ms,
            "last_traffic": _when(n.last_traffic_ms),
            "idle_days": None if idle is None else round(idle / (DAY_S * 1000), 2),
            "zombie": n.zombie,
            "problem": n.problem,
        }

    # -- CSV

    def csv_tables(self) -> dict[str, str]:
        """One CSV per section (file name → text): a header row, then one row per line."""
        data = self.to_json()
        sections: dict[str, list[dict[str, Any]]] = {
            "summary.csv": [
                {"setting": key, "value": value}
                for key, value in (
                    ("generated", data["generated"]),
                    ("since_ms", self.since_ms),
                    *data["settings"].items(),
                )
            ],
            "levels.csv": [*data["levels"], {"level": "all", **data["totals"]}],
            "departments.csv": data["departments"],
            "stale_resources.csv": data["stale_resources"],
            "nodes.csv": data["nodes"],
        }
        headers = {
            "stale_resources.csv": list(_STALE_COLUMNS),
            "nodes.csv": list(_NODE_COLUMNS),
        }
        out = {}
        for name, rows in sections.items():
            columns = list(rows[0]) if rows else headers.get(name, [])
            out[name] = _csv(columns, [[row.get(c) for c in columns] for row in rows])
        return out

    def csv_long(self) -> str:
        """Every figure on its own row: section, subject, level, metric, value."""
        data = self.to_json()
        rows: list[list[Any]] = []
        for row in [*data["levels"], {"level": "all", **data["totals"]}]:
            rows += _long("level", row["level"], row["level"], row, {"level"})
        for row in data["departments"]:
            rows += _long(
                "department", row["department"], row["level"], row, {"department", "level"}
            )
        for row in data["stale_resources"]:
            subject = f"{row['provider']} {row['code']}"
            level = level_name(_level_of(row["provider"]))
            rows += _long("stale_resource", subject, level, row, {"provider", "code"})
        for row in data["nodes"]:
            rows += _long("node", row["node"], row["level"], row, {"node", "level"})
        return _csv(["section", "subject", "level", "metric", "value"], rows)

    # -- text

    def table(self) -> str:
        """A readable fixed-width report: departments, levels, stale resources, nodes."""
        lines = [self._headline(), ""]
        head = ["DEPARTMENT", "LEVEL", *_FIGURE_HEADER, "LOG"]
        figures = range(2, 2 + len(_FIGURE_HEADER))
        rows = [
            [d.name, level_name(d.level), *self._cells(d.figures), d.log.value]
            for d in self.departments
        ]
        lines += [
            "departments   G/R/E/P: requests held as provider, now granted/refused/expired/pending",
            f"              ON TIME: conditional answers within {self.answer_days} working days;"
            " USED: its records its users received",
        ]
        lines += _render(head, rows, right=figures)
        rows = [
            [row.label, str(row.departments), *self._cells(row.figures)]
            for row in [*self.levels, self.totals]
        ]
        lines += ["", "levels"]
        lines += _render(
            ["LEVEL", "DEPTS", *_FIGURE_HEADER], rows, right=range(1, 2 + len(_FIGURE_HEADER))
        )
        grace = f" + {self.stale_grace_s / 3600:g} h" if self.stale_grace_s else ""
        lines += ["", f"stale resources (declared update cycle{grace} passed): {len(self.stale)}"]
        if self.stale:
            rows = [
                [s.provider, s.code, s.name, s.update_cycle.value,
                 f"{_when(s.last_update_ms)} ({s.source})",
                 f"{s.overdue_days(self.generated_ms)} d"]
                for s in self.stale
            ]  # fmt: skip
            lines += _render(["PROVIDER", "CODE", "NAME", "CYCLE", "LAST UPDATE", "OVERDUE"], rows)
        zombies, unread = self.zombies, self.unread
        days = self.zombie_after_s / DAY_S
        lines += ["", f"zombie nodes (no traffic for {days:g} d): {len(zombies)}"
                  f"; logs not verified or not read: {len(unread)}"]  # fmt: skip
        shown = [n for n in self.nodes if n.zombie or n.log is not LogStatus.VERIFIED]
        if shown:
            rows = [
                [n.node, n.log.value, _when(n.last_traffic_ms) or "never",
                 "zombie" if n.zombie else ("?" if n.zombie is None else ""), n.problem]
                for n in shown
            ]  # fmt: skip
            lines += _render(["NODE", "LOG", "LAST TRAFFIC", "", "PROBLEM"], rows)
        return "\n".join(lines)

    def _cells(self, f: Figures) -> list[str]:
        shared = _ratio(f.shared, f.resources)
        hours = ""
        if f.answer_hours_median is not None:
            hours = f"{f.answer_hours_median:g}/{f.answer_hours_max:g}"
        answered = f.answers_within_rule + f.answers_over_rule
        return [
            str(f.resources),
            f"{f.unconditional}/{f.conditional}/{f.not_shared}",
            "" if shared is None else f"{shared:.0%}",
            str(f.requested),
            f"{f.granted}/{f.refused}/{f.expired}/{f.pending}",
            f"{f.answers_within_rule} of {answered}" if answered else "",
            hours,
            str(f.records_published),
            str(f.records_used),
        ]

    def _headline(self) -> str:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.log.value] = counts.get(n.log.value, 0) + 1
        logs = ", ".join(
            f"{counts.get(s.value, 0)} {s.value}" for s in LogStatus if s is not LogStatus.NOT_READ
        )
        period = f" since {_when(self.since_ms)}" if self.since_ms is not None else ""
        return (
            f"oversight report at {_when(self.generated_ms)}{period}: "
            f"{len(self.nodes)} node logs ({logs})"
        )


# The table's figure columns (``OversightReport._cells``).
_FIGURE_HEADER = ("RES", "U/C/N", "SHARED", "REQ", "G/R/E/P", "ON TIME", "ANSWER h med/max",
                  "PROVIDED", "USED")  # fmt: skip
_STALE_COLUMNS = ("provider", "code", "name", "update_cycle", "last_update_ms", "last_update",
                  "source", "overdue_days")  # fmt: skip
_NODE_COLUMNS = ("node", "level", "log", "records", "last_traffic_ms", "last_traffic",
                 "idle_days", "zombie", "problem")  # fmt: skip


def _long(
    section: str, subject: str, level: str, row: Mapping[str, Any], skip: set[str]
) -> list[list[Any]]:
    return [[section, subject, level, key, value] for key, value in row.items() if key not in skip]


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180, as spreadsheets expect
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue()


def _width(text: str) -> int:
    """Display columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _render(header: list[str], rows: list[list[str]], right: Iterable[int] = ()) -> list[str]:
    widths = [_width(h) for h in header]
    for row in rows:
        widths = [max(w, _width(cell)) for w, cell in zip(widths, row, strict=True)]
    numeric = set(right)

    def line(cells: list[str]) -> str:
        out = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            pad = " " * (width - _width(cell))
            out.append(pad + cell if i in numeric else cell + pad)
        return "  ".join(out).rstrip()

    return [line(header), *(line(row) for row in rows)]
