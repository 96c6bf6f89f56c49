"""The working-day calendar from chinese-calendar, with per-node overrides (issue 15, item 9).

A wrong date cannot move a county's legal deadline silently: an override the
library cannot vouch for, a day said twice or both ways, a removal of nothing
are refused when the config loads, naming the key; a deadline counted into a
year nobody covers is an error naming the year; a start warns before that
horizon is reached.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from exchnode.node.config import ConfigError, load_config
from exchnode.node.workdays import (
    CalendarError,
    Overrides,
    build_calendar,
    coverage_warning,
    library_coverage,
    note_calendar,
)
from exchnode.sharing import CHINA_STANDARD_TIME, CalendarCoverageError, WorkCalendar

D = dt.date


def ms(day: dt.date) -> int:
    """Noon China Standard Time on ``day``, in ms since 1970."""
    moment = dt.datetime(day.year, day.month, day.day, 12, tzinfo=CHINA_STANDARD_TIME)
    return int(moment.timestamp()) * 1000


def end_of(day: dt.date) -> int:
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=CHINA_STANDARD_TIME)
    return int((midnight + dt.timedelta(days=1)).timestamp()) * 1000


def config(tmp_path: Path, sharing: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(
        f'[node]\nname = "520102.gongan"\nlevel = "county"\n[sharing]\n{sharing}\n', "utf-8"
    )
    return path


def test_the_library_is_the_default_and_says_what_it_covers() -> None:
    _, workdays, years, name = library_coverage()
    assert name.startswith("chinese-calendar ")
    assert {2004, 2026} <= years
    assert all(day.weekday() >= 5 for day in workdays)  # make-up days are weekend days
    calendar = build_calendar("chinese-calendar", Overrides()).calendar
    assert calendar.covered_years == years
    assert not calendar.is_working_day(D(2026, 10, 1))  # National Day
    assert calendar.is_working_day(D(2026, 9, 20))  # a Sunday made a working day
    # Across the Spring Festival of 2026: from Friday 02-13, ten working days are
    # 02-14 (a make-up Saturday), 02-24..02-27, 02-28 (make-up), 03-02..03-05.
    assert calendar.deadline(ms(D(2026, 2, 13)), 10) == end_of(D(2026, 3, 5))
    assert WorkCalendar().deadline(ms(D(2026, 2, 13)), 10) == end_of(D(2026, 2, 27))  # no lists


def test_a_deadline_past_the_coverage_is_an_error_naming_the_year_when_asked() -> None:
    calendar = build_calendar("chinese-calendar", Overrides(), "refuse").calendar
    assert calendar.deadline(ms(D(2026, 12, 1)), 10) == end_of(D(2026, 12, 15))
    with pytest.raises(CalendarCoverageError, match="does not cover 2027") as caught:
        calendar.deadline(ms(D(2026, 12, 24)), 10)
    assert caught.value.year == 2027


def test_by_default_a_deadline_past_the_coverage_is_provisional_and_says_so() -> None:
    """Weekdays only in 2027 (the library stops at 2026), named by uncovered_between."""
    calendar = build_calendar("chinese-calendar", Overrides()).calendar
    assert calendar.provisional
    start = ms(D(2026, 12, 24))
    deadline = calendar.deadline(start, 10)
    assert deadline == end_of(D(2027, 1, 7))  # 12-25, 28-31, 1-1 and 1-4..7: weekdays only
    assert calendar.uncovered_between(start, deadline) == (2027,)
    assert calendar.uncovered_between(ms(D(2026, 12, 1)), ms(D(2026, 12, 15))) == ()
    with pytest.raises(CalendarError, match="must be one of weekends, refuse") as caught:
        build_calendar("chinese-calendar", Overrides(), "guess")
    assert caught.value.key == "uncovered_years"


def test_own_years_extend_the_coverage_and_nothing_else() -> None:
    built = build_calendar(
        "chinese-calendar",
        Overrides(holidays=[D(2027, 1, 1)], own_years=[2027]),
        "refuse",
    )
    calendar = built.calendar
    assert not calendar.is_working_day(D(2027, 1, 1))
    assert calendar.deadline(ms(D(2026, 12, 24)), 10) == end_of(D(2027, 1, 8))
    with pytest.raises(CalendarCoverageError, match="does not cover 2028"):
        calendar.deadline(ms(D(2027, 12, 24)), 10)
    assert "+ 1 overrides" in built.source


def test_an_override_that_contradicts_the_library_is_taken_and_noted() -> None:
    built = build_calendar(
        "chinese-calendar",
        Overrides(holidays=[D(2026, 9, 20)], workdays=[D(2026, 10, 3)], removed=[D(2026, 5, 5)]),
    )
    calendar = built.calendar
    assert not calendar.is_working_day(D(2026, 9, 20))
    assert calendar.is_working_day(D(2026, 10, 3))  # a Saturday
    assert calendar.is_working_day(D(2026, 5, 5))  # a Tuesday the library has as a holiday
    assert len(built.notes) == 3
    assert any(note.startswith("2026-05-05: a holiday in chinese-calendar") for note in built.notes)


@pytest.mark.parametrize(
    ("sharing", "key", "problem"),
    [
        (
            "holidays = [2027-10-01]",
            "holidays",
            "2027-10-01 lies in 2027, which the calendar .* does not cover",
        ),
        ("holidays = [2026-11-02, 2026-11-02]", "holidays", "listed twice in holidays"),
        (
            "holidays = [2026-11-07]\nworkdays = [2026-11-07]",
            "workdays",
            "2026-11-07 is listed in holidays and in workdays",
        ),
        (
            "workdays = [2026-11-07]\nremoved = [2026-11-07]",
            "removed",
            "listed in workdays and in removed",
        ),
        ("removed = [2026-11-02]", "removed", "neither a holiday nor a make-up day .* nothing"),
        ("own_years = [2026]", "own_years", "2026 is covered by chinese-calendar"),
        ("own_years = [2027, 2027]", "own_years", "listed twice"),
        ('own_years = ["2027"]', "own_years", "must be a list of years"),
        ("workdays = [2026-11-04]", "workdays", "not a weekend day"),
        ('calendar = "hk"', "calendar", "must be one of chinese-calendar, none"),
    ],
)
def test_a_wrong_override_is_refused_naming_the_key(
    tmp_path: Path, sharing: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=rf"sharing\.{key}: .*{problem}"):
        load_config(config(tmp_path, sharing))


def test_calendar_none_is_the_toml_alone(tmp_path: Path) -> None:
    loaded = load_config(config(tmp_path, 'calendar = "none"\nholidays = [2031-10-01]'))
    calendar = loaded.sharing.calendar
    assert calendar.covered_years is None  # the explicit opt-out: nothing checked
    assert calendar.holidays == {D(2031, 10, 1)}
    assert calendar.is_working_day(D(2026, 10, 1))  # no library: a Thursday like any other
    loaded = load_config(
        config(
            tmp_path,
            'calendar = "none"\nuncovered_years = "refuse"\nown_years = [2031]\n'
            "holidays = [2031-10-01]",
        )
    )
    with pytest.raises(CalendarCoverageError, match="does not cover 2032"):
        loaded.sharing.calendar.deadline(ms(D(2031, 12, 24)), 10)


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, object]]] = []

    def info(self, event: str, **fields: object) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: object) -> None:
        self.lines.append(("warning", event, fields))


def test_a_start_warns_before_the_coverage_runs_out(tmp_path: Path) -> None:
    calendar = build_calendar("chinese-calendar", Overrides()).calendar
    assert coverage_warning(calendar, D(2026, 6, 1)) is None
    warning = coverage_warning(calendar, D(2026, 12, 1))
    assert warning is not None
    assert "counted into 2027 (from 2027-01-01 on) will be counted with weekdays" in warning
    strict = build_calendar("chinese-calendar", Overrides(), "refuse").calendar
    refused = coverage_warning(strict, D(2026, 12, 1))
    assert refused is not None
    assert "(from 2027-01-01 on) will be refused" in refused
    loaded = load_config(config(tmp_path, "workdays = [2026-10-03]"))
    log = _Log()
    note_calendar(loaded, log, today=D(2026, 12, 1))
    levels = [(level, event) for level, event, _ in log.lines]
    assert levels == [
        ("info", "working-day calendar"),
        ("warning", "calendar override changes the library's day"),
        ("warning", "working-day calendar runs out"),
    ]
