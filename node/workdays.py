"""The working-day calendar a node counts answer deadlines with (``[sharing]``).

Theory of operation
-------------------
The State Council publishes each year's public holidays and make-up working
days (调休) in a notice; a node that types them into its TOML every year will
one day type one wrong, and a wrong date silently moves a county's legal
answer deadline.  So the lists come from a maintained library,
`chinese-calendar <https://pypi.org/project/chinese-calendar/>`_ (a data
lookup: its dates are in the package, it reads no network or file), pinned in
``constraints.txt``, and the TOML keeps only **overrides**:

* ``holidays``: days added as holidays (a local holiday, a notice the library
  has not caught up with);
* ``workdays``: make-up working days added (weekend days);
* ``removed``: days the library lists (either way) that do not apply here;
* ``own_years``: whole years the library does not cover whose holidays and
  make-up days the TOML lists in full (the operator takes responsibility);
* ``calendar = "none"``: no library at all, the TOML's lists only (as before
  issue 15); with ``own_years`` coverage is still checked, without it nothing is.

What cannot move a deadline silently is refused when the config loads
(:func:`build_calendar`, a :class:`ConfigError` naming the key and the date):
an override in a year neither the library nor ``own_years`` covers, a date
listed twice, a date in two lists (a holiday and a working day, or added and
removed), a ``removed`` day the library does not list, an ``own_years`` year
the library already covers.  An override that contradicts the library (a
holiday on the library's make-up day, say) is allowed -- that is what an
override is for -- and is logged as a warning at every start
(``SharingConfig.calendar_notes``).  A deadline counted into a year outside the
coverage is, with ``uncovered_years = "refuse"``, an error naming the year
(``sharing.CalendarCoverageError``); by default (``"weekends"``) it is counted
with weekdays only and is *provisional*: the daemon warns at start and every
hour in the log and in ``/health`` while such a year lies within
:data:`HORIZON` (:func:`coverage_warning`), and the sharing service logs each
deadline it counted that way, so nobody takes it for the legal one unawares.
Refusing every conditional request from mid-December because the library is a
release behind the State Council's notice would stop the exchange itself.

The library layer stays pure: ``exchnode.sharing.WorkCalendar`` is built here,
at the daemon's edge, and handed to the sharing service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import chinese_calendar

from exchnode.errors import UsageError
from exchnode.sharing import CHINA_STANDARD_TIME, WorkCalendar

if TYPE_CHECKING:
    from .config import DaemonConfig

__all__ = [
    "LIBRARY",
    "SOURCES",
    "UNCOVERED",
    "BuiltCalendar",
    "Overrides",
    "build_calendar",
    "coverage_warning",
    "library_coverage",
    "note_calendar",
    "watch_calendar",
]

LIBRARY = "chinese-calendar"
SOURCES = (LIBRARY, "none")
#: ``[sharing] uncovered_years``: count a year the calendar lacks with weekdays only, or refuse.
UNCOVERED = ("weekends", "refuse")
#: How far ahead of today a start looks for a year the calendar does not cover: a deadline of
#: the longest common answer period (10 working days) across the Spring Festival stays inside.
HORIZON = dt.timedelta(days=60)


@dataclass(frozen=True, slots=True)
class Overrides:
    """``[sharing]``'s lists, as the TOML gives them (dates checked as dates, nothing else)."""

    holidays: Sequence[dt.date] = ()
    workdays: Sequence[dt.date] = ()
    removed: Sequence[dt.date] = ()
    own_years: Sequence[int] = ()


@dataclass(frozen=True, slots=True)
class BuiltCalendar:
    calendar: WorkCalendar
    #: e.g. "chinese-calendar 1.11.0 (2004-2026) + 3 overrides", for the log and the admin
    source: str
    #: overrides that change a day the library decides: logged as warnings at every start
    notes: tuple[str, ...]


class CalendarError(UsageError):
    """An override refused; ``key`` names the TOML key it is under."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


def library_coverage() -> tuple[frozenset[dt.date], frozenset[dt.date], frozenset[int], str]:
    """The library's holidays, make-up days, the years it covers and its name and version."""
    holidays = frozenset(chinese_calendar.holidays)
    workdays = frozenset(chinese_calendar.workdays)
    years = {day.year for day in holidays | workdays}
    covered = frozenset(range(min(years), max(years) + 1))
    return holidays, workdays, covered, f"{LIBRARY} {metadata.version(LIBRARY)}"


def _span(years: frozenset[int]) -> str:
    return f"{min(years)}-{max(years)}" if years else "no year"


