"""The one way the command line shows a time: ISO 8601 with its offset, China Standard Time.

The daemon's API and verbs show times the same way (``exchnode.node.forms``),
in the time zone of the working-day rule (``exchnode.sharing``'s
``CHINA_STANDARD_TIME``, which this layer may not import: the offset is
restated here, fixed: China keeps no daylight saving time).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["CST", "iso_ms", "iso_time"]

CST = timezone(timedelta(hours=8), "CST")


def iso_time(moment: datetime) -> str:
    """``2026-12-07T22:10:00+08:00``: a timezone-aware instant, to the second."""
    return moment.astimezone(CST).isoformat(timespec="seconds")


def iso_ms(ms: int) -> str:
    """``2026-12-07T22:10:00.123+08:00``: ms since 1970, to the millisecond."""
    return datetime.fromtimestamp(ms / 1000, CST).isoformat(timespec="milliseconds")
