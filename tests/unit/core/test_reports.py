"""Signed non-delivery reports: from the node that gave up, to the sender alone."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchnode import errors
from exchnode.core import (
    NDR_KIND,
    NonDeliveryReport,
    Opener,
    Outgoing,
    Sealer,
    decode_ndr,
    ndr_outgoing,
    pack,
)
from exchnode.core._reports import encode_ndr
from tests.cast import HUB, NOW, RECIPIENT, SENDER


def test_a_hub_reports_an_expired_envelope_to_its_sender_only(cast, directory) -> None:
    lost = Sealer(cast[SENDER], directory).seal(Outgoing([RECIPIENT], b"record"), NOW)
    report = ndr_outgoing(
        sender=SENDER,
        message_id=lost.message_id,
        digest=lost.digest,
        targets=[RECIPIENT],
        code="expired-in-queue",
        reason="the link to 522301 was down for 7 days",
        reporter=HUB,
        now=NOW + 10,
    )
    sealed = Sealer(cast[HUB], directory).seal(report, NOW + 10)
    opened = Opener(cast[SENDER], directory).open(sealed.data, NOW + 11)
    assert opened.header.kind == NDR_KIND
    assert str(opened.sender.name) == HUB  # signed by the node that gave up
    ndr = decode_ndr(opened.plaintext)
    assert ndr.message_id == lost.message_id
    assert ndr.digest == lost.digest
    assert ndr.code == "expired-in-queue"
    assert ndr.at_ms == int((NOW + 10) * 1000)
    with pytest.raises(errors.NotARecipientError):
        Opener(cast[RECIPIENT], directory).open(sealed.data, NOW + 11)


REPORT = NonDeliveryReport(
    b"\x01" * 16, b"\x02" * 32, ("522301.minzheng",), "unroutable", "", HUB, 1
)


def test_round_trip() -> None:
    assert decode_ndr(encode_ndr(REPORT)) == REPORT


@pytest.mark.parametrize(
    ("index", "value", "field"),
    [
        (1, b"short", "ndr.message_id"),
        (2, b"", "ndr.digest"),
        (3, [], "ndr.targets"),
        (3, ["Nope"], "ndr.targets[0]"),
        (4, "Bad Code", "ndr.code"),
        (5, "x" * 513, "ndr.reason"),
        (6, "nobody", "ndr.reporter"),
        (7, -5, "ndr.at"),
    ],
)
def test_malformed_reports_name_the_field(index, value, field) -> None:
    fields = [1, *REPORT[:2], list(REPORT.targets), *REPORT[3:]]
    fields[index] = value
    with pytest.raises(errors.MalformedError) as caught:
        decode_ndr(pack(fields))
    assert caught.value.field == field


def test_the_reporter_refuses_to_build_a_bad_report() -> None:
    with pytest.raises(errors.MalformedError):
        ndr_outgoing(
            sender=SENDER,
            message_id=b"\x01" * 16,
            digest=b"\x02" * 32,
            targets=[],
            code="expired",
            reason="",
            reporter=HUB,
            now=NOW,
        )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_typed_errors(blob) -> None:
    with contextlib.suppress(errors.RejectedError):
        decode_ndr(blob)
