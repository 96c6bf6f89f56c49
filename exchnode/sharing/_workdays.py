"""Working days in China Standard Time, for the answer deadlines of the sharing rules (pure).

Theory of operation
-------------------
政务数据共享条例 requires a provider to answer a conditional request within a
time limit counted in working days (10 by default; local rules say 5).  A
working day is a weekday that is not a public holiday, or a weekend day the
State Council has declared a make-up working day (调休).  Both lists change
every year, so they are configuration: :class:`WorkCalendar` holds them.

The counting rule, chosen to match the civil code's rule for periods (民法典
第二百零一条: the day on which a period starts is not counted):

* the request's *day* is its calendar date in China Standard Time;
* day 1 is the first working day *after* that date, whatever the hour of
  arrival and whether or not the arrival day was itself a working day (a
  request at 23:59 on a Friday and one at 09:00 on the Sunday after both
  count from Monday);
* the deadline is the end of day N, i.e. 00:00 CST of the next calendar day,
  as milliseconds since 1970.  An answer is timely if it is made strictly
  before the deadline.

China Standard Time is a fixed UTC+8 with no daylight saving since 1991, so a
fixed offset is exact and needs no tz database on the host.

Coverage: the lists are only right for the years someone checked them
against the State Council's notice.  A calendar built from a maintained list
(the daemon's ``node.calendar``, from ``chinese-calendar``) says which years
that is (``covered_years``); counting a deadline across a day of any other
year raises :class:`CalendarCoverageError` naming the year, because guessing
"weekdays only" there could move a county's legal deadline silently.  A
calendar built ``provisional`` counts weekdays only there instead, and its
caller says so loudly (:meth:`WorkCalendar.uncovered_between` names the
years a deadline was guessed over): the daemon's default, so that a library
a release behind the State Council's notice does not stop every conditional
request at the turn of the year.  A calendar without ``covered_years``
(None) checks nothing: what tests and callers that own their lists get.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from exchnode.errors import UsageError

__all__ = [
    "CHINA_STANDARD_TIME",
    "DEFAULT_ANSWER_DAYS",
    "CalendarCoverageError",
    "WorkCalendar",
    "check_answer_days",
    "local_date",
]

CHINA_STANDARD_TIME = dt.timezone(dt.timedelta(hours=8), "CST")
DEFAULT_ANSWER_DAYS = 10
MAX_ANSWER_DAYS = 366
_SATURDAY = 5
_MS_PER_SECOND = 1000


class CalendarCoverageError(UsageError):
    """A deadline would be counted across a year the calendar's lists do not cover."""

    def __init__(self, year: int, covered: frozenset[int]) -> None:
        span = f"{min(covered)}-{max(covered)}" if covered else "no year"
        super().__init__(
            f"the working-day calendar does not cover {year} (it covers {span}): a deadline "
            f"counted into {year} would be a guess; update the calendar (chinese-calendar) or "
            f"declare {year}'s holidays and make-up days in [sharing]"
        )
        self.year = year


def check_answer_days(working_days: object) -> int:
    """``working_days`` if it is a whole number of days a deadline may be counted in."""
    if type(working_days) is not int or not 1 <= working_days <= MAX_ANSWER_DAYS:
        raise UsageError(f"working_days must be 1..{MAX_ANSWER_DAYS}, got {working_days!r}")
    return working_days


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    """Which dates are working days: weekdays, minus holidays, plus make-up days.

    ``covered_years``: the years the lists are known right for (None: not checked).
    ``provisional``: outside them, count weekdays only instead of refusing (see the module).
    """

    holidays: frozenset[dt.date] = frozenset()
    makeup_workdays: frozenset[dt.date] = frozenset()
    covered_years: frozenset[int] | None = None
    provisional: bool = False

    def __post_init__(self) -> None:
        for day in self.holidays | self.makeup_workdays:
            if type(day) is not dt.date:
                raise UsageError(f"calendar dates are datetime.date values, got {day!r}")
            if self.covered_years is not None and day.year not in self.covered_years:
                raise CalendarCoverageError(day.year, self.covered_years)
        both = self.holidays & self.makeup_workdays
        if both:
            raise UsageError(f"{min(both)} is listed both as a holiday and as a make-up day")
        weekdays = sorted(day for day in self.makeup_workdays if day.weekday() < _SATURDAY)
        if weekdays:
            raise UsageError(f"make-up working day {weekdays[0]} is not a weekend day")

    @classmethod
    def of(
        cls,
        *,
        holidays: Iterable[str | dt.date] = (),
        makeup_workdays: Iterable[str | dt.date] = (),
    ) -> WorkCalendar:
        """A calendar from ISO dates (``"2026-10-01"``), as configuration files write them."""
        return cls(frozenset(map(_date, holidays)), frozenset(map(_date, makeup_workdays)))

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.makeup_workdays:
            return True
        return day.weekday() < _SATURDAY and day not in self.holidays

    def deadline(self, start_ms: int, working_days: int = DEFAULT_ANSWER_DAYS) -> int:
        """The end of the ``working_days``-th working day after the day of ``start_ms``.

        Raises :class:`CalendarCoverageError` when a day it counts over lies
        in a year outside ``covered_years``.
        """
        check_answer_days(working_days)
        day = local_date(start_ms)
        for _ in range(working_days):
            day = self.next_working_day(day)
        return _start_of(day + dt.timedelta(days=1))

    def next_working_day(self, day: dt.date) -> dt.date:
        """The first working day strictly after ``day``.

        Terminates: the holiday list is finite, so some later weekday is free.
        """
        day += dt.timedelta(days=1)
        self._check_covered(day)
        while not self.is_working_day(day):
            day += dt.timedelta(days=1)
            self._check_covered(day)
        return day

    def uncovered_between(self, start_ms: int, end_ms: int) -> tuple[int, ...]:
        """The years from ``start_ms``'s day to ``end_ms``'s that ``covered_years`` lacks.

        Non-empty for a deadline a ``provisional`` calendar counted with weekdays only.
        """
        if self.covered_years is None:
            return ()
        years = range(local_date(start_ms).year, local_date(max(start_ms, end_ms)).year + 1)
        return tuple(year for year in years if year not in self.covered_years)

    def _check_covered(self, day: dt.date) -> None:
        covered = self.covered_years
        if covered is not None and day.year not in covered and not self.provisional:
            raise CalendarCoverageError(day.year, covered)


def local_date(ms: int) -> dt.date:
    """The calendar date in China Standard Time of an instant in ms since 1970."""
    if type(ms) is not int or ms < 0:
        raise UsageError(f"times are non-negative integer ms since 1970, got {ms!r}")
    return dt.datetime.fromtimestamp(ms // _MS_PER_SECOND, CHINA_STANDARD_TIME).date()


def _start_of(day: dt.date) -> int:
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=CHINA_STANDARD_TIME)
    return int(midnight.timestamp()) * _MS_PER_SECOND


def _date(value: str | dt.date) -> dt.date:
    if type(value) is dt.date:
        return value
    if not isinstance(value, str):
        raise UsageError(f"calendar dates are ISO strings or dates, got {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"calendar date {value!r} is not an ISO date (YYYY-MM-DD)") from None
