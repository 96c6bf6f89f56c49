"""SPEC §14.13-§14.17: the scoped, incremental directory (format 2), hop by hop, stepped clock.

The federation is :class:`tests.unit.federation.directories.Federation` (its module draws it).
"""

from __future__ import annotations

import contextlib
import itertools
import random
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.core import NodeName, Opener, Outgoing, Sealer
from exchnode.errors import (
    BadSignatureError,
    DirectoryExpiredError,
    MalformedError,
    RejectedError,
    ReplayError,
    TooLargeError,
    UnknownSignerError,
    UsageError,
    WrongIssuerError,
)
from exchnode.federation import Neighbour, NodeDirectory, Relation, verify_snapshot
from exchnode.federation._directory import PageReport
from exchnode.federation._directory_pages import (
    PAGE_LABEL,
    Audience,
    PagePolicy,
    decode_lookup,
    decode_page,
    encode_lookup,
)
from exchnode.federation._directory_wire import DIRECTORY_LABEL, DirectoryPolicy
from exchnode.testing import IssuedNode, SeededRandom
from tests.unit.federation.directories import HOUR, MINUTE, Clock, Federation, url

LIFETIME = HOUR


def directory(
    fed: Federation,
    node: IssuedNode,
    clock: Clock,
    parent: str | None = None,
    *children: str,
    page_policy: PagePolicy | None = None,
    feed: int = 0,
) -> NodeDirectory:
    neighbours = [Neighbour(NodeName.parse(c), Relation.CHILD) for c in children]
    if parent is not None:
        neighbours.append(Neighbour(NodeName.parse(parent), Relation.PARENT))
    return NodeDirectory(
        node.identity,
        clock=clock,
        address=url(node),
        neighbours=neighbours,
        page_policy=page_policy or PagePolicy(),
        feed_ids=(bytes([feed, 1]) * 8, bytes([feed, 2]) * 8),
    )


def sync(fed: Federation, into: NodeDirectory, source: NodeDirectory, now: float) -> list[bytes]:
    """Pull ``source``'s feed for ``into`` page by page until it has no more; the pages."""
    pages = []
    name, me = str(source.me), str(into.me)
    while True:
        since, listing = into.pull_position(name, now)
        page = source.feed_page(source.audience_of(me), since, now, LIFETIME, listing=listing)
        pages.append(page)
        report: PageReport = into.apply_page(name, page, fed.trust(), now)
        if not report.more:
            return pages


class Tree:
    """D under K under C under P; M under K3 under C; F under C; T under P."""

    def __init__(self, fed: Federation, clock: Clock, page_policy: PagePolicy | None = None):
        self.fed = fed
        self.clock = clock
        self.D = directory(fed, fed.D, clock, "520102")
        self.K = directory(fed, fed.K, clock, "520100", "520102.gongan")
        self.M = directory(fed, fed.M, clock, "520103")
        self.K3 = directory(fed, fed.K3, clock, "520100", "520103.minzheng")
        self.F = directory(fed, fed.F, clock, "520100")
        self.C = directory(
            fed, fed.C, clock, "520000", "520102", "520103", "520100.fagai", page_policy=page_policy
        )
        self.P = directory(fed, fed.P, clock, None, "520100", "520000.tongji")
        self.T = directory(fed, fed.T, clock, "520000")
        self.up = [
            (self.K, self.D),
            (self.K3, self.M),
            (self.C, self.K),
            (self.C, self.K3),
            (self.C, self.F),
            (self.P, self.C),
            (self.P, self.T),
        ]
        self.down = [(child, parent) for parent, child in reversed(self.up)]

    def refresh(self, now: float) -> dict[tuple[str, str], list[bytes]]:
        """One refresh period: every node pulls every neighbour (children first, then down)."""
        return {
            (str(into.me), str(source.me)): sync(self.fed, into, source, now)
            for into, source in (*self.up, *self.down)
        }


def synced(fed: Federation) -> Tree:
    """The tree on a clock at ``fed.t0``, every feed pulled once (``tree.clock`` steps it)."""
    tree = Tree(fed, Clock(fed.t0))
    tree.refresh(fed.t0)
    return tree


def crl_der_count(page: bytes) -> int:
    return len(decode_page(page).crls)


# --- what each node holds ----------------------------------------------------------------


