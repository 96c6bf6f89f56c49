"""Working-day deadlines in China Standard Time (issue 4, draft §19.4)."""

from __future__ import annotations

import datetime as dt

import pytest

from exchnode import errors
from exchnode.sharing import CHINA_STANDARD_TIME, DEFAULT_ANSWER_DAYS, WorkCalendar, local_date


def cst_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, ms: int = 0) -> int:
    moment = dt.datetime(year, month, day, hour, minute, tzinfo=CHINA_STANDARD_TIME)
    return int(moment.timestamp()) * 1000 + ms


PLAIN = WorkCalendar()
# 2025 National Day: 1-8 October off, Sunday 28 September and Saturday 11 October worked.
NATIONAL_DAY_2025 = WorkCalendar.of(
    holidays=[f"2025-10-0{d}" for d in range(1, 9)],
    makeup_workdays=["2025-09-28", "2025-10-11"],
)


def test_default_is_ten_working_days_counted_from_the_next_day() -> None:
    assert DEFAULT_ANSWER_DAYS == 10
    # Wednesday 18 November 2026, 10:00: day 1 is Thursday 19, day 10 is Wednesday 2 December.
    assert PLAIN.deadline(cst_ms(2026, 11, 18, 10)) == cst_ms(2026, 12, 3)


def test_the_hour_of_arrival_does_not_matter() -> None:
    early = PLAIN.deadline(cst_ms(2026, 11, 20, 0, 0), 1)
    late = PLAIN.deadline(cst_ms(2026, 11, 20, 23, 59, 59_999), 1)
    # A Friday request, early or late: day 1 is Monday 23 November.
    assert early == late == cst_ms(2026, 11, 24)


def test_a_weekend_request_counts_from_monday() -> None:
    friday = PLAIN.deadline(cst_ms(2026, 11, 20, 17), 5)
    saturday = PLAIN.deadline(cst_ms(2026, 11, 21, 9), 5)
    sunday = PLAIN.deadline(cst_ms(2026, 11, 22, 23), 5)
    assert friday == saturday == sunday == cst_ms(2026, 11, 28)  # end of Friday 27


def test_the_day_is_the_china_standard_time_day() -> None:
    # 17:00 UTC on Friday is 01:00 CST on Saturday: counted as a Saturday request.
    utc_friday = int(dt.datetime(2026, 11, 20, 17, tzinfo=dt.UTC).timestamp()) * 1000
    assert local_date(utc_friday) == dt.date(2026, 11, 21)
    assert PLAIN.deadline(utc_friday, 1) == cst_ms(2026, 11, 24)
    # One millisecond before CST midnight is still Thursday: day 1 is Friday.
    assert PLAIN.deadline(cst_ms(2026, 11, 19, 23, 59, 59_999), 1) == cst_ms(2026, 11, 21)


def test_holidays_do_not_count_and_makeup_days_do() -> None:
    # Tuesday 30 September 2025: 1-8 October are off; Thursday 9, Friday 10, Saturday 11
    # (make-up), Monday 13 and Tuesday 14 are the five working days.
    assert NATIONAL_DAY_2025.deadline(cst_ms(2025, 9, 30, 15), 5) == cst_ms(2025, 10, 15)
    assert NATIONAL_DAY_2025.is_working_day(dt.date(2025, 9, 28))  # a Sunday worked
    assert not NATIONAL_DAY_2025.is_working_day(dt.date(2025, 10, 3))  # a Friday off
    # Without the calendar the same request would be due a week and more earlier.
    assert PLAIN.deadline(cst_ms(2025, 9, 30, 15), 5) == cst_ms(2025, 10, 8)


def test_a_request_on_a_holiday_counts_from_the_next_working_day() -> None:
    assert NATIONAL_DAY_2025.deadline(cst_ms(2025, 10, 2, 12), 1) == cst_ms(2025, 10, 10)


def test_a_single_weekday_holiday_moves_the_deadline_by_one_day() -> None:
    holiday = WorkCalendar.of(holidays=[dt.date(2026, 11, 25)])
    start = cst_ms(2026, 11, 18, 10)
    assert holiday.deadline(start) == PLAIN.deadline(start) + 86_400_000


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(errors.UsageError, match="both"):
        WorkCalendar.of(holidays=["2026-10-10"], makeup_workdays=["2026-10-10"])
    with pytest.raises(errors.UsageError, match="not a weekend"):
        WorkCalendar.of(makeup_workdays=["2026-10-12"])  # a Monday
    with pytest.raises(errors.UsageError, match="ISO"):
        WorkCalendar.of(holidays=["10/01/2026"])
    with pytest.raises(errors.UsageError, match="date"):
        WorkCalendar(holidays=frozenset({"2026-10-01"}))  # type: ignore[arg-type]
    with pytest.raises(errors.UsageError, match="working_days"):
        PLAIN.deadline(0, 0)
    with pytest.raises(errors.UsageError, match="ms since 1970"):
        PLAIN.deadline(-1)
