"""The console's pure pieces: certificate states, working days left, its place in the role table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from exchnode.audit import Role
from exchnode.node.console import (
    certificate_json,
    deadline_json,
    working_days_left,
)
from exchnode.node.roles import area_of
from exchnode.sharing import CHINA_STANDARD_TIME, WorkCalendar

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
WARNING_DAYS = 30  # [trust] certificate_warning_days, its default


def certificate(not_before: datetime, not_after: datetime) -> x509.Certificate:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "520100")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, None)
    )


@pytest.mark.parametrize(
    ("before_days", "after_days", "state", "days_left"),
    [
        (-300, 65, "current", 65.0),
        (-300, WARNING_DAYS + 0.5, "current", 30.5),
        (-300, WARNING_DAYS, "expiring", 30.0),
        (-300, 0.5, "expiring", 0.5),
        (-300, -1, "expired", -1.0),
        (2, 300, "early", 300.0),
    ],
)
def test_a_certificate_is_expiring_within_30_days_and_expired_after(
    before_days: float, after_days: float, state: str, days_left: float
) -> None:
    shown = certificate_json(
        certificate(NOW + timedelta(days=before_days), NOW + timedelta(days=after_days)),
        "node",
        NOW,
        WARNING_DAYS,
    )
    assert shown["state"] == state
    assert shown["days_left"] == days_left
    assert shown["serial"] == "1234"
    assert shown["subject"] == "CN=520100"
    assert shown["not_after"].endswith("+00:00")


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """An instant in China Standard Time, as ms since 1970."""
    when = datetime(year, month, day, hour, minute, tzinfo=CHINA_STANDARD_TIME)
    return int(when.timestamp() * 1000)


def test_working_days_left_count_as_the_rule_does() -> None:
    # National Day week 2026: 1-7 October off, Sunday 27 September and Saturday 10 October worked.
    calendar = WorkCalendar.of(
        holidays=[f"2026-10-0{d}" for d in range(1, 8)], makeup_workdays=["2026-10-10"]
    )
    arrived = ms(2026, 9, 29, 16, 0)  # a Tuesday
    deadline = calendar.deadline(arrived, 10)
    # 30 Sep, 8 Oct, 9 Oct, Sat 10 Oct, 12..16 Oct, 19 Oct: the end of Monday 19 October.
    assert deadline == ms(2026, 10, 20)
    assert working_days_left(calendar, arrived, deadline) == 10  # it arrived today
    assert working_days_left(calendar, ms(2026, 10, 3, 12, 0), deadline) == 9  # a holiday
    assert working_days_left(calendar, ms(2026, 10, 9, 12, 0), deadline) == 7  # Sat 10 counts
    assert working_days_left(calendar, ms(2026, 10, 19, 23, 59), deadline) == 0  # due today
    shown = deadline_json(calendar, deadline, ms(2026, 10, 19, 23, 59))
    assert shown == {
        "deadline_ms": deadline,
        "deadline": "2026-10-20T00:00:00+08:00",
        "working_days_left": 0,
        "overdue": False,
    }
    late = deadline_json(calendar, deadline, deadline)
    assert (late["working_days_left"], late["overdue"]) == (0, True)
    assert deadline_json(calendar, None, arrived)["deadline"] is None


def test_the_console_data_is_the_administrators_and_the_auditors_and_the_page_needs_none() -> None:
    data = area_of("/v1/console/overview")
    assert data is not None
    assert data.admits(Role.ADMINISTRATOR)
    assert data.admits(Role.AUDITOR)
    assert not data.admits(Role.OPERATOR)
    assert data.needs == "administrator or auditor"
    page = area_of("/console/console.js")
    assert page is not None
    assert page.role is None
    assert area_of("/consoles") is None  # whole segments only
    for path in ("/v1/admin/peers", "/v1/audit/verify", "/v1/catalog", "/v1/sub/incoming"):
        area = area_of(path)
        assert area is not None
        assert area.readers == ()  # everywhere else one role, as before