def test_a_node_holds_its_subtree_and_its_path_not_the_network(fed: Federation) -> None:
    tree = synced(fed)
    now = fed.t0
    assert tree.D.names(now) == ["000000", "520000", "520100", "520102", "520102.gongan"][1:]
    county = ["520000", "520100", "520102", "520102.gongan"]
    assert tree.K.names(now) == county
    city = sorted([*county, "520100.fagai", "520103", "520103.minzheng"])
    assert tree.C.names(now) == city
    assert tree.P.names(now) == sorted([*city, "520000.tongji"])
    # A department does not hold its county's siblings' subtrees nor the province's others.
    assert "520103.minzheng" not in tree.D.names(now)
    with pytest.raises(UsageError, match="not in the directory"):
        tree.D.recipient_at("520103.minzheng", now)


def test_in_sync_neighbours_exchange_one_empty_page(fed: Federation) -> None:
    tree = synced(fed)
    later = fed.t0 + MINUTE
    pages = tree.refresh(later)
    for link, sent in pages.items():
        assert len(sent) == 1, link
        page = decode_page(sent[0])
        assert (page.entries, page.removed, page.crls) == ((), (), ()), link
        assert len(sent[0]) < 2000, (link, len(sent[0]))
    # The renewed pages keep everything alive past the first pages' expiry.
    assert tree.D.names(fed.t0 + LIFETIME + 30) == tree.D.names(later)


def test_one_changed_entry_travels_alone_up_the_path(fed: Federation) -> None:
    tree = synced(fed)
    clock = tree.clock
    rotated = fed.pki.node("520102.gongan", fed.county, generation=1)
    tree.D = directory(fed, rotated, clock, "520102", feed=5)  # a restart: new feed ids
    tree.up[0] = (tree.K, tree.D)
    tree.down[-1] = (tree.D, tree.K)
    pages = tree.refresh(fed.t0 + MINUTE)
    for link in [("520102", "520102.gongan"), ("520100", "520102"), ("520000", "520100")]:
        (page,) = (decode_page(p) for p in pages[link])
        assert [e.name for e in page.entries] == ["520102.gongan"], link
        assert page.entries[0].chain[0] == rotated.certificate.public_bytes(Encoding.DER)
    # Unrelated links stay empty.
    assert decode_page(pages[("520103", "520103.minzheng")][0]).entries == ()
    new_key = rotated.identity.peer.encryption_key_id
    assert tree.P.recipient_at("520102.gongan", fed.t0 + MINUTE).encryption_key_id == new_key


def test_pages_are_bounded_and_paging_brings_everything(fed: Federation) -> None:
    clock = Clock(fed.t0)
    first = Tree(fed, clock, page_policy=PagePolicy(max_entries=2))
    for into, source in first.up:
        sync(fed, into, source, fed.t0)
    assert len(sync(fed, first.P, first.C, fed.t0)) == 1  # already in sync
    fresh = directory(fed, fed.P, clock, None, "520100", "520000.tongji", feed=9)
    listed = sync(fed, fresh, first.C, fed.t0)
    assert len(listed) == 3  # six entries, two a page
    assert all(len(decode_page(p).entries) <= 2 for p in listed)
    assert fresh.names(fed.t0) == [n for n in first.P.names(fed.t0) if n != "520000.tongji"]


# --- expiry: never growing along a relay path, dying on time downstream -----------------------


def test_valid_until_never_grows_and_a_partitioned_subtree_dies_downstream(
    fed: Federation,
) -> None:
    tree = synced(fed)
    clock = tree.clock
    # K3's subtree is cut off from C from now on: C keeps pulling everyone else.
    cut = {(tree.C, tree.K3), (tree.K3, tree.C)}
    now = fed.t0
    for minute in range(1, 50):
        now = fed.t0 + minute * MINUTE
        for into, source in (*tree.up, *tree.down):
            if (into, source) not in cut:
                sync(fed, into, source, now)
        for name in ("520103", "520103.minzheng"):
            # What P holds of K3's subtree never outlives what C was told by K3.
            assert (
                tree.P._index[name][0].valid_until_ms
                <= tree.C._index[name][0].valid_until_ms
                <= int((fed.t0 + LIFETIME) * 1000)
            )
    # Past K3's last page's expiry, P refuses, naming where the data came from.
    clock.now = fed.t0 + LIFETIME + 1
    late = fed.t0 + LIFETIME + 1
    for into, source in (*tree.up, *tree.down):
        if (into, source) not in cut:
            sync(fed, into, source, late)
    with pytest.raises(DirectoryExpiredError, match=r"520103\.minzheng"):
        tree.P.recipient_at("520103.minzheng", late)
    with pytest.raises(DirectoryExpiredError):
        tree.C.recipient_at("520103.minzheng", late)
    # Everything else lives on.
    assert tree.P.recipient_at("520102.gongan", late).name == NodeName.parse("520102.gongan")
    # When K3 comes back, its rows are uncapped again and P uses them.
    sync(fed, tree.C, tree.K3, late)
    sync(fed, tree.P, tree.C, late)
    assert tree.P.recipient_at("520103.minzheng", late).name == NodeName.parse("520103.minzheng")


