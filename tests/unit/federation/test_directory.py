"""SPEC §14: the signed, expiring node directory, hop by hop under a stepped clock.

The federation is :class:`tests.unit.federation.directories.Federation`: real
certificates from :class:`exchnode.testing.SyntheticPKI` (its module draws the tree).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.core import LocalIdentity, NodeName, Opener, Outgoing, Sealer, pack
from exchnode.errors import (
    BadSignatureError,
    CertificateExpiredError,
    CertificateRevokedError,
    DirectoryExpiredError,
    LifetimeTooLongError,
    MalformedError,
    NotYetValidError,
    RejectedError,
    ReplayError,
    RevocationUnavailableError,
    TooLargeError,
    UnknownSignerError,
    UnsupportedVersionError,
    UsageError,
    WrongIssuerError,
)
from exchnode.federation import Neighbour, NodeDirectory, Relation, verify_snapshot
from exchnode.federation._directory import decode_cache
from exchnode.federation._directory_verify import VerifiedSnapshot
from exchnode.federation._directory_wire import (
    DIRECTORY_LABEL,
    DirectoryPolicy,
    decode_snapshot,
    sign_snapshot,
)
from exchnode.pki import build_node_certificate
from exchnode.testing import (
    IssuedNode,
    SeededRandom,
    synthetic_encryption_key,
    synthetic_signing_key,
)
from tests.unit.federation.directories import DAY, HOUR, MINUTE, Clock, Federation, entry, url


def pull(
    fed: Federation,
    into: NodeDirectory,
    source: NodeDirectory,
    now: float,
    lifetime: float = DAY,
) -> VerifiedSnapshot:
    """One pull: ``source`` signs what it serves, ``into`` verifies and merges it."""
    data = source.sign(now, lifetime)
    name = str(source.me)
    verified = verify_snapshot(data, fed.trust(), now, name, wanted=into.accepts_from(name))
    into.update(name, verified, now)
    return verified


# --- the wire form and its signature ---------------------------------------------------


def test_round_trip_verifies_every_entry_and_keeps_the_keys(fed: Federation) -> None:
    data = fed.sign(fed.K, fed.D, crls=fed.crls)
    verified = verify_snapshot(data, fed.trust(crls=()), fed.t0, "520102")
    assert verified.issuer == "520102"
    assert [e.name for e in verified.entries] == ["520102", "520102.gongan"]
    by_name = {e.name: e for e in verified.entries}
    assert by_name["520102.gongan"].identity.signing_key_id == fed.D.identity.peer.signing_key_id
    assert (
        by_name["520102.gongan"].identity.encryption_key_id == fed.D.identity.peer.encryption_key_id
    )
    assert by_name["520102.gongan"].address == "https://520102.gongan.example:8443"
    # The issuer's own entries are stamped with the snapshot's expiry.
    assert {e.valid_until_ms for e in verified.entries} == {int((fed.t0 + DAY) * 1000)}
    assert verified.expires_ms == int((fed.t0 + DAY) * 1000)
    # The CRLs of the CAs on these chains travel; 520103's and 520200's CA certificates are
    # in no chain of this snapshot, so their CRLs cannot be checked and are left out.
    assert {crl.issuer.rfc4514_string() for crl in verified.crls} == {
        fed.root.certificate.subject.rfc4514_string(),
        fed.city.certificate.subject.rfc4514_string(),
        fed.county.certificate.subject.rfc4514_string(),
    }
    assert [(d.field.startswith("directory.body.crls["), d.code) for d in verified.dropped] == [
        (True, "untrusted"),
        (True, "untrusted"),
    ]
    assert verified.data == data


def test_the_signature_covers_the_label_and_the_body_exactly(fed: Federation) -> None:
    data = fed.sign(fed.K)
    snapshot = decode_snapshot(data)
    assert data == pack([1, snapshot.body, snapshot.signature])
    key = fed.K.identity.peer.signing_key
    assert isinstance(key, Ed25519PublicKey)
    key.verify(snapshot.signature, b"exchnode/v1 directory\x00" + snapshot.body)
    assert DIRECTORY_LABEL == b"exchnode/v1 directory\x00"
    assert snapshot.issuer_key_id == fed.K.identity.peer.signing_key_id


def test_a_tampered_body_is_refused(fed: Federation) -> None:
    data = fed.sign(fed.K, fed.D)
    forged = data.replace(b"https://520102.gongan.example", b"https://520102.gongan.evil.xy")
    assert forged != data
    assert len(forged) == len(data)
    with pytest.raises(BadSignatureError, match="520102"):
        verify_snapshot(forged, fed.trust(), fed.t0, "520102")


def test_a_tampered_signature_is_refused(fed: Federation) -> None:
    data = bytearray(fed.sign(fed.K, fed.D))
    data[-1] ^= 1
    with pytest.raises(BadSignatureError):
        verify_snapshot(bytes(data), fed.trust(), fed.t0, "520102")


def test_a_snapshot_signed_with_a_key_the_entry_does_not_certify_is_refused(
    fed: Federation,
) -> None:
    # The issuer's certificate, someone else's private key, the certificate's key id.
    impostor = LocalIdentity(
        fed.K.identity.peer,
        synthetic_signing_key("impostor"),
        fed.K.identity.encryption_private_key,
        fed.K.identity.chain,
    )
    data = sign_snapshot(impostor, [entry(fed.K)], [], fed.t0, DAY)
    with pytest.raises(BadSignatureError):
        verify_snapshot(data, fed.trust(), fed.t0, "520102")


def test_an_issuer_key_id_no_entry_certifies_is_an_unknown_signer(fed: Federation) -> None:
    other = LocalIdentity.from_keys(
        "520102",
        synthetic_signing_key("other"),
        synthetic_encryption_key("other"),
        certificate=fed.K.certificate,
        chain=fed.K.chain,
    )
    data = sign_snapshot(other, [entry(fed.K)], [], fed.t0, DAY)
    with pytest.raises(UnknownSignerError, match="no entry of 520102 certifies"):
        verify_snapshot(data, fed.trust(), fed.t0, "520102")


def test_a_snapshot_from_another_node_than_asked_is_refused(fed: Federation) -> None:
    data = fed.sign(fed.K)
    with pytest.raises(WrongIssuerError, match="fetched from 520103 is signed by 520102"):
        verify_snapshot(data, fed.trust(), fed.t0, "520103")
    assert verify_snapshot(data, fed.trust(), fed.t0, None).issuer == "520102"


def test_non_canonical_framing_is_refused(fed: Federation) -> None:
    data = fed.sign(fed.K)
    assert data[:2] == b"\x93\x01"
    longer = b"\x93\xcc\x01" + data[2:]  # format 1 as uint8: same value, longer form
    with pytest.raises(MalformedError, match="not canonical"):
        decode_snapshot(longer)


def test_a_non_canonical_body_is_refused_even_when_genuinely_signed(fed: Federation) -> None:
    snapshot = decode_snapshot(fed.sign(fed.K))
    assert snapshot.body[:2] == b"\x96\xa6"  # fixarray(6), fixstr(6) "520102"
    body = b"\x96\xd9\x06" + snapshot.body[2:]  # the issuer as str8: same string
    signature = fed.K.identity.signing_private_key.sign(DIRECTORY_LABEL + body)
    data = pack([1, body, signature])
    with pytest.raises(MalformedError, match=r"directory\.body: encoding is not canonical"):
        verify_snapshot(data, fed.trust(), fed.t0, "520102")


def test_an_unknown_format_is_refused(fed: Federation) -> None:
    snapshot = decode_snapshot(fed.sign(fed.K))
    with pytest.raises(UnsupportedVersionError):
        decode_snapshot(pack([2, snapshot.body, snapshot.signature]))


def test_entries_out_of_order_are_refused(fed: Federation) -> None:
    snapshot = decode_snapshot(fed.sign(fed.K, fed.D))
    rows = [[e.name, list(e.chain), e.address, e.valid_until_ms] for e in snapshot.entries]
    fields = [
        snapshot.issuer,
        snapshot.issuer_key_id,
        snapshot.issued_ms,
        snapshot.expires_ms,
        rows[::-1],
        [],
    ]
    with pytest.raises(MalformedError, match=r"entries\[1\]: entries must be sorted"):
        decode_snapshot(pack([1, pack(fields), snapshot.signature]))


# --- bounds ----------------------------------------------------------------------------


def test_too_many_entries_are_refused_naming_the_field(fed: Federation) -> None:
    data = fed.sign(fed.K, fed.D, fed.K3)
    decode_snapshot(data, DirectoryPolicy(max_entries=3))
    with pytest.raises(TooLargeError) as raised:
        verify_snapshot(data, fed.trust(), fed.t0, "520102", policy=DirectoryPolicy(max_entries=2))
    assert raised.value.field == "directory.body.entries"


def test_an_entry_count_beyond_any_limit_is_refused_before_it_is_built(
    fed: Federation,
) -> None:
    snapshot = decode_snapshot(fed.sign(fed.K))
    head = pack(snapshot[:4])[1:]  # the first four fields, without their array header
    body = b"\x96" + head + b"\xdd\xff\xff\xff\xff"  # entries claims 2^32 - 1 elements
    with pytest.raises(TooLargeError) as raised:
        decode_snapshot(pack([1, body, snapshot.signature]))
    assert raised.value.field == "directory.body.entries"


def test_a_chain_longer_than_the_profile_allows_is_refused(fed: Federation) -> None:
    snapshot = decode_snapshot(fed.sign(fed.K))
    own = snapshot.entries[0]
    long_chain = [own.chain[0]] * 5
    fields = [*snapshot[:4], [[own.name, long_chain, own.address, own.valid_until_ms]], []]
    with pytest.raises(TooLargeError) as raised:
        decode_snapshot(pack([1, pack(fields), snapshot.signature]))
    assert raised.value.field == "directory.body.entries[0].chain"
    with pytest.raises(UsageError, match=r"chain must be 1\.\.4"):
        sign_snapshot(
            fed.K.identity,
            [entry(fed.K), own._replace(name="520102.x", chain=tuple(long_chain))],
            [],
            fed.t0,
            DAY,
        )


def test_a_snapshot_beyond_the_byte_limit_is_refused(fed: Federation) -> None:
    data = fed.sign(fed.K, fed.D)
    with pytest.raises(TooLargeError) as raised:
        decode_snapshot(data, DirectoryPolicy(max_snapshot_bytes=len(data) - 1))
    assert raised.value.field == "directory"


# --- freshness -------------------------------------------------------------------------


def test_an_expired_snapshot_is_refused(fed: Federation) -> None:
    data = fed.sign(fed.K, lifetime=HOUR)
    verify_snapshot(data, fed.trust(), fed.t0 + HOUR - 0.001, "520102")
    with pytest.raises(DirectoryExpiredError, match="520102 expired at 2026-01-02T01:00:00Z") as e:
        verify_snapshot(data, fed.trust(), fed.t0 + HOUR, "520102")
    assert e.value.code == "directory-expired"
    assert e.value.expired_ms == int((fed.t0 + HOUR) * 1000)


def test_a_snapshot_from_the_future_is_refused_beyond_the_clock_skew(fed: Federation) -> None:
    data = fed.sign(fed.K)
    verify_snapshot(data, fed.trust(), fed.t0 - 300, "520102")
    with pytest.raises(NotYetValidError):
        verify_snapshot(data, fed.trust(), fed.t0 - 301, "520102")


def test_a_lifetime_beyond_the_policy_is_refused(fed: Federation) -> None:
    data = fed.sign(fed.K, lifetime=2 * DAY)
    with pytest.raises(LifetimeTooLongError):
        verify_snapshot(
            data, fed.trust(), fed.t0, "520102", policy=DirectoryPolicy(max_lifetime=DAY)
        )
    with pytest.raises(UsageError, match="lifetime"):
        fed.sign(fed.K, lifetime=8 * DAY)


# --- entries that fail on their own ---------------------------------------------------


def test_a_revoked_entry_is_dropped_and_the_rest_survives(fed: Federation) -> None:
    fed.pki.revoke(fed.D.certificate, fed.county)
    fresh = fed.pki.crl(fed.county, number=2, this_update=fed.pki.epoch + timedelta(hours=1))
    data = fed.sign(fed.K, fed.D, fed.F, crls=[fresh])
    verified = verify_snapshot(data, fed.trust(), fed.t0, "520102")
    assert [e.name for e in verified.entries] == ["520100.fagai", "520102"]
    (dropped,) = verified.dropped
    assert (dropped.name, dropped.code) == ("520102.gongan", "revoked")
    assert dropped.field.startswith("directory.body.entries[")
    assert fresh.public_bytes(Encoding.DER) in {c.public_bytes(Encoding.DER) for c in verified.crls}


def test_a_revoked_issuer_rejects_the_whole_snapshot(fed: Federation) -> None:
    fed.pki.revoke(fed.K.certificate, fed.county)
    fresh = fed.pki.crl(fed.county, number=2)
    data = fed.sign(fed.K, fed.D, crls=[fresh])
    with pytest.raises(CertificateRevokedError, match="520102"):
        verify_snapshot(data, fed.trust(), fed.t0, "520102")


def test_a_forged_crl_neither_revokes_nor_travels(fed: Federation) -> None:
    fed.pki.revoke(fed.D.certificate, fed.county)
    forged = fed.pki.crl(fed.county, number=99, signing_key=synthetic_signing_key("forger"))
    data = fed.sign(fed.K, fed.D, crls=[forged])
    verified = verify_snapshot(data, fed.trust(), fed.t0, "520102")
    assert [e.name for e in verified.entries] == ["520102", "520102.gongan"]
    assert verified.crls == ()
    (dropped,) = verified.dropped
    assert (dropped.field, dropped.code) == ("directory.body.crls[0]", "bad-certificate-signature")


def test_crls_in_the_snapshot_stand_in_for_missing_local_ones(fed: Federation) -> None:
    with_crls = fed.sign(fed.K, fed.D, crls=fed.crls)
    verified = verify_snapshot(with_crls, fed.trust(crls=()), fed.t0, "520102")
    assert len(verified.entries) == 2
    with pytest.raises(RevocationUnavailableError):
        verify_snapshot(fed.sign(fed.K, fed.D), fed.trust(crls=()), fed.t0, "520102")


def test_an_entry_whose_name_is_not_its_certificates_is_dropped(fed: Federation) -> None:
    liar = entry(fed.D)._replace(name="520102.jiaoyu")
    data = sign_snapshot(fed.K.identity, [entry(fed.K), liar], [], fed.t0, DAY)
    verified = verify_snapshot(data, fed.trust(), fed.t0, "520102")
    assert [e.name for e in verified.entries] == ["520102"]
    assert verified.dropped[0].code == "malformed"
    assert "certificate names 520102.gongan" in verified.dropped[0].reason


def test_an_entry_expired_on_arrival_is_dropped(fed: Federation) -> None:
    stale = entry(fed.D)._replace(valid_until_ms=int((fed.t0 + MINUTE) * 1000))
    data = sign_snapshot(fed.K.identity, [entry(fed.K), stale], [], fed.t0, DAY)
    verified = verify_snapshot(data, fed.trust(), fed.t0 + 2 * MINUTE, "520102")
    assert [e.name for e in verified.entries] == ["520102"]
    assert verified.dropped[0].code == "directory-expired"


def test_the_issuers_own_entries_are_vouched_for_anew_at_each_signing(fed: Federation) -> None:
    # Whatever valid_until the issuer's own entry held, even a past one, the
    # signature renews it; a relayed entry keeps its own.
    own = entry(fed.K)._replace(valid_until_ms=1)
    relayed = entry(fed.D)._replace(valid_until_ms=int((fed.t0 + HOUR) * 1000))
    data = sign_snapshot(fed.K.identity, [own, relayed], [], fed.t0, DAY)
    until = {e.name: e.valid_until_ms for e in decode_snapshot(data).entries}
    assert until == {
        "520102": int((fed.t0 + DAY) * 1000),
        "520102.gongan": int((fed.t0 + HOUR) * 1000),
    }


def test_signing_refuses_what_peers_would_refuse(fed: Federation) -> None:
    with pytest.raises(UsageError, match="own entry"):
        sign_snapshot(fed.K.identity, [entry(fed.D)], [], fed.t0, DAY)
    stale = entry(fed.D)._replace(valid_until_ms=int(fed.t0 * 1000))
    with pytest.raises(UsageError, match="live entries only"):
        sign_snapshot(fed.K.identity, [entry(fed.K), stale], [], fed.t0, DAY)
    with pytest.raises(UsageError, match="address"):
        sign_snapshot(fed.K.identity, [entry(fed.K)._replace(address="http://k")], [], fed.t0, DAY)


# --- merging and scope ------------------------------------------------------------------


def test_a_child_speaks_only_for_its_own_subtree(fed: Federation) -> None:
    clock = Clock(fed.t0)
    city = fed.directory(fed.C, clock, "520000", "520102", "520100.fagai")
    # County hub 520102 relays a (genuinely certified) node of another county.
    verified = verify_snapshot(fed.sign(fed.K, fed.D, fed.M), fed.trust(), fed.t0, "520102")
    report = city.update("520102", verified, fed.t0)
    assert report.accepted == ("520102", "520102.gongan")
    assert report.out_of_scope == ("520103.minzheng",)
    with pytest.raises(UsageError, match=r"520103\.minzheng is not in the directory"):
        city.recipient("520103.minzheng")
    # A department child covers exactly itself.
    verified = verify_snapshot(fed.sign(fed.F, fed.D), fed.trust(), fed.t0, "520100.fagai")
    report = city.update("520100.fagai", verified, fed.t0)
    assert (report.accepted, report.out_of_scope) == (("520100.fagai",), ("520102.gongan",))


def test_the_parent_speaks_only_for_names_outside_this_nodes_subtree(fed: Federation) -> None:
    clock = Clock(fed.t0)
    city = fed.city_with_county(clock)
    # The province echoes 520102.gongan back with another address: ignored.
    shadow = entry(fed.D)._replace(address="https://elsewhere.example")
    data = sign_snapshot(fed.P.identity, [entry(fed.P), entry(fed.J), shadow], [], fed.t0, DAY)
    report = city.update("520000", verify_snapshot(data, fed.trust(), fed.t0, "520000"), fed.t0)
    assert report.accepted == ("520000", "520200.jiaotong")
    assert report.out_of_scope == ("520102.gongan",)
    assert city.address("520102.gongan", fed.t0) == url(fed.D)
    assert city.address("520200.jiaotong", fed.t0) == url(fed.J)


def test_no_neighbour_overrides_this_nodes_own_entry(fed: Federation) -> None:
    clock = Clock(fed.t0)
    county = fed.directory(fed.K, clock, "520100", "520102.gongan")
    hijack = entry(fed.K)._replace(address="https://hijack.example")
    for source, issuer in (("520100", fed.C), ("520102.gongan", fed.D)):
        data = sign_snapshot(issuer.identity, [entry(issuer), hijack], [], fed.t0, DAY)
        report = county.update(source, verify_snapshot(data, fed.trust(), fed.t0, source), fed.t0)
        assert "520102" in report.out_of_scope
    assert county.address("520102", fed.t0) == url(fed.K)
    own = [e for e in county.snapshot_entries(fed.t0) if e.name == "520102"]
    assert [e.address for e in own] == [url(fed.K)]


def test_the_wanted_filter_skips_what_scope_would_ignore(fed: Federation) -> None:
    city = fed.directory(fed.C, Clock(fed.t0), "520000", "520102")
    data = fed.sign(fed.K, fed.D, fed.M)
    verified = verify_snapshot(
        data, fed.trust(), fed.t0, "520102", wanted=city.accepts_from("520102")
    )
    assert verified.skipped == ("520103.minzheng",)
    assert [e.name for e in verified.entries] == ["520102", "520102.gongan"]


def test_update_refuses_a_snapshot_older_than_the_one_held(fed: Federation) -> None:
    city = fed.directory(fed.C, Clock(fed.t0), None, "520102")
    old = verify_snapshot(fed.sign(fed.K, now=fed.t0), fed.trust(), fed.t0 + 1, "520102")
    new = verify_snapshot(fed.sign(fed.K, now=fed.t0 + 1), fed.trust(), fed.t0 + 1, "520102")
    city.update("520102", new, fed.t0 + 1)
    with pytest.raises(ReplayError, match="older than the one held"):
        city.update("520102", old, fed.t0 + 1)
    with pytest.raises(UsageError, match="not a neighbour"):
        city.update("520103", new, fed.t0 + 1)


# --- expiry -------------------------------------------------------------------------------


def test_expiry_propagates_through_two_re_signing_hops(fed: Federation) -> None:
    t0 = fed.t0
    dept, county, city, province, _ = fed.branch(Clock(t0))
    # The department signs for an hour; every hub re-signs for a day.
    pull(fed, county, dept, t0, lifetime=HOUR)
    pull(fed, city, county, t0 + 10 * MINUTE)
    pull(fed, province, city, t0 + 20 * MINUTE)
    # The city hub re-signs later, and briefly: re-signing never lengthens an entry,
    # and a shorter snapshot shortens every entry it carries, on the wire as well.
    verified = pull(fed, province, city, t0 + 50 * MINUTE, lifetime=2 * HOUR)
    wire = {e.name: e.valid_until_ms for e in decode_snapshot(verified.data).entries}
    until = {e.name: e.valid_until_ms for e in verified.entries}
    assert wire == until
    assert until["520102.gongan"] == int((t0 + HOUR) * 1000)
    assert until["520102"] == int((t0 + 50 * MINUTE + 2 * HOUR) * 1000)
    assert until["520100"] == int((t0 + 50 * MINUTE + 2 * HOUR) * 1000)
    # The county hub's own entry, as the city held it before: its own day.
    assert {e.name: e.valid_until_ms for e in city.snapshot_entries(t0 + HOUR)}["520102"] == (
        int((t0 + 10 * MINUTE + DAY) * 1000)
    )
    province.recipient_at("520102.gongan", t0 + HOUR - 0.001)
    with pytest.raises(DirectoryExpiredError) as raised:
        province.recipient_at("520102.gongan", t0 + HOUR)
    assert raised.value.source == "520100"
    assert "from child 520100" in str(raised.value)
    # Still reachable one hop up, and no longer re-served by anyone.
    assert province.recipient_at("520102", t0 + HOUR).name == NodeName.parse("520102")
    assert "520102.gongan" not in {e.name for e in city.snapshot_entries(t0 + HOUR)}


def test_an_entry_never_outlives_the_snapshot_that_carries_it(fed: Federation) -> None:
    """Even when a signer writes a later valid_until than its own expiry (SPEC §14.8)."""
    snapshot = decode_snapshot(fed.sign(fed.K, fed.D, lifetime=HOUR))
    rows = [[e.name, list(e.chain), e.address, e.valid_until_ms + 10**9] for e in snapshot.entries]
    body = pack([*snapshot[:4], rows, []])
    signature = fed.K.identity.signing_private_key.sign(DIRECTORY_LABEL + body)
    verified = verify_snapshot(pack([1, body, signature]), fed.trust(), fed.t0, "520102")
    assert {e.valid_until_ms for e in verified.entries} == {snapshot.expires_ms}


def test_lookups_fail_closed_once_the_data_has_expired(fed: Federation) -> None:
    clock = Clock(fed.t0)
    city = fed.directory(fed.C, clock, None, "520102")
    data = fed.sign(fed.K, fed.D, lifetime=2 * HOUR)
    city.update("520102", verify_snapshot(data, fed.trust(), fed.t0, "520102"), fed.t0)
    key_id = fed.D.identity.peer.signing_key_id
    clock.now = fed.t0 + 2 * HOUR - 1
    assert city.recipient("520102.gongan").encryption_key_id == (
        fed.D.identity.peer.encryption_key_id
    )
    assert city.signer("520102.gongan", key_id).signing_key_id == key_id
    clock.now = fed.t0 + 3 * HOUR
    expected = (
        r"directory data for 520102\.gongan expired at 2026-01-02T02:00:00Z \(3600 s ago\); "
        r"it came from child 520102; refusing to encrypt to it"
    )
    with pytest.raises(DirectoryExpiredError, match=expected):
        city.recipient("520102.gongan")
    with pytest.raises(DirectoryExpiredError, match="refusing to verify its signatures"):
        city.signer("520102.gongan", key_id)
    with pytest.raises(DirectoryExpiredError, match="refusing to connect to it"):
        city.address("520102.gongan", clock.now)
    assert city.names(clock.now) == ["520100"]
    # Names it never knew stay unknown, as in StaticDirectory.
    with pytest.raises(UsageError, match="not in the directory"):
        city.recipient("520103.minzheng")
    with pytest.raises(UnknownSignerError):
        city.signer("520103.minzheng", key_id)


def test_a_lookup_fails_closed_when_the_certificate_ends_before_the_entry(
    fed: Federation,
) -> None:
    short = fed.pki.node("520102.jiaoyu", fed.county, lifetime=timedelta(days=1, hours=2))
    clock = Clock(fed.t0)
    city = fed.directory(fed.C, clock, None, "520102")
    data = fed.sign(fed.K, short)
    city.update("520102", verify_snapshot(data, fed.trust(), fed.t0, "520102"), fed.t0)
    clock.now = fed.t0 + 2 * HOUR  # notAfter is inclusive
    assert city.recipient("520102.jiaoyu")
    clock.now = fed.t0 + 3 * HOUR
    with pytest.raises(CertificateExpiredError, match=r"certificate of 520102\.jiaoyu"):
        city.recipient("520102.jiaoyu")
    # Once the entry's own expiry has passed too, the earlier end (the certificate) still decides.
    clock.now = fed.t0 + 2 * DAY
    with pytest.raises(CertificateExpiredError, match="expired at 2026-01-02T02:00:00Z"):
        city.recipient("520102.jiaoyu")


# --- revocation ---------------------------------------------------------------------------


def test_a_newer_crl_from_any_source_removes_entries_from_every_source(fed: Federation) -> None:
    clock = Clock(fed.t0)
    city = fed.city_with_county(clock)
    assert city.recipient("520102.gongan")
    fed.pki.revoke(fed.D.certificate, fed.county)
    fresh = fed.pki.crl(fed.county, number=2, this_update=fed.pki.epoch + timedelta(hours=1))
    # The province relays the county hub too (out of the city's hands here): its chain
    # carries the county CA's certificate, which the CRL must verify under.
    data = fed.sign(fed.P, fed.K, crls=[fresh])
    city.update("520000", verify_snapshot(data, fed.trust(), fed.t0, "520000"), fed.t0)
    with pytest.raises(UsageError, match="not in the directory"):
        city.recipient("520102.gongan")
    assert "520102.gongan" not in {e.name for e in city.snapshot_entries(fed.t0)}
    (county_crl,) = [c for c in city.crls() if c.issuer == fed.county.certificate.subject]
    assert county_crl.public_bytes(Encoding.DER) == fresh.public_bytes(Encoding.DER)


def test_local_crls_are_verified_before_they_revoke_or_travel(fed: Federation) -> None:
    city = fed.city_with_county(Clock(fed.t0), parent=None)
    fed.pki.revoke(fed.D.certificate, fed.county)
    forged = fed.pki.crl(fed.county, number=5, signing_key=synthetic_signing_key("forger"))
    (dropped,) = city.add_crls([forged], fed.trust(), fed.t0)
    assert dropped.code == "bad-certificate-signature"
    assert city.recipient("520102.gongan")
    assert city.add_crls([fed.pki.crl(fed.county, number=2)], fed.trust(), fed.t0) == ()
    with pytest.raises(UsageError):
        city.recipient("520102.gongan")
    assert any(c.issuer == fed.county.certificate.subject for c in city.crls())


def test_a_stale_crl_is_neither_kept_nor_served_but_what_it_lists_is_revoked(
    fed: Federation,
) -> None:
    # The chain verifier's rule (SPEC §3.7 step 6): a genuine CRL that is not current
    # vouches for nothing, yet revocation is final.
    clock = Clock(fed.t0)
    city = fed.city_with_county(clock)
    fed.pki.revoke(fed.D.certificate, fed.county)
    stale = fed.pki.crl(fed.county, number=2, this_update=fed.pki.epoch - timedelta(days=7))
    data = fed.sign(fed.P, fed.K, fed.D, crls=[stale])
    verified = verify_snapshot(data, fed.trust(), fed.t0, "520000")
    assert verified.crls == ()
    assert [c.public_bytes(Encoding.DER) for c in verified.revoking] == [
        stale.public_bytes(Encoding.DER)
    ]
    assert [(d.field, d.code) for d in verified.dropped if d.name == ""] == [
        ("directory.body.crls[0]", "revocation-unavailable")
    ]
    assert "stale" in verified.dropped[0].reason
    assert ("520102.gongan", "revoked") in {(d.name, d.code) for d in verified.dropped}
    city.update("520000", verified, fed.t0)
    with pytest.raises(UsageError, match="not in the directory"):
        city.recipient("520102.gongan")
    assert stale.public_bytes(Encoding.DER) not in {
        c.public_bytes(Encoding.DER) for c in city.crls()
    }


def test_a_crl_not_yet_valid_does_not_displace_the_current_one(fed: Federation) -> None:
    city = fed.city_with_county(Clock(fed.t0), parent=None)
    current = fed.pki.crl(fed.county, number=2)
    early = fed.pki.crl(fed.county, number=3, this_update=fed.pki.epoch + timedelta(days=2))
    assert city.add_crls([current], fed.trust(), fed.t0) == ()
    (dropped,) = city.add_crls([early], fed.trust(), fed.t0)
    assert (dropped.field, dropped.code) == ("crls[0]", "revocation-unavailable")
    assert "not valid before" in dropped.reason
    (county_crl,) = [c for c in city.crls() if c.issuer == fed.county.certificate.subject]
    assert county_crl.public_bytes(Encoding.DER) == current.public_bytes(Encoding.DER)
    # An older CRL than the one held is not taken either.
    assert city.add_crls([fed.pki.crl(fed.county, number=1)], fed.trust(), fed.t0) == ()
    (county_crl,) = [c for c in city.crls() if c.issuer == fed.county.certificate.subject]
    assert county_crl.public_bytes(Encoding.DER) == current.public_bytes(Encoding.DER)


# --- key rotation ---------------------------------------------------------------------------


def rotated(fed: Federation) -> IssuedNode:
    """520102.gongan re-keyed: a new certificate, new keys, issued half a day later."""
    signing, encryption = synthetic_signing_key("rotated"), synthetic_encryption_key("rotated")
    start = fed.pki.epoch + timedelta(hours=12)
    cert = build_node_certificate(
        "520102.gongan",
        signing.public_key(),
        encryption.public_key(),
        fed.county.certificate,
        fed.county.key,
        1000,
        start,
        start + timedelta(days=365),
    )
    identity = LocalIdentity.from_keys(
        "520102.gongan", signing, encryption, certificate=cert, chain=fed.D.chain
    )
    return IssuedNode(identity, cert, fed.D.chain, fed.root.certificate)


def test_after_a_key_rotation_the_old_signing_key_still_verifies(fed: Federation) -> None:
    new = rotated(fed)
    clock = Clock(fed.t0)
    dept = NodeDirectory(
        new.identity,
        clock=clock,
        address=url(new),
        neighbours=[Neighbour(NodeName.parse("520102"), Relation.PARENT)],
        previous=[(fed.D.certificate, *fed.D.chain)],
    )
    county = fed.directory(fed.K, clock, "520100", "520102.gongan")
    pull(fed, county, dept, fed.t0)
    old_id, new_id = fed.D.identity.peer.signing_key_id, new.identity.peer.signing_key_id
    assert old_id != new_id
    assert county.recipient("520102.gongan").encryption_key_id == (
        new.identity.peer.encryption_key_id
    )
    assert county.signer("520102.gongan", old_id).signing_key_id == old_id
    assert county.signer("520102.gongan", new_id).signing_key_id == new_id


def test_a_superseded_certificate_is_kept_until_its_entry_expires(fed: Federation) -> None:
    new = rotated(fed)
    clock = Clock(fed.t0)
    county = fed.directory(fed.K, clock, None, "520102.gongan")
    before = sign_snapshot(fed.D.identity, [entry(fed.D)], [], fed.t0, HOUR)
    county.update(
        "520102.gongan", verify_snapshot(before, fed.trust(), fed.t0, "520102.gongan"), fed.t0
    )
    after = sign_snapshot(new.identity, [entry(new)], [], fed.t0 + MINUTE, HOUR)
    report = county.update(
        "520102.gongan",
        verify_snapshot(after, fed.trust(), fed.t0 + MINUTE, "520102.gongan"),
        fed.t0 + MINUTE,
    )
    assert report.retained == ("520102.gongan",)
    old_id = fed.D.identity.peer.signing_key_id
    clock.now = fed.t0 + HOUR - 1
    assert county.signer("520102.gongan", old_id).signing_key_id == old_id
    assert county.recipient("520102.gongan").signing_key_id == new.identity.peer.signing_key_id
    clock.now = fed.t0 + HOUR
    with pytest.raises(DirectoryExpiredError):
        county.signer("520102.gongan", old_id)
    assert county.signer("520102.gongan", new.identity.peer.signing_key_id)


# --- persistence ----------------------------------------------------------------------------


def test_the_cache_survives_a_restart_and_is_re_verified(fed: Federation) -> None:
    clock = Clock(fed.t0)
    dept, county, city, province, tongji = fed.branch(clock)
    pull(fed, province, tongji, fed.t0)
    pull(fed, county, dept, fed.t0)
    pull(fed, city, county, fed.t0)
    pull(fed, city, province, fed.t0)
    stored = city.encode()
    assert [source for source, _ in decode_cache(stored)] == ["520000", "520102"]

    restarted = fed.directory(fed.C, clock, "520000", "520102")
    outcomes = restarted.restore(stored, fed.trust(), fed.t0 + HOUR)
    assert [(o.source, o.error) for o in outcomes] == [("520000", None), ("520102", None)]
    assert restarted.names(fed.t0 + HOUR) == city.names(fed.t0 + HOUR)
    assert restarted.names(fed.t0 + HOUR) == [
        "520000",
        "520000.tongji",
        "520100",
        "520102",
        "520102.gongan",
    ]
    assert restarted.address("520000.tongji", fed.t0 + HOUR) == url(fed.T)
    assert restarted.encode() == stored

    # A child that is no longer configured is not restored.
    smaller = fed.directory(fed.C, clock, "520000")
    outcomes = smaller.restore(stored, fed.trust(), fed.t0 + HOUR)
    assert [o.error is None for o in outcomes] == [True, False]
    assert "no longer a neighbour" in str(outcomes[1].error)


def test_an_expired_cache_fails_closed_with_a_clear_error_after_restart(fed: Federation) -> None:
    clock = Clock(fed.t0)
    city = fed.directory(fed.C, clock, None, "520102")
    data = fed.sign(fed.K, fed.D, lifetime=HOUR)
    city.update("520102", verify_snapshot(data, fed.trust(), fed.t0, "520102"), fed.t0)
    later = fed.t0 + 2 * HOUR
    clock.now = later
    restarted = fed.directory(fed.C, clock, None, "520102")
    (outcome,) = restarted.restore(city.encode(), fed.trust(), later)
    assert isinstance(outcome.error, DirectoryExpiredError)
    with pytest.raises(DirectoryExpiredError, match=r"520102\.gongan expired at") as raised:
        restarted.recipient("520102.gongan")
    assert raised.value.source == "520102"
    # Nothing from the expired cache is trusted for keys; it is kept for the next restart.
    assert restarted.names(later) == ["520100"]
    assert restarted.encode() == city.encode()


def test_a_damaged_cache_is_refused_as_data(fed: Federation) -> None:
    city = fed.directory(fed.C, Clock(fed.t0), None, "520102")
    for damaged in (b"", b"\x92\x02\x90", pack([1, [["520102", b"x"], ["520100", b"y"]]])):
        with pytest.raises(RejectedError):
            city.restore(damaged, fed.trust(), fed.t0)
    (outcome,) = city.restore(pack([1, [["520102", b"junk"]]]), fed.trust(), fed.t0)
    assert isinstance(outcome.error, MalformedError)


# --- the Directory protocol, end to end --------------------------------------------------------


def test_any_node_seals_to_any_other_without_exchanging_keys(fed: Federation) -> None:
    """A county department and a province department, five hops apart."""
    t0 = fed.t0
    dept, county, city, province, tongji = fed.branch(Clock(t0))
    # Up the tree, then down.
    for into, source in [
        (county, dept),
        (city, county),
        (province, city),
        (province, tongji),
        (city, province),
        (county, city),
        (dept, county),
        (tongji, province),
    ]:
        pull(fed, into, source, t0)
    sealed = Sealer(fed.D.identity, dept, random=SeededRandom("directory")).seal(
        Outgoing(["520000.tongji"], b"hello across the province"), t0
    )
    opened = Opener(fed.T.identity, tongji).open(sealed.data, t0)
    assert opened.plaintext == b"hello across the province"
    assert dept.address("520000.tongji", t0) == url(fed.T)


def test_construction_refuses_a_misconfiguration(fed: Federation) -> None:
    clock = Clock(fed.t0)
    with pytest.raises(UsageError, match="address"):
        NodeDirectory(fed.C.identity, clock=clock, address="ftp://c")
    with pytest.raises(UsageError, match="no certificate"):
        NodeDirectory(
            LocalIdentity.from_keys(
                "520100", fed.C.identity.signing_private_key, fed.C.identity.encryption_private_key
            ),
            clock=clock,
        )
    with pytest.raises(UsageError, match=r"certifies 520102\.gongan"):
        NodeDirectory(fed.C.identity, clock=clock, previous=[(fed.D.certificate, *fed.D.chain)])