def build_calendar(source: str, overrides: Overrides, uncovered: str = "weekends") -> BuiltCalendar:
    """The calendar of ``source`` with ``overrides`` applied, or a :class:`CalendarError`."""
    if source not in SOURCES:
        raise CalendarError("calendar", f"must be one of {', '.join(SOURCES)}, got {source!r}")
    if uncovered not in UNCOVERED:
        raise CalendarError(
            "uncovered_years", f"must be one of {', '.join(UNCOVERED)}, got {uncovered!r}"
        )
    if source == LIBRARY:
        library_holidays, library_workdays, library_years, name = library_coverage()
    else:
        library_holidays, library_workdays, library_years = frozenset(), frozenset(), frozenset()
        name = "no library"
    own = _own_years(overrides.own_years, library_years, name)
    covered: frozenset[int] | None = library_years | own
    if source == "none" and not own:
        covered = None  # the operator's lists only, unchecked: the explicit opt-out
    lists = {"holidays": overrides.holidays, "workdays": overrides.workdays}
    lists["removed"] = overrides.removed
    seen: dict[dt.date, str] = {}
    for key, days in lists.items():
        for day in days:
            if day in seen:
                where = "twice in" if seen[day] == key else f"in {seen[day]} and in"
                raise CalendarError(key, f"{day} is listed {where} {key}: say once what it is")
            seen[day] = key
            if covered is not None and day.year not in covered:
                raise CalendarError(
                    key,
                    f"{day} lies in {day.year}, which the calendar ({name}, covering "
                    f"{_span(covered)}) does not cover: no override there can be checked; "
                    f"update {LIBRARY}, or list {day.year}'s holidays and make-up days in full "
                    f"and add {day.year} to own_years",
                )
    for day in overrides.removed:
        if day not in library_holidays and day not in library_workdays:
            raise CalendarError(
                "removed",
                f"{day} is neither a holiday nor a make-up day in {name}: it removes nothing",
            )
    notes = []
    for day in overrides.holidays:
        if day in library_workdays:
            notes.append(f"{day}: a make-up working day in {name}, a holiday here")
    for day in overrides.workdays:
        if day in library_holidays:
            notes.append(f"{day}: a holiday in {name}, a make-up working day here")
    for day in overrides.removed:
        kind = "holiday" if day in library_holidays else "make-up working day"
        notes.append(f"{day}: a {kind} in {name}, removed here")
    holidays = (library_holidays - set(overrides.removed) - set(overrides.workdays)) | set(
        overrides.holidays
    )
    workdays = (library_workdays - set(overrides.removed) - set(overrides.holidays)) | set(
        overrides.workdays
    )
    try:
        calendar = WorkCalendar(
            frozenset(holidays), frozenset(workdays), covered, provisional=uncovered == "weekends"
        )
    except UsageError as exc:
        raise CalendarError("workdays", str(exc)) from None
    count = sum(len(days) for days in lists.values())
    span = "unchecked" if covered is None else _span(covered)
    return BuiltCalendar(calendar, f"{name} ({span}) + {count} overrides", tuple(notes))


def _own_years(years: Sequence[int], library_years: frozenset[int], name: str) -> frozenset[int]:
    out: set[int] = set()
    for year in years:
        if not 1990 <= year <= 2200:
            raise CalendarError("own_years", f"{year} is not a plausible year")
        if year in library_years:
            raise CalendarError(
                "own_years",
                f"{year} is covered by {name}: list single days under holidays, workdays or "
                "removed instead",
            )
        if year in out:
            raise CalendarError("own_years", f"{year} is listed twice")
        out.add(year)
    return frozenset(out)


def coverage_warning(calendar: WorkCalendar, today: dt.date) -> str | None:
    """Why deadlines counted soon will be guessed or refused (a year within :data:`HORIZON`
    the calendar does not cover)."""
    covered = calendar.covered_years
    if covered is None:
        return None
    day = today
    while day <= today + HORIZON:
        if day.year not in covered:
            outcome = (
                "counted with weekdays only, a provisional deadline that may not be the legal one"
                if calendar.provisional
                else "refused"
            )
            return (
                f"the working-day calendar covers {_span(covered)}: an answer deadline counted "
                f"into {day.year} (from {day} on) will be {outcome}; update {LIBRARY} or list "
                f"{day.year}'s holidays and make-up days in [sharing] with own_years = "
                f"[{day.year}]"
            )
        day = dt.date(day.year + 1, 1, 1)
    return None


async def watch_calendar(config: DaemonConfig, log: Any, interval: float = 3600.0) -> None:
    """Every ``interval`` seconds, the coverage warning again while it holds (beside the
    certificates' and CRLs' hourly warnings): a provisional deadline must not go unnoticed."""
    while True:
        await asyncio.sleep(interval)
        today = dt.datetime.now(CHINA_STANDARD_TIME).date()
        problem = coverage_warning(config.sharing.calendar, today)
        if problem is not None:
            log.warning("working-day calendar runs out", problem=problem)


def note_calendar(config: DaemonConfig, log: Any, today: dt.date | None = None) -> None:
    """At start: where the calendar comes from, each override against the library, and a
    loud warning when deadlines counted soon fall outside what it covers."""
    sharing = config.sharing
    log.info("working-day calendar", source=sharing.calendar_source)
    for note in sharing.calendar_notes:
        log.warning("calendar override changes the library's day", override=note)
    day = dt.datetime.now(CHINA_STANDARD_TIME).date() if today is None else today
    problem = coverage_warning(sharing.calendar, day)
    if problem is not None:
        log.warning("working-day calendar runs out", problem=problem)