def test_a_stale_source_costs_one_change_of_its_rows_not_of_everything(fed: Federation) -> None:
    tree = synced(fed)
    now = fed.t0 + LIFETIME / 2 + MINUTE  # K3 unheard of for more than half a lifetime
    for into, source in (*tree.up, *tree.down):
        if {into, source} != {tree.C, tree.K3}:
            sync(fed, into, source, now)
    # The first pull after it went stale caps K3's two rows; nothing else changed.
    pages = sync(fed, tree.P, tree.C, now + 1)
    assert [decode_page(p).entries for p in pages] == [()]
    capped = sorted(
        (r.entry.name, r.entry.valid_until_ms)
        for r in tree.P._records["520100"]
        if r.entry.name.startswith("520103")
    )
    assert capped == [
        ("520103", int((fed.t0 + LIFETIME) * 1000)),
        ("520103.minzheng", int((fed.t0 + LIFETIME) * 1000)),
    ]
    # The page's expires no longer waits for K3.
    page = decode_page(pages[0])
    assert page.expires_ms > int((fed.t0 + LIFETIME) * 1000)


# --- lookups on demand --------------------------------------------------------------------------


def resolve(fed: Federation, chain: list[NodeDirectory], names: list[str], now: float) -> None:
    """What the services do: each hub asks its parent for what it cannot answer, then answers."""
    for asker, answerer in reversed(list(itertools.pairwise(chain))):
        _, forward = answerer.lookup_split(names, now)
        assert not forward or answerer is not chain[-1]
        answer = answerer.lookup_answer(names, now, LIFETIME)
        asker.apply_lookup(str(answerer.me), answer, names, fed.trust(), now)


def test_a_department_resolves_a_remote_department_through_the_hierarchy(
    fed: Federation,
) -> None:
    tree = synced(fed)
    now = fed.t0
    assert tree.D.lookup_split(["520103.minzheng"], now) == ([], ["520103.minzheng"])
    assert tree.K.lookup_split(["520103.minzheng"], now) == ([], ["520103.minzheng"])
    assert tree.C.lookup_split(["520103.minzheng"], now) == (["520103.minzheng"], [])
    resolve(fed, [tree.D, tree.K, tree.C], ["520103.minzheng"], now)
    sealed = Sealer(fed.D.identity, tree.D, random=SeededRandom("pages")).seal(
        Outgoing(["520103.minzheng"], b"across counties"), now
    )
    # M resolves D as a signer the same way.
    resolve(fed, [tree.M, tree.K3, tree.C], ["520102.gongan"], now)
    assert Opener(fed.M.identity, tree.M).open(sealed.data, now).plaintext == b"across counties"
    # The cache is bounded and dies with its entries.
    with pytest.raises(DirectoryExpiredError):
        tree.D.recipient_at("520103.minzheng", fed.t0 + LIFETIME + 1)


def test_a_name_unknown_in_the_answerers_subtree_is_answered_unknown(fed: Federation) -> None:
    tree = synced(fed)
    answer = tree.C.lookup_answer(["520103.nosuch", "520103.minzheng"], fed.t0, LIFETIME)
    report = tree.K.apply_lookup(
        "520100", answer, ["520103.nosuch", "520103.minzheng"], fed.trust(), fed.t0
    )
    assert report.found == ("520103.minzheng",)
    assert report.unknown == ("520103.nosuch",)


