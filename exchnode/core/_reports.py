"""Non-delivery reports: telling a sender that an envelope will not arrive (pure).

Theory of operation
-------------------
When a node gives up on an envelope in its custody, it seals a report to the
envelope's sender. It may give up because the envelope expired in a queue,
because the next hop refused it for good (``link.Status.REFUSED``), or
because no route leads to a target. The report is an ordinary envelope
(``kind`` ``ndr``), so it carries everything envelopes carry. It is signed
by the reporting node: the sender knows who gave up, and a report cannot be
forged in its name. It is encrypted to the sender alone: a hub on the way
back learns only that some report travels. It expires and is deduplicated
like any envelope.

The payload names the lost envelope exactly: its message id and its digest
(SPEC §5.3), the targets that copy was for, a reason code (SPEC §12, plus
``expired-in-queue`` and ``unroutable``), a short human reason, where and
when. A report is not proof that an envelope was *not* delivered: a hub can
lie by omission as well as by report. Signed receipts are proof of
delivery.

    ndr = [version=1, message_id: bin(16), digest: bin(32), targets: [str],
           code: str, reason: str, reporter: str, at_ms: uint]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from exchnode.core._encoding import pack, unpack
from exchnode.core._envelope import check_bytes, check_name, check_time
from exchnode.core._merkle import HASH_LENGTH
from exchnode.core._sealing import Outgoing
from exchnode.errors import MalformedError, UnsupportedVersionError

__all__ = [
    "NDR_CONTENT_TYPE",
    "NDR_KIND",
    "NonDeliveryReport",
    "decode_ndr",
    "encode_ndr",
    "ndr_outgoing",
]

NDR_KIND = "ndr"
NDR_CONTENT_TYPE = "application/vnd.exchnode.ndr+msgpack"
NDR_VERSION = 1
NDR_TTL = 7 * 86400.0
MAX_REASON = 512
MAX_NDR_BYTES = 64 * 1024
_CODE = re.compile(r"[a-z][a-z-]{0,63}\Z")


class NonDeliveryReport(NamedTuple):
    message_id: bytes
    digest: bytes
    targets: tuple[str, ...]
    code: str
    reason: str
    reporter: str
    at_ms: int


def encode_ndr(report: NonDeliveryReport) -> bytes:
    return pack(
        [
            NDR_VERSION,
            report.message_id,
            report.digest,
            list(report.targets),
            report.code,
            report.reason[:MAX_REASON],
            report.reporter,
            report.at_ms,
        ]
    )


def decode_ndr(data: bytes) -> NonDeliveryReport:
    """Parse a report's payload; raise a ``RejectedError`` naming the field."""
    value = unpack(data, what="ndr", max_size=MAX_NDR_BYTES, max_array=1024)
    if type(value) is not list or len(value) != 8:
        raise MalformedError("ndr", "expected an array of 8 elements")
    version, message_id, digest, targets, code, reason, reporter, at_ms = value
    if type(version) is not int:
        raise MalformedError("ndr.version", "must be an integer")
    if version != NDR_VERSION:
        raise UnsupportedVersionError(f"ndr version {version} is not supported (only 1)")
    if type(targets) is not list or not targets:
        raise MalformedError("ndr.targets", "must be a non-empty array of node names")
    for i, target in enumerate(targets):
        check_name(target, f"ndr.targets[{i}]")
    if type(code) is not str or not _CODE.match(code):
        raise MalformedError("ndr.code", "must be an error code (lowercase, hyphens)")
    if type(reason) is not str or len(reason) > MAX_REASON:
        raise MalformedError("ndr.reason", f"must be a string of at most {MAX_REASON}")
    return NonDeliveryReport(
        check_bytes(message_id, "ndr.message_id", 16),
        check_bytes(digest, "ndr.digest", HASH_LENGTH),
        tuple(targets),
        code,
        reason,
        check_name(reporter, "ndr.reporter"),
        check_time(at_ms, "ndr.at"),
    )


def ndr_outgoing(
    *,
    sender: str,
    message_id: bytes,
    digest: bytes,
    targets: Sequence[str],
    code: str,
    reason: str,
    reporter: str,
    now: float,
) -> Outgoing:
    """The report to seal (with the reporter's ``Sealer``) for the envelope's sender."""
    report = NonDeliveryReport(
        message_id, digest, tuple(targets), code, reason, reporter, int(now * 1000)
    )
    payload = encode_ndr(report)
    decode_ndr(payload)  # refuse to send what a receiver would refuse
    return Outgoing([sender], payload, kind=NDR_KIND, content_type=NDR_CONTENT_TYPE, ttl=NDR_TTL)
