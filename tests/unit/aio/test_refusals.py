"""Refusals: aggregated on the record (one per key per interval, bounded keys), the standing
refusal per peer for health, and the codes read from OpenSSL errors and 403 texts."""

from __future__ import annotations

import ssl
from typing import Any

from exchnode.aio._context import NodeContext
from exchnode.aio._refusals import MAX_KEYS, MAX_STATES, Refusals
from exchnode.aio._tls import address_token, refusal_code
from exchnode.aio._transport import reason_code
from exchnode.audit import AuditEntry, Category
from exchnode.audit._records import Status


class Log:
    """A custody log that keeps what it is given (the part ``log_entries`` uses)."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def append_entry(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


class Lines:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))

    def bind(self, **_: Any) -> Lines:
        return self


def refusals(now: list[float]) -> tuple[Refusals, Log, Lines]:
    context = NodeContext("520102", clock=lambda: now[0])
    log, lines = Log(), Lines()
    context.attach_custody_log(log)  # type: ignore[arg-type]
    context.log = lines
    return Refusals(context, interval=60.0), log, lines


def test_a_flood_is_one_record_at_once_and_one_per_interval_with_the_count() -> None:
    now = [1_800_000_000.0]
    book, log, lines = refusals(now)
    for _ in range(1000):
        book.refused(reason="sender-mismatch", kind="sender", peer="520102.gongan")
    assert [e.get("count") for e in log.entries] == [1]
    book.flush()
    assert [e.get("count") for e in log.entries] == [1, 999]
    entry = log.entries[0]
    assert (entry.category, entry.action) == (Category.CONNECTION, "link.refused")
    assert (entry.outcome.status, entry.outcome.code) == (Status.REFUSED, "sender-mismatch")
    assert entry.subject.value == "520102.gongan"
    assert [count for _, fields in lines.warnings for count in [fields["count"]]] == [1, 999]
    # Still going in the next interval: counted, recorded at its end (not at once again).
    book.refused(reason="sender-mismatch", kind="sender", peer="520102.gongan")
    assert len(log.entries) == 2
    book.flush()
    assert [e.get("count") for e in log.entries] == [1, 999, 1]
    # A quiet interval forgets the key: the next one is on the record at once.
    book.flush()
    book.refused(reason="sender-mismatch", kind="sender", peer="520102.gongan")
    assert [e.get("count") for e in log.entries] == [1, 999, 1, 1]


def test_keys_are_bounded_a_flood_of_addresses_is_counted_by_reason() -> None:
    now = [1_800_000_000.0]
    book, log, _ = refusals(now)
    for i in range(MAX_KEYS + 500):
        book.refused(
            reason="revoked",
            kind="handshake",
            address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
        )
    assert len(log.entries) == MAX_KEYS + 1  # one per address, then one for the rest
    book.flush()
    rest = [e for e in log.entries if e.get("address") is None]
    assert sum(int(e.get("count") or 0) for e in rest) == 500
    assert len(book.current()) == MAX_STATES


def test_the_standing_refusal_ends_when_the_peer_is_admitted_in_that_direction() -> None:
    now = [1_800_000_000.0]
    book, log, _ = refusals(now)
    book.refused(reason="not-a-neighbour", kind="link", peer="520102", by_peer=True)
    book.refused(reason="name-constraint", kind="certificate", peer="520102.gongan")
    shown = {(r.peer, r.by, r.reason) for r in book.current()}
    assert shown == {
        ("520102", "520102", "not-a-neighbour"),
        ("520102.gongan", "520102", "name-constraint"),
    }
    assert log.entries[0].action == "link.refused-by"
    book.admitted("520102")  # it called us: says nothing of whether it takes our calls
    assert len(book.current()) == 2
    book.admitted("520102", outbound=True)  # it answered us
    book.admitted("520102.gongan")
    assert book.current() == ()


def test_deferrals_are_envelope_records_of_the_neighbour() -> None:
    now = [1_800_000_000.0]
    book, log, _ = refusals(now)
    book.deferred("520102.gongan", "unknown-signer", 3)
    (entry,) = log.entries
    assert (entry.category, entry.action, entry.get("count")) == (Category.ENVELOPE, "defer", 3)
    assert entry.outcome.code == "unknown-signer"


def test_codes_from_openssl_and_403_texts_and_addresses_as_tokens() -> None:
    revoked = ssl.SSLCertVerificationError(1, "certificate verify failed: certificate revoked")
    revoked.verify_code = 23
    assert refusal_code(revoked) == "revoked"
    stale = ssl.SSLCertVerificationError(1, "CRL has expired")
    stale.verify_code = 12
    assert refusal_code(stale) == "revocation-unavailable"
    assert refusal_code(ssl.SSLEOFError()) is None  # the peer went away: no refusal
    assert refusal_code(ConnectionResetError()) is None
    assert reason_code("peer not authenticated: ... revoked [revoked]\n") == "revoked"
    assert reason_code("no code here") is None
    assert reason_code("forged [Not A Token!]") is None
    assert address_token("127.0.0.1") == "127.0.0.1"
    assert address_token("::1") == "0000:0000:0000:0000:0000:0000:0000:0001"
    assert address_token("fe80::1%eth0") == "fe80:0000:0000:0000:0000:0000:0000:0001"
    assert address_token("not an address") is None
    assert address_token(None) is None