def test_a_miss_outside_the_subtree_asks_the_resolver_and_still_fails_closed(
    fed: Federation,
) -> None:
    tree = synced(fed)
    missed: list[str] = []
    tree.K.on_miss = missed.append
    with pytest.raises(UnknownSignerError):
        tree.K.signer("520103.minzheng", b"\0" * 16)
    with pytest.raises(UsageError):
        tree.K.recipient("520102.nosuch")  # inside K's own subtree: nobody above knows better
    assert missed == ["520103.minzheng"]


def test_a_lookup_answer_cannot_speak_for_this_nodes_subtree(fed: Federation) -> None:
    tree = synced(fed)
    answer = tree.C.lookup_answer(["520102.gongan"], fed.t0, LIFETIME)
    report = tree.K.apply_lookup("520100", answer, ["520102.gongan"], fed.trust(), fed.t0)
    assert report.found == ()


# --- revocation still reaches every node ---------------------------------------------------------


def test_a_crl_entered_at_the_province_reaches_a_department_and_revokes(fed: Federation) -> None:
    tree = synced(fed)
    resolve(fed, [tree.D, tree.K, tree.C], ["520103.minzheng"], fed.t0)
    fed.pki.revoke(fed.M.certificate, fed.county3, fed.pki.epoch + timedelta(days=1, hours=1))
    later = fed.t0 + 2 * HOUR
    crl = fed.pki.crl(fed.county3, number=2, this_update=fed.pki.epoch + timedelta(days=1, hours=1))
    tree.P.add_crls([crl], fed.trust(), later, cas=[fed.county3.certificate])
    tree.refresh(later)
    for node in (tree.C, tree.K, tree.D, tree.K3, tree.M, tree.T, tree.F):
        assert any(c.issuer == crl.issuer and len(list(c)) == 1 for c in node.crls()), node.me
    assert tree.D.revoked_keys("520103.minzheng") == {fed.M.identity.peer.signing_key_id}
    with pytest.raises(UsageError):
        tree.D.recipient_at("520103.minzheng", later)
    assert "520103.minzheng" not in tree.P.names(later)


# --- verification ------------------------------------------------------------------------------


def test_a_chain_is_verified_once_and_remembered(fed: Federation) -> None:
    tree = synced(fed)
    before = tree.D.memo.verified
    for minute in range(1, 6):
        tree.refresh(fed.t0 + minute * MINUTE)
    assert tree.D.memo.verified == before


def test_a_tampered_page_is_refused(fed: Federation) -> None:
    clock = Clock(fed.t0)
    tree = Tree(fed, clock)
    page = tree.D.feed_page(Audience.UP, None, fed.t0, LIFETIME)
    forged = page.replace(b"https://520102.gongan.example", b"https://520102.gongan.evil.xy")
    assert forged != page
    assert len(forged) == len(page)
    with pytest.raises(BadSignatureError):
        tree.K.apply_page("520102.gongan", forged, fed.trust(), fed.t0)
    assert tree.K.pull_position("520102.gongan", fed.t0) == (None, False)


def test_the_page_label_differs_from_the_snapshots(fed: Federation) -> None:
    clock = Clock(fed.t0)
    tree = Tree(fed, clock)
    page = decode_page(tree.D.feed_page(Audience.UP, None, fed.t0, LIFETIME))
    key = fed.D.identity.peer.signing_key
    key.verify(page.signature, b"exchnode/v1 directory page\x00" + page.body)
    assert PAGE_LABEL != DIRECTORY_LABEL
    assert not PAGE_LABEL.startswith(DIRECTORY_LABEL[:-1] + b"\0")


def test_a_page_for_another_audience_issuer_or_position_is_refused(fed: Federation) -> None:
    clock = Clock(fed.t0)
    tree = Tree(fed, clock)
    down = tree.K.feed_page(Audience.DOWN, None, fed.t0, LIFETIME)
    with pytest.raises(MalformedError, match="audience"):
        tree.C.apply_page("520102", down, fed.trust(), fed.t0)
    with pytest.raises(WrongIssuerError):
        tree.C.apply_page(
            "520103", tree.K.feed_page(Audience.UP, None, fed.t0, LIFETIME), fed.trust(), fed.t0
        )
    sync(fed, tree.C, tree.K, fed.t0)
    stale = tree.K.feed_page(Audience.UP, None, fed.t0, LIFETIME)  # answers a first pull
    with pytest.raises(ReplayError):
        tree.C.apply_page("520102", stale, fed.trust(), fed.t0)


