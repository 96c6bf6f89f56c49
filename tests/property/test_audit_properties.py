"""Audit records decode or raise a RejectedError; any single edit of a logged record is found."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchnode.audit import AuditLogState, Tamper, decode_record, verify_log
from exchnode.audit._records import encode_record
from exchnode.errors import RejectedError
from tests.unit.audit.test_verify import DIRECTORY, NAME, NODE, T0, edited, entries

common = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decode_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(RejectedError):
        record = decode_record(data)
        assert encode_record(record) == data


@common
@given(st.data())
def test_hostile_edits_of_a_valid_record_are_refused_or_re_encode(data: st.DataObject) -> None:
    log = AuditLogState(NODE)
    (logged,) = log.append(entries(1, 3))
    raw = bytearray(logged.data)
    i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[i] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(RejectedError):
        assert encode_record(decode_record(bytes(raw))) == bytes(raw)


@common
@given(
    st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=6),
    st.data(),
)
def test_any_edit_below_the_last_head_is_reported(batches: list[int], data: st.DataObject) -> None:
    log = AuditLogState(NODE)
    rows: list[tuple[int, bytes]] = []
    heads = []
    for n in batches:
        rows += [(r.seq, r.data) for r in log.append(entries(n, len(rows)))]
        heads.append(log.sign_head(T0 + len(rows)).data)
    assert verify_log(NAME, rows, heads, DIRECTORY).ok
    victim = data.draw(st.integers(min_value=0, max_value=len(rows) - 1))
    kind = data.draw(st.sampled_from(["change", "delete", "swap"]))
    tampered = list(rows)
    if kind == "change":
        tampered[victim] = (victim, edited(rows[victim][1], action="envelope.edited"))
    elif kind == "delete":
        del tampered[victim]
    elif victim + 1 < len(rows):
        tampered[victim] = (victim, rows[victim + 1][1])
        tampered[victim + 1] = (victim + 1, rows[victim][1])
    else:
        return
    report = verify_log(NAME, tampered, heads, DIRECTORY)
    assert not report.ok
    named = {f.seq for f in report.findings if f.kind is not Tamper.ROOT_MISMATCH}
    expected = {
        "change": Tamper.CHANGED,
        "delete": Tamper.DELETED if victim < len(rows) - 1 else Tamper.TRUNCATED,
        "swap": Tamper.REORDERED,
    }[kind]
    if kind == "change" and victim == len(rows) - 1:
        assert report.kinds() == {Tamper.ROOT_MISMATCH}  # no successor to name it
    else:
        assert expected in report.kinds()
        assert victim in named
