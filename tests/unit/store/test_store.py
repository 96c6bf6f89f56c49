"""The store: one suite for every implementation, then what only the SQLite store promises.

Each test in the first part runs against MemoryStore, SqliteStore and
PostgresStore alike (the ``store`` fixture, in conftest.py), so the twin
cannot drift from the durable stores; what only PostgreSQL promises (workers
sharing one database) is in test_store_postgres.py.
A test names the part of the interface it exercises (``CustodyStore``,
``MetaStore``; the ``AuditStore`` is in test_store_audit.py), and the parts
together are pinned to be exactly ``Store``.
Crash behaviour with real processes is in tests/integration/test_store_crash.py.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from exchnode.errors import StoreError, UsageError
from exchnode.federation import Route
from exchnode.store import (
    AcceptItem,
    AcceptStatus,
    AuditStore,
    CustodyStore,
    ExpiredEntry,
    InboundEntry,
    MetaStore,
    OutboundEntry,
    PeerState,
    QueueDepth,
    SendKey,
    SqliteStore,
    Store,
)
from exchnode.store._sqlite_schema import SCHEMA_VERSION

NOW = 1_795_000_000_000
HOUR = 3_600_000
ME = "520100"  # a city hub: local targets are its own name
CHILD = "520102"  # a county hub below it
LINK = "530100"  # a directly linked city hub elsewhere
SENDER = "520102.gongan"

ACCEPTED = AcceptStatus.ACCEPTED
DUPLICATE = AcceptStatus.DUPLICATE
EXPIRED = AcceptStatus.EXPIRED


def make(
    n: int,
    *,
    local: tuple[str, ...] = (),
    forward: dict[str, tuple[str, ...]] | None = None,
    sender: str = SENDER,
    expires_ms: int = NOW + HOUR,
    size: int = 100,
    variant: int = 0,
) -> AcceptItem:
    """Envelope ``n``: its id, digest and bytes follow from ``n`` (and ``variant``)."""
    message_id = n.to_bytes(16, "big")
    digest = hashlib.sha256(message_id + bytes([variant])).digest()
    return AcceptItem(
        sender=sender,
        message_id=message_id,
        digest=digest,
        data=(digest * (size // 32 + 1))[:size],
        expires_ms=expires_ms,
        local=local,
        forward={CHILD: (f"{CHILD}.minzheng",)} if forward is None and not local else forward or {},
    )


def ids(entries: Sequence[InboundEntry | OutboundEntry | ExpiredEntry]) -> list[int]:
    """The envelope numbers (see ``make``) of some entries, in order."""
    return [int.from_bytes(e.message_id, "big") for e in entries]


# --- custody in, queues out -----------------------------------------------------


def test_implements_the_protocol_and_each_of_its_parts(store: Store) -> None:
    for protocol in (Store, CustodyStore, AuditStore, MetaStore):
        assert isinstance(store, protocol)


CUSTODY = {
    "accept",
    "seen",
    "pending",
    "forwarded",
    "next_hops",
    "queue_depth",
    "inbox",
    "delivered",
    "inbox_depth",
    "totals",
    "take_expired",
    "prune",
}
AUDIT = {
    "append_audit",
    "audit_records",
    "audit_size",
    "add_tree_head",
    "tree_heads",
    "tree_head_at_most",
    "set_audit_checkpoint",
    "audit_checkpoint",
    "set_audit_sealer",
    "audit_seal",
    "audit_ordered_from",
    "prune_audit",
    "prune_heads",
    "set_audit_tree",
    "tree_heads_from",
    "audit_heads_end",
    "add_audit_nodes",
    "audit_nodes_due",
    "audit_node",
}
META = {
    "peer_state",
    "set_peer_state",
    "get_meta",
    "set_meta",
    "delete_meta",
    "update_meta",
    "meta_range",
}


def _methods(protocol: type) -> set[str]:
    return {name for name in dir(protocol) if not name.startswith("_")}


def test_store_is_exactly_its_three_parts_and_its_life_cycle() -> None:
    assert _methods(CustodyStore) == CUSTODY
    assert _methods(AuditStore) == AUDIT
    assert _methods(MetaStore) == META
    assert _methods(Store) == CUSTODY | AUDIT | META | {"close"}
    assert {"__enter__", "__exit__"} <= set(vars(Store))
    for part in (CustodyStore, AuditStore, MetaStore):
        assert issubclass(Store, part)


def test_accept_fills_the_inbox_and_the_queue_of_each_next_hop(store: CustodyStore) -> None:
    item = make(
        1,
        local=(ME,),
        forward={CHILD: (f"{CHILD}.minzheng", f"{CHILD}.gongan"), LINK: (f"{LINK}.fagai",)},
    )
    (outcome,) = store.accept([item], NOW)
    assert outcome.status is ACCEPTED
    assert outcome.acknowledge
    assert outcome.local == (ME,)
    assert dict(outcome.forward) == dict(item.forward)

    (down,) = store.pending(CHILD, NOW, 10, 1 << 20)
    assert (down.next_hop, down.sender, down.message_id, down.digest) == (
        CHILD,
        SENDER,
        item.message_id,
        item.digest,
    )
    assert down.targets == (f"{CHILD}.minzheng", f"{CHILD}.gongan")
    assert (down.data, down.expires_ms) == (item.data, item.expires_ms)
    (across,) = store.pending(LINK, NOW, 10, 1 << 20)
    assert across.targets == (f"{LINK}.fagai",)
    assert across.data == item.data
    (mine,) = store.inbox(NOW, 10)
    assert (mine.sender, mine.message_id, mine.digest, mine.targets, mine.data) == (
        SENDER,
        item.message_id,
        item.digest,
        (ME,),
        item.data,
    )
    assert store.next_hops() == sorted([CHILD, LINK])
    assert store.pending("520300", NOW, 10, 1 << 20) == []

    seen = store.seen(SENDER, item.message_id)
    assert seen is not None
    assert seen.digest == item.digest
    assert seen.expires_ms == item.expires_ms
    assert seen.targets == item.targets


def test_from_route_takes_local_and_forwarded_targets() -> None:
    route = Route(local=(ME,), forward={CHILD: (f"{CHILD}.a",)}, unroutable=("990000.x",))
    item = AcceptItem.from_route(
        sender=SENDER,
        message_id=bytes(16),
        digest=bytes(32),
        data=b"x",
        expires_ms=NOW,
        route=route,
    )
    assert item.local == (ME,)
    assert dict(item.forward) == {CHILD: (f"{CHILD}.a",)}
    assert item.targets == {ME, f"{CHILD}.a"}


def test_empty_batch_changes_nothing(store: CustodyStore) -> None:
    assert store.accept([], NOW) == []
    assert store.totals() == QueueDepth(0, 0)


def test_pending_is_fifo_across_batches(store: CustodyStore) -> None:
    store.accept([make(n) for n in (5, 3, 9)], NOW)
    store.accept([make(n) for n in (1, 7)], NOW)
    entries = store.pending(CHILD, NOW, 100, 1 << 20)
    assert ids(entries) == [5, 3, 9, 1, 7]
    seqs = [e.seq for e in entries]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5


def test_reading_removes_nothing(store: CustodyStore) -> None:
    """Never delete on dequeue: a crash between reading and acknowledging must lose nothing."""
    store.accept([make(1), make(2, local=(ME,))], NOW)
    assert store.pending(CHILD, NOW, 10, 1 << 20) == store.pending(CHILD, NOW, 10, 1 << 20)
    assert store.inbox(NOW, 10) == store.inbox(NOW, 10)
    assert store.queue_depth(CHILD).count == 1
    assert store.inbox_depth().count == 1


def test_pending_respects_count_and_byte_limits(store: CustodyStore) -> None:
    store.accept([make(n, size=100) for n in range(1, 11)], NOW)
    assert ids(store.pending(CHILD, NOW, 3, 1 << 20)) == [1, 2, 3]
    assert ids(store.pending(CHILD, NOW, 100, 250)) == [1, 2]
    assert ids(store.pending(CHILD, NOW, 100, 300)) == [1, 2, 3]
    # One envelope larger than the limit still goes, alone, or it would block the queue.
    assert ids(store.pending(CHILD, NOW, 100, 10)) == [1]


def test_pending_pages_past_entries_in_flight(store: CustodyStore) -> None:
    store.accept([make(n) for n in range(1, 7)], NOW)
    first = store.pending(CHILD, NOW, 2, 1 << 20)
    second = store.pending(CHILD, NOW, 2, 1 << 20, after=first[-1].seq)
    third = store.pending(CHILD, NOW, 10, 1 << 20, after=second[-1].seq)
    assert (ids(first), ids(second), ids(third)) == ([1, 2], [3, 4], [5, 6])
    assert store.pending(CHILD, NOW, 10, 1 << 20, after=third[-1].seq) == []


def test_forwarded_removes_exactly_those_entries(store: CustodyStore) -> None:
    store.accept([make(n) for n in range(1, 6)], NOW)
    store.accept([make(9, forward={LINK: (f"{LINK}.fagai",)})], NOW)
    entries = store.pending(CHILD, NOW, 10, 1 << 20)
    (other,) = store.pending(LINK, NOW, 10, 1 << 20)
    gone = [entries[1].seq, entries[3].seq]

    # Another hop's sequence number and unknown ones are ignored, not errors.
    assert store.forwarded(CHILD, [*gone, other.seq, 10**9]) == 2
    assert ids(store.pending(CHILD, NOW, 10, 1 << 20)) == [1, 3, 5]
    assert store.pending(LINK, NOW, 10, 1 << 20) == [other]
    assert store.queue_depth(CHILD) == QueueDepth(3, 300)
    # Idempotent: an acknowledgement repeated after a reconnect removes nothing more.
    assert store.forwarded(CHILD, gone) == 0
    assert store.forwarded(CHILD, []) == 0
    assert store.forwarded(LINK, [other.seq]) == 1
    assert store.next_hops() == [CHILD]


def test_delivered_removes_from_the_inbox(store: CustodyStore) -> None:
    store.accept([make(n, local=(ME,)) for n in range(1, 5)], NOW)
    entries = store.inbox(NOW, 10)
    assert ids(entries) == [1, 2, 3, 4]
    assert ids(store.inbox(NOW, 2)) == [1, 2]
    assert ids(store.inbox(NOW, 10, max_bytes=250)) == [1, 2]
    assert ids(store.inbox(NOW, 10, max_bytes=1)) == [1]  # at least one
    assert ids(store.inbox(NOW, 10, after=entries[1].seq)) == [3, 4]
    assert store.delivered([entries[0].seq, entries[2].seq, 10**9]) == 2
    assert ids(store.inbox(NOW, 10)) == [2, 4]
    assert store.delivered([entries[0].seq]) == 0
    assert store.inbox_depth() == QueueDepth(2, 200)


def test_sequence_numbers_are_never_reused(store: CustodyStore) -> None:
    """A reused number would let a late forwarded() delete a newer entry."""
    store.accept([make(1), make(2, local=(ME,))], NOW)
    (out,) = store.pending(CHILD, NOW, 10, 1 << 20)
    (inb,) = store.inbox(NOW, 10)
    store.forwarded(CHILD, [out.seq])
    store.delivered([inb.seq])
    store.accept([make(3), make(4, local=(ME,))], NOW)
    assert store.pending(CHILD, NOW, 10, 1 << 20)[0].seq > out.seq
    assert store.inbox(NOW, 10)[0].seq > inb.seq


# --- dedup ----------------------------------------------------------------------


def test_a_repeated_copy_is_a_duplicate_and_stored_once(store: CustodyStore) -> None:
    item = make(1, local=(ME,), forward={CHILD: (f"{CHILD}.a",)})
    assert store.accept([item], NOW)[0].status is ACCEPTED
    (again,) = store.accept([item], NOW + 1000)
    assert again.status is DUPLICATE
    assert again.acknowledge
    assert (again.local, dict(again.forward)) == ((), {})
    assert len(store.pending(CHILD, NOW, 10, 1 << 20)) == 1
    assert len(store.inbox(NOW, 10)) == 1
    assert store.totals() == QueueDepth(2, 2 * len(item.data))


def test_a_copy_repeated_within_one_batch_is_a_duplicate(store: CustodyStore) -> None:
    item = make(1)
    outcomes = store.accept([item, make(2), item], NOW)
    assert [o.status for o in outcomes] == [ACCEPTED, ACCEPTED, DUPLICATE]
    assert ids(store.pending(CHILD, NOW, 10, 1 << 20)) == [1, 2]


def test_a_later_copy_is_taken_only_for_its_new_targets(store: CustodyStore) -> None:
    """The same envelope via the hierarchy and via a link, each copy for some targets."""
    first = make(1, forward={CHILD: (f"{CHILD}.a",)})
    second = make(
        1, local=(ME,), forward={CHILD: (f"{CHILD}.a",), LINK: (f"{LINK}.b", f"{LINK}.c")}
    )
    store.accept([first], NOW)
    (outcome,) = store.accept([second], NOW)
    assert outcome.status is ACCEPTED
    assert outcome.local == (ME,)
    assert dict(outcome.forward) == {LINK: (f"{LINK}.b", f"{LINK}.c")}

    assert len(store.pending(CHILD, NOW, 10, 1 << 20)) == 1
    (link_copy,) = store.pending(LINK, NOW, 10, 1 << 20)
    assert link_copy.targets == (f"{LINK}.b", f"{LINK}.c")
    (local_copy,) = store.inbox(NOW, 10)
    assert local_copy.targets == (ME,)
    seen = store.seen(SENDER, first.message_id)
    assert seen is not None
    assert seen.targets == {f"{CHILD}.a", ME, f"{LINK}.b", f"{LINK}.c"}
    # And now every target is held.
    assert store.accept([second], NOW)[0].status is DUPLICATE


def test_partial_copy_within_one_batch(store: CustodyStore) -> None:
    a = make(1, forward={CHILD: (f"{CHILD}.a",)})
    b = make(1, forward={CHILD: (f"{CHILD}.a", f"{CHILD}.b")})
    first, second = store.accept([a, b], NOW)
    assert first.status is ACCEPTED
    assert second.status is ACCEPTED
    assert dict(second.forward) == {CHILD: (f"{CHILD}.b",)}
    assert [e.targets for e in store.pending(CHILD, NOW, 10, 1 << 20)] == [
        (f"{CHILD}.a",),
        (f"{CHILD}.b",),
    ]


def test_dedup_outlives_forwarding_and_delivery(store: CustodyStore) -> None:
    """A copy re-sent after its first one left the queues is still a duplicate."""
    item = make(1, local=(ME,), forward={CHILD: (f"{CHILD}.a",)})
    store.accept([item], NOW)
    store.forwarded(CHILD, [e.seq for e in store.pending(CHILD, NOW, 10, 1 << 20)])
    store.delivered([e.seq for e in store.inbox(NOW, 10)])
    assert store.accept([item], NOW + 1000)[0].status is DUPLICATE
    assert store.totals() == QueueDepth(0, 0)


def test_a_reused_id_with_other_content_is_a_conflict(store: CustodyStore) -> None:
    original = make(1)
    store.accept([original], NOW)
    (outcome,) = store.accept([make(1, variant=1, local=(ME,))], NOW)
    assert outcome.status is AcceptStatus.CONFLICT
    assert not outcome.acknowledge
    assert store.inbox(NOW, 10) == []
    seen = store.seen(SENDER, original.message_id)
    assert seen is not None
    assert seen.digest == original.digest


def test_the_dedup_key_includes_the_sender(store: CustodyStore) -> None:
    """A hub that saw an id in transit cannot block the genuine message by using it first."""
    store.accept([make(1, sender="520103.rogue")], NOW)
    assert store.accept([make(1)], NOW)[0].status is ACCEPTED


def test_an_expired_envelope_is_refused_on_arrival(store: CustodyStore) -> None:
    item = make(1, expires_ms=NOW)  # expiry is exclusive (SPEC §8.2)
    (outcome,) = store.accept([item], NOW)
    assert outcome.status is AcceptStatus.EXPIRED
    assert not outcome.acknowledge
    assert store.totals() == QueueDepth(0, 0)
    assert store.seen(SENDER, item.message_id) is None


# --- expiry ---------------------------------------------------------------------


def test_expired_entries_are_skipped_then_taken_once(store: CustodyStore) -> None:
    soon = make(1, local=(ME,), forward={CHILD: (f"{CHILD}.a",)}, expires_ms=NOW + 10)
    later = make(2, local=(ME,), forward={CHILD: (f"{CHILD}.a",)})
    store.accept([soon, later], NOW)
    at = NOW + 10
    assert ids(store.pending(CHILD, at, 10, 1 << 20)) == [2]
    assert ids(store.inbox(at, 10)) == [2]
    assert store.totals().count == 4  # still stored until taken

    taken = store.take_expired(at, 10)
    assert {(e.next_hop, e.targets) for e in taken} == {(None, (ME,)), (CHILD, (f"{CHILD}.a",))}
    for entry in taken:
        assert isinstance(entry, ExpiredEntry)
        assert (entry.sender, entry.message_id, entry.digest, entry.expires_ms) == (
            SENDER,
            soon.message_id,
            soon.digest,
            soon.expires_ms,
        )
    assert store.take_expired(at, 10) == []
    assert store.totals() == QueueDepth(2, 2 * len(later.data))
    assert store.next_hops() == [CHILD]


def test_take_expired_takes_the_earliest_first_up_to_max_count(store: CustodyStore) -> None:
    store.accept(
        [
            make(1, expires_ms=NOW + 30),
            make(2, local=(ME,), expires_ms=NOW + 10),
            make(3, forward={LINK: (f"{LINK}.b",)}, expires_ms=NOW + 20),
            make(4, expires_ms=NOW + HOUR),
        ],
        NOW,
    )
    first = store.take_expired(NOW + 100, 2)
    assert [(ids([e])[0], e.next_hop) for e in first] == [(2, None), (3, LINK)]
    assert ids(store.take_expired(NOW + 100, 2)) == [1]
    assert store.take_expired(NOW + 100, 2) == []
    assert store.next_hops() == [CHILD]


def test_prune_forgets_dedup_records_only_after_expiry(store: CustodyStore) -> None:
    short = make(1, expires_ms=NOW + 10)
    long = make(2)
    store.accept([short, long], NOW)
    assert store.prune(NOW + 9) == 0
    assert store.prune(NOW + 10) == 1
    assert store.seen(SENDER, short.message_id) is None
    assert store.seen(SENDER, long.message_id) is not None
    assert store.prune(NOW + 10) == 0
    # Re-sent after being forgotten, it is still expired, so it is not taken again.
    (outcome,) = store.accept([short], NOW + 11)
    assert outcome.status is AcceptStatus.EXPIRED
    assert store.seen(SENDER, short.message_id) is None


def test_prune_is_bounded_by_max_count(store: CustodyStore) -> None:
    store.accept([make(n, expires_ms=NOW + n) for n in range(1, 8)], NOW)
    assert store.prune(NOW + 100, 3) == 3
    assert store.seen(SENDER, (1).to_bytes(16, "big")) is None  # earliest first
    assert store.prune(NOW + 100, 3) == 3
    assert store.prune(NOW + 100, 3) == 1
    assert store.prune(NOW + 100, 3) == 0


def test_an_expired_record_no_longer_blocks_its_id(store: CustodyStore) -> None:
    """SPEC §8.3 remembers an id until its envelope expires, not longer (pruned or not)."""
    store.accept([make(1, expires_ms=NOW + 10)], NOW)
    reuse = make(1, variant=1, local=(ME,), expires_ms=NOW + HOUR)
    assert store.accept([reuse], NOW + 20)[0].status is ACCEPTED
    seen = store.seen(SENDER, reuse.message_id)
    assert seen is not None
    assert (seen.digest, seen.expires_ms, seen.targets) == (
        reuse.digest,
        NOW + HOUR,
        frozenset({ME}),
    )
    assert store.prune(NOW + 20) == 0  # the new record is not forgotten with the old one
    assert store.seen(SENDER, reuse.message_id) == seen


# --- small state, depths, misuse --------------------------------------------------


def test_peer_state_round_trips(store: MetaStore) -> None:
    assert store.peer_state(CHILD) == PeerState()
    state = PeerState(failures=3, next_attempt_ms=NOW + 4000, last_ok_ms=NOW - HOUR)
    store.set_peer_state(CHILD, state)
    assert store.peer_state(CHILD) == state
    assert store.peer_state(LINK) == PeerState()
    store.set_peer_state(CHILD, PeerState(last_ok_ms=NOW))
    assert store.peer_state(CHILD) == PeerState(failures=0, next_attempt_ms=0, last_ok_ms=NOW)


def test_meta_round_trips(store: MetaStore) -> None:
    assert store.get_meta("directory") is None
    store.set_meta("directory", b"\x00\xff" * 100)
    store.set_meta("replay", b"")
    assert store.get_meta("directory") == b"\x00\xff" * 100
    assert store.get_meta("replay") == b""
    store.set_meta("directory", b"v2")
    assert store.get_meta("directory") == b"v2"
    store.delete_meta("directory")
    store.delete_meta("never-set")
    assert store.get_meta("directory") is None


def test_meta_rows_are_written_together_and_read_in_key_order_by_page(store: MetaStore) -> None:
    store.set_meta("sharing/grant/b", b"old")
    store.set_meta("sharing/grant/z", b"gone")
    store.update_meta(
        {
            "sharing/grant/c": b"3",
            "sharing/grant/a": b"1",
            "sharing/grant/b": b"2",
            "sharing/grant/z": None,
            "sharing/grant/never": None,
            "sharing/granted": b"not under the prefix grant/",
            "sharing/grand": b"sorts before the prefix",
            "catalog/entry/a": b"another service",
        }
    )
    assert store.get_meta("sharing/grant/z") is None
    assert store.meta_range("sharing/grant/") == [
        ("sharing/grant/a", b"1"),
        ("sharing/grant/b", b"2"),
        ("sharing/grant/c", b"3"),
    ]
    first = store.meta_range("sharing/grant/", limit=2)
    assert [key for key, _ in first] == ["sharing/grant/a", "sharing/grant/b"]
    assert store.meta_range("sharing/grant/", after=first[-1][0], limit=2) == [
        ("sharing/grant/c", b"3")
    ]
    assert store.meta_range("sharing/grant/", after="sharing/grant/c") == []
    assert store.meta_range("nothing/") == []
    assert [key for key, _ in store.meta_range("", limit=3)] == [
        "catalog/entry/a",
        "sharing/grand",
        "sharing/grant/a",
    ]


def test_a_failed_meta_update_stores_none_of_it(store: MetaStore) -> None:
    store.set_meta("rows/a", b"1")
    with pytest.raises(UsageError, match="str keys and bytes"):
        store.update_meta({"rows/a": b"2", "rows/b": "not bytes"})  # type: ignore[dict-item]
    assert store.meta_range("rows/") == [("rows/a", b"1")]
    with pytest.raises(UsageError, match="limit must be a positive int"):
        store.meta_range("rows/", limit=0)


def test_queue_depths_count_entries_and_bytes(store: CustodyStore) -> None:
    store.accept(
        [
            make(1, size=100),
            make(2, size=200, forward={CHILD: (f"{CHILD}.a",), LINK: (f"{LINK}.b",)}),
            make(3, size=50, local=(ME,)),
        ],
        NOW,
    )
    assert store.queue_depth(CHILD) == QueueDepth(2, 300)
    assert store.queue_depth(LINK) == QueueDepth(1, 200)
    assert store.queue_depth("990000") == QueueDepth(0, 0)
    assert store.inbox_depth() == QueueDepth(1, 50)
    assert store.totals() == QueueDepth(4, 550)


def test_usable_from_another_thread(store: CustodyStore) -> None:
    """The node runs the store in a worker thread; calls are serialised by the store."""
    errors: list[BaseException] = []

    def work(first: int) -> None:
        try:
            for n in range(first, first + 20):
                store.accept([make(n)], NOW)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k * 100,)) for k in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert store.queue_depth(CHILD).count == 60


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"message_id": b"short"}, "message_id"),
        ({"digest": bytes(31)}, "digest"),
        ({"data": b""}, "data"),
        ({"data": bytearray(b"x")}, "data"),
        ({"sender": ""}, "sender"),
        ({"expires_ms": -1}, "expires_ms"),
        ({"expires_ms": 1.5}, "expires_ms"),
        ({"local": (), "forward": {}}, "at least one target"),
        ({"forward": {CHILD: ()}}, "no targets"),
        ({"local": (ME,), "forward": {CHILD: (ME,)}}, "routed twice"),
        ({"forward": {CHILD: ("two words",)}}, "without spaces"),
        ({"forward": {"": ("x",)}}, "next hop"),
    ],
)
def test_malformed_items_are_usage_errors(change: dict[str, object], words: str) -> None:
    fields: dict[str, object] = {
        "sender": SENDER,
        "message_id": bytes(16),
        "digest": bytes(32),
        "data": b"x",
        "expires_ms": NOW,
        "forward": {CHILD: ("520102.a",)},
    }
    fields.update(change)
    with pytest.raises(UsageError, match=words):
        AcceptItem(**fields)  # type: ignore[arg-type]


def test_misuse_is_a_usage_error(store: Store) -> None:
    with pytest.raises(UsageError):
        store.accept([("not", "an", "item")], NOW)  # type: ignore[list-item]
    with pytest.raises(UsageError):
        store.accept([make(1)], -1)
    with pytest.raises(UsageError):
        store.pending(CHILD, NOW, 0, 100)
    with pytest.raises(UsageError):
        store.pending(CHILD, NOW, 10, 0)
    with pytest.raises(UsageError):
        store.inbox(NOW, 10, after=-1)
    with pytest.raises(UsageError):
        store.inbox(NOW, 10, max_bytes=0)
    with pytest.raises(UsageError):
        store.forwarded(CHILD, [0])
    with pytest.raises(UsageError):
        store.delivered([True])
    with pytest.raises(UsageError):
        store.take_expired(NOW, 0)
    with pytest.raises(UsageError):
        store.set_meta("k", "text")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        store.set_peer_state(CHILD, (1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        PeerState(failures=-1)
    assert store.totals() == QueueDepth(0, 0)


def test_a_closed_store_refuses_every_call(store: Store) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(UsageError, match="closed"):
        store.accept([make(1)], NOW)
    with pytest.raises(UsageError, match="closed"):
        store.pending(CHILD, NOW, 1, 1)
    with pytest.raises(UsageError, match="closed"):
        store.queue_depth(CHILD)
    with pytest.raises(UsageError, match="closed"):
        store.get_meta("k")


# --- SQLite only: durability, atomicity, the file ---------------------------------


def _queues(
    store: Store,
) -> tuple[list[OutboundEntry], list[OutboundEntry], list[InboundEntry], QueueDepth, list[str]]:
    """What the queues hold and count: compared before closing and after reopening."""
    return (
        store.pending(CHILD, NOW, 10, 1 << 20),
        store.pending(LINK, NOW, 10, 1 << 20),
        store.inbox(NOW, 10),
        store.totals(),
        store.next_hops(),
    )


def test_sqlite_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    item = make(1, local=(ME,), forward={CHILD: (f"{CHILD}.a",), LINK: (f"{LINK}.b",)})
    with SqliteStore(path) as store:
        store.accept([item, make(2), make(3, expires_ms=NOW + 10)], NOW)
        store.forwarded(CHILD, [store.pending(CHILD, NOW, 1, 1 << 20)[0].seq])
        store.set_peer_state(LINK, PeerState(failures=2, next_attempt_ms=NOW + 5))
        store.set_meta("directory", b"cached")
        before = _queues(store)
        last_seq = max(e.seq for e in before[0] + before[1])
    with SqliteStore(path) as store:
        assert _queues(store) == before
        assert store.queue_depth(CHILD) == QueueDepth(2, 200)
        assert store.accept([item], NOW)[0].status is DUPLICATE
        assert store.peer_state(LINK) == PeerState(failures=2, next_attempt_ms=NOW + 5)
        assert store.get_meta("directory") == b"cached"
        assert ids(store.take_expired(NOW + 10, 10)) == [3]
        store.accept([make(4)], NOW)
        assert store.pending(CHILD, NOW, 10, 1 << 20)[-1].seq > last_seq


def test_sqlite_accept_says_where_it_queued_each_copy(tmp_path: Path) -> None:
    # The node hands what it committed to its forwarders and inbox by these seqs.
    with SqliteStore(tmp_path / "s.db") as store:
        store.accept([make(1), make(2, local=(ME,))], NOW)
        store.forwarded(CHILD, [store.pending(CHILD, NOW, 1, 1 << 20)[0].seq])  # a gap
        numbers = (3, 1, 4, 5, 6)
        outcomes = store.accept(
            [
                make(3, local=(ME,), forward={CHILD: (f"{CHILD}.a",), LINK: (f"{LINK}.b",)}),
                make(1),  # a duplicate: queued nowhere
                make(4, forward={LINK: (f"{LINK}.c",)}),
                make(5, local=(ME,)),
                make(6, forward={CHILD: (f"{CHILD}.a",)}, expires_ms=NOW),  # expired
            ],
            NOW,
        )
        assert [o.status for o in outcomes] == [ACCEPTED, DUPLICATE, ACCEPTED, ACCEPTED, EXPIRED]

        def numbered(entries: Sequence[InboundEntry | OutboundEntry]) -> list[tuple[int, int]]:
            return list(zip((e.seq for e in entries), ids(entries), strict=True))

        for hop in (CHILD, LINK):
            said = [
                (o.seqs[hop], n) for o, n in zip(outcomes, numbers, strict=True) if hop in o.seqs
            ]
            assert said == [e for e in numbered(store.pending(hop, NOW, 9, 1 << 20)) if e[1] != 1]
        said = [(o.inbox_seq, n) for o, n in zip(outcomes, numbers, strict=True) if o.inbox_seq]
        assert said == [e for e in numbered(store.inbox(NOW, 9)) if e[1] != 2]
        assert outcomes[1].seqs == {}
        assert outcomes[3].seqs == {}
        assert outcomes[2].inbox_seq is None
        # Not part of the outcome's value: every store's outcomes compare alike.
        assert outcomes[0] == replace(outcomes[0], seqs={}, inbox_seq=None)


def test_sqlite_every_change_waits_for_the_disk_a_removal_after_handover_too(
    tmp_path: Path,
) -> None:
    # Returned means durable, for every call: ``forwarded`` too, though it moves no custody
    # (a removal undone by a power cut would cost only a resend): the contract stays one.
    with SqliteStore(tmp_path / "s.db") as store:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        store.accept([make(1), make(2), make(3, local=(ME,))], NOW)
        store.forwarded(CHILD, [e.seq for e in store.pending(CHILD, NOW, 9, 1 << 20)])
        store.delivered([e.seq for e in store.inbox(NOW, 9)])
        conn.set_trace_callback(None)
        assert not [s for s in seen if "synchronous" in s.lower()]
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)


def _poison(path: Path, table: str, message_id: bytes) -> None:
    """Plant a trigger that fails any insert of ``message_id`` into ``table``."""
    raw = sqlite3.connect(path)
    with raw:
        raw.execute(
            f"CREATE TRIGGER poison BEFORE INSERT ON {table} "
            f"WHEN NEW.message_id = X'{message_id.hex()}' "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    raw.close()


@pytest.mark.parametrize("table", ["outbound", "inbox"])
def test_sqlite_a_failing_batch_stores_nothing(tmp_path: Path, table: str) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    _poison(path, table, make(3).message_id)
    with SqliteStore(path) as store:
        store.accept([make(100)], NOW)
        batch = [make(n, local=(ME,), forward={CHILD: (f"{CHILD}.a",)}) for n in range(1, 6)]
        with pytest.raises(StoreError, match="injected failure") as failure:
            store.accept(batch, NOW)
        assert str(path) in str(failure.value)
        # Nothing of the batch: no entries, no dedup records, counters untouched.
        assert ids(store.pending(CHILD, NOW, 10, 1 << 20)) == [100]
        assert store.inbox(NOW, 10) == []
        assert all(store.seen(SENDER, item.message_id) is None for item in batch)
        assert store.totals() == QueueDepth(1, 100)
        # The store is still usable, and the batch without the poisoned item goes in whole.
        outcomes = store.accept([item for item in batch if item != batch[2]], NOW)
        assert [o.status for o in outcomes] == [ACCEPTED] * 4
        assert store.totals() == QueueDepth(9, 900)


def test_sqlite_refuses_a_newer_schema_without_touching_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    raw = sqlite3.connect(path)
    with raw:
        raw.execute(
            "UPDATE store_info SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,)
        )
    raw.close()
    content = path.read_bytes()
    with pytest.raises(StoreError, match="newer") as refused:
        SqliteStore(path)
    assert str(path) in str(refused.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(refused.value)
    assert path.read_bytes() == content


def test_sqlite_refuses_a_damaged_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("DELETE FROM store_info WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(StoreError, match="damaged"):
        SqliteStore(path)


def test_sqlite_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the pages you are looking for\n" * 200)
    with pytest.raises(StoreError, match="not an SQLite database") as refused:
        SqliteStore(path)
    assert str(path) in str(refused.value)


def test_sqlite_refuses_another_applications_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("CREATE TABLE t (x)")
    raw.close()
    with pytest.raises(StoreError, match="not an exchnode store") as refused:
        SqliteStore(path)
    assert str(path) in str(refused.value)


def test_sqlite_refuses_a_store_in_use(tmp_path: Path) -> None:
    """Two daemons on one store would both send everything: the second one is refused."""
    path = tmp_path / "s.db"
    with SqliteStore(path) as first:
        first.accept([make(1)], NOW)
        with pytest.raises(StoreError, match="in use") as refused:
            SqliteStore(path, busy_timeout_ms=50)
        assert str(path) in str(refused.value)
        assert first.queue_depth(CHILD).count == 1  # the owner is unaffected
    with SqliteStore(path) as again:
        assert again.queue_depth(CHILD).count == 1


def test_sqlite_file_is_wal_owner_only_and_marked(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    assert path.stat().st_mode & 0o777 == 0o600
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert raw.execute("PRAGMA application_id").fetchone() == (0x45584E44,)
    raw.close()


def test_sqlite_needs_a_usable_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="MemoryStore"):
        SqliteStore(":memory:")
    missing = tmp_path / "no" / "such" / "dir" / "s.db"
    with pytest.raises(StoreError, match="cannot open") as refused:
        SqliteStore(missing)
    assert str(missing) in str(refused.value)


# --- idempotent sends (issue 12, item 10) ----------------------------------------------


def keyed(n: int, key: int, *, request: int = 0, expires_ms: int = NOW + HOUR) -> AcceptItem:
    """This node's own envelope ``n`` sent under the client's key ``key`` asking ``request``."""
    send = SendKey(
        key=hashlib.sha256(b"key %d" % key).digest(),
        request=hashlib.sha256(b"request %d" % request).digest(),
    )
    return replace(make(n, expires_ms=expires_ms), send_key=send)


def test_a_send_repeated_under_its_key_is_the_first_message(store: CustodyStore) -> None:
    (first,) = store.accept([keyed(1, key=7)], NOW)
    assert first.status is ACCEPTED
    (again,) = store.accept([keyed(2, key=7)], NOW + 1)  # a retry: sealed anew, same key
    assert again.status is AcceptStatus.REPEATED
    assert again.original is not None
    assert again.original.message_id == (1).to_bytes(16, "big")
    assert again.original.expires_ms == NOW + HOUR
    # Nothing of the retry was kept: one copy queued, no record of its id.
    assert [e.message_id for e in store.pending(CHILD, NOW, 10, None)] == [(1).to_bytes(16, "big")]
    assert store.seen(SENDER, (2).to_bytes(16, "big")) is None


def test_repeats_within_one_batch_and_other_keys_are_told_apart(store: CustodyStore) -> None:
    outcomes = store.accept([keyed(1, key=7), keyed(2, key=7), keyed(3, key=8)], NOW)
    assert [o.status for o in outcomes] == [ACCEPTED, AcceptStatus.REPEATED, ACCEPTED]
    assert outcomes[1].original is not None
    assert outcomes[1].original.message_id == (1).to_bytes(16, "big")
    assert store.queue_depth(CHILD).count == 2


def test_a_key_reused_for_another_message_is_refused(store: CustodyStore) -> None:
    store.accept([keyed(1, key=7)], NOW)
    (reused,) = store.accept([keyed(2, key=7, request=1)], NOW)
    assert reused.status is AcceptStatus.KEY_REUSED
    assert not reused.acknowledge
    assert store.queue_depth(CHILD).count == 1


def test_a_key_lives_as_long_as_its_message(store: CustodyStore) -> None:
    store.accept([keyed(1, key=7, expires_ms=NOW + 10)], NOW)
    (later,) = store.accept([keyed(2, key=7, request=1)], NOW + 10)  # the first has expired
    assert later.status is ACCEPTED
    store.prune(NOW + HOUR + 1)
    (fresh,) = store.accept([keyed(3, key=7, request=2, expires_ms=NOW + 2 * HOUR)], NOW + HOUR + 1)
    assert fresh.status is ACCEPTED


def test_only_a_nodes_own_messages_carry_a_send_key() -> None:
    with pytest.raises(UsageError, match="own messages"):
        replace(keyed(1, key=7), came_from=CHILD)


def test_sqlite_a_send_key_survives_a_restart(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        store.accept([keyed(1, key=7)], NOW)
    with SqliteStore(tmp_path / "s.db") as store:
        (again,) = store.accept([keyed(2, key=7)], NOW + 1)
    assert again.status is AcceptStatus.REPEATED