def test_a_new_feed_resets_the_puller_and_sweeps_what_it_no_longer_lists(fed: Federation) -> None:
    tree = synced(fed)
    clock = tree.clock
    # K restarts with fresh feed ids and without D (say D was removed from its config).
    tree.K = directory(fed, fed.K, clock, "520100", feed=7)
    pages = sync(fed, tree.C, tree.K, fed.t0 + MINUTE)
    assert decode_page(pages[0]).reset
    assert "520102.gongan" not in tree.C.names(fed.t0 + MINUTE)
    assert "520102" in tree.C.names(fed.t0 + MINUTE)


def test_rows_stored_by_page_restore_after_a_restart(fed: Federation) -> None:
    clock = Clock(fed.t0)
    tree = Tree(fed, clock)
    stored: dict[tuple[str, bytes], bytes] = {}
    crls: dict[bytes, bytes] = {}
    state = None
    for into, source in tree.up[:3]:
        while True:
            since, listing = into.pull_position(str(source.me), fed.t0)
            page = source.feed_page(
                source.audience_of(str(into.me)), since, fed.t0, LIFETIME, listing=listing
            )
            report = into.apply_page(str(source.me), page, fed.trust(), fed.t0)
            if into is tree.C and str(source.me) == "520102":
                stored.update({(n, d): row for n, d, row in report.rows})
                for key in report.gone:
                    stored.pop(key, None)
                crls.update(dict(report.crls))
                state = report.state
            if not report.more:
                break
    again = directory(fed, fed.C, clock, "520000", "520102", "520103", "520100.fagai")
    dropped = again.restore_pull(
        "520102", state, stored.values(), crls.values(), fed.trust(), fed.t0
    )
    assert dropped == ()
    assert again.names(fed.t0) == ["520100", "520102", "520102.gongan"]
    # The restored position continues the feed: an empty page, no reset.
    first_page = decode_page(sync(fed, again, tree.K, fed.t0 + MINUTE)[0])
    assert not first_page.reset
    assert first_page.entries == ()


# --- the previous version (SPEC §14.17) ----------------------------------------------------------


def test_a_format_1_puller_gets_what_this_node_says_to_its_relation(fed: Federation) -> None:
    tree = synced(fed)
    clock = tree.clock
    data = tree.C.snapshot_for("520102", fed.t0, LIFETIME)
    verified = verify_snapshot(data, fed.trust(), fed.t0, "520100")
    assert sorted(e.name for e in verified.entries) == ["520000", "520100"]  # its path
    data = tree.C.snapshot_for("520000", fed.t0, LIFETIME)
    verified = verify_snapshot(data, fed.trust(), fed.t0, "520100")
    assert "520103.minzheng" in {e.name for e in verified.entries}  # its subtree
    # A node that has only format 1 is still pulled and merged as before.
    old = fed.city_with_county(clock)
    assert "520102.gongan" in old.names(fed.t0)


def test_beyond_format_1s_limits_the_refusal_says_why(fed: Federation) -> None:
    tree = synced(fed)
    clock = tree.clock
    small = NodeDirectory(
        fed.C.identity,
        clock=clock,
        neighbours=[
            Neighbour(NodeName.parse("520000"), Relation.PARENT),
            Neighbour(NodeName.parse("520102"), Relation.CHILD),
        ],
        policy=DirectoryPolicy(max_entries=2),
    )
    sync(fed, small, tree.K, fed.t0)
    with pytest.raises(TooLargeError, match="upgrade to directory format 2"):
        small.snapshot_for("520000", fed.t0, LIFETIME)


# --- hostile bytes -------------------------------------------------------------------------------


def test_any_bytes_decode_or_raise_a_rejection(fed: Federation) -> None:
    tree = synced(fed)
    page = tree.C.lookup_answer(["520102.gongan", "520103.nosuch"], fed.t0, LIFETIME)
    rng = random.Random(13)
    for _ in range(400):
        data = bytearray(page)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randint(0, len(data))]) if rng.random() < 0.2 else bytes(data)
        with contextlib.suppress(RejectedError):
            tree.K.apply_lookup("520100", cut, ["520102.gongan"], fed.trust(), fed.t0)
    for blob in (b"", b"\x93\x02", encode_lookup(["520102"])[:-1], b"\x92\x02\x90"):
        with pytest.raises(RejectedError):
            decode_lookup(blob)
    assert decode_lookup(encode_lookup(["520102", "520100"])) == ("520100", "520102")
