"""SPEC §3.7: every verification step, each failure by its exact error class.

Good chains come from :class:`exchnode.testing.SyntheticPKI` (the real,
checked builders).  Bad certificates -- the ones a careless or malicious CA
would mint -- come from the unchecked ``_make_*`` functions of ``pki_issue``
or straight from ``x509.CertificateBuilder``, so the verifier is shown to
reject them on its own.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from exchnode.core import Level, NodeName
from exchnode.errors import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    CertificateRevokedError,
    CertificateSignatureError,
    MalformedCertificateError,
    NameConstraintError,
    NotACAError,
    RevocationUnavailableError,
    UntrustedError,
    UsageError,
)
from exchnode.pki import (
    TrustStore,
    load_certificates_pem,
    load_crls_pem,
    read_node_certificate,
    verify_ca_certificate,
    verify_chain,
    verify_node_certificate,
)
from exchnode.pki._issue import _make_ca_certificate, _make_node_certificate
from exchnode.pki._profile import ENCRYPTION_KEY_OID, ca_subject, node_subject
from exchnode.pki._verify import load_crl_pem
from exchnode.testing import (
    IssuedCA,
    SyntheticPKI,
    synthetic_encryption_key,
    synthetic_signing_key,
)

DAY = timedelta(days=1)


@pytest.fixture
def now(pki: SyntheticPKI) -> datetime:
    return pki.epoch + DAY


class National:
    """The full five-level chain: 000000 → 520000 → 520100 → 520102 → 520102.gongan."""

    def __init__(self, pki: SyntheticPKI) -> None:
        self.pki = pki
        self.root = pki.root("000000")
        self.province = pki.ca("520000", self.root)
        self.city = pki.ca("520100", self.province)
        self.county = pki.ca("520102", self.city)
        self.node = pki.node("520102.gongan", self.county)

    def trust(self, now: datetime | None = None) -> TrustStore:
        return self.pki.trust_store([self.root], now=now)


@pytest.fixture
def national(pki: SyntheticPKI) -> National:
    return National(pki)


def _bad_node(
    name: str,
    issuer: IssuedCA,
    pki: SyntheticPKI,
    *,
    key: Ed25519PrivateKey | None = None,
    encryption: bool = True,
    not_before: datetime | None = None,
    lifetime: timedelta = timedelta(days=365),
    serial: int = 900,
) -> x509.Certificate:
    """A node certificate in the profile's shape, minted WITHOUT the issuance checks."""
    start = pki.epoch if not_before is None else not_before
    return _make_node_certificate(
        node_subject(name),
        synthetic_signing_key(f"bad:{name}").public_key(),
        synthetic_encryption_key(f"bad:{name}").public_key() if encryption else None,
        issuer.certificate,
        issuer.key if key is None else key,
        serial,
        start,
        start + lifetime,
    )


def _bad_ca(
    division: str,
    issuer: IssuedCA,
    pki: SyntheticPKI,
    *,
    not_before: datetime | None = None,
    lifetime: timedelta = timedelta(days=1000),
    serial: int = 800,
) -> IssuedCA:
    """A sub-CA minted WITHOUT the issuance checks."""
    key = synthetic_signing_key(f"bad-ca:{division}")
    start = pki.epoch if not_before is None else not_before
    cert = _make_ca_certificate(
        ca_subject(division),
        key.public_key(),
        issuer.certificate,
        issuer.key,
        serial,
        start,
        start + lifetime,
    )
    pki.cas[f"bad:{division}"] = ca = IssuedCA(
        division, key, cert, (issuer.certificate, *issuer.issuers)
    )
    return ca


# --- chains that verify -----------------------------------------------------------------------


def test_national_five_level_chain_verifies(national: National, now: datetime) -> None:
    peer = verify_node_certificate(
        national.node.certificate, national.node.chain, national.trust(), now
    )
    assert peer.name == NodeName("520102", "gongan")
    assert peer.certificate is national.node.certificate
    assert peer.signing_key == national.node.identity.signing_private_key.public_key()
    assert peer.encryption_key == national.node.identity.encryption_private_key.public_key()
    path = verify_chain(national.node.certificate, national.node.chain, national.trust(), now)
    assert [cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for cert in path] == [
        "520102.gongan",
        "520102",
        "520100",
        "520000",
        "000000",
    ]


def test_province_rooted_deployment_verifies(pki: SyntheticPKI, now: datetime) -> None:
    root = pki.root("520000")
    city = pki.ca("520100", root)
    node = pki.node("520100.fagai", city)
    peer = verify_node_certificate(node.certificate, node.chain, pki.trust_store([root]), now)
    assert str(peer.name) == "520100.fagai"
    assert node.chain == (city.certificate,)


@pytest.mark.parametrize(
    ("hub", "ca_division"), [("520100", "520100"), ("520000", "520000"), ("000000", "000000")]
)
def test_hub_node_certificates_verify(
    national: National, now: datetime, hub: str, ca_division: str
) -> None:
    ca = national.pki.cas[ca_division]
    node = national.pki.node(hub, ca)
    peer = verify_node_certificate(node.certificate, node.chain, national.trust(), now)
    assert peer.name.is_hub
    assert str(peer.name) == hub


def test_intermediates_in_any_order_with_extras(national: National, now: datetime) -> None:
    other = national.pki.ca("530000", national.root)
    shuffled = [national.root.certificate, other.certificate, *reversed(national.node.chain)]
    peer = verify_node_certificate(national.node.certificate, shuffled, national.trust(), now)
    assert str(peer.name) == "520102.gongan"


def test_key_identifiers_pick_the_right_issuer_after_rollover(
    national: National, now: datetime
) -> None:
    # A re-keyed city CA shares the DN of the old one; AKI/SKI tell them apart.
    rekeyed = national.pki.ca("520100", national.province, label="ca:520100:2027")
    county = national.pki.ca("520102", rekeyed, label="ca:520102:2027")
    node = national.pki.node("520102.gongan", county)
    intermediates = [national.city.certificate, *node.chain]
    peer = verify_node_certificate(node.certificate, intermediates, national.trust(), now)
    assert peer.certificate is node.certificate


def test_validity_bounds_are_inclusive(national: National) -> None:
    leaf = national.node.certificate
    trust = national.trust(leaf.not_valid_after_utc - DAY)
    verify_node_certificate(leaf, national.node.chain, trust, leaf.not_valid_after_utc)
    with pytest.raises(CertificateExpiredError):
        verify_node_certificate(
            leaf, national.node.chain, trust, leaf.not_valid_after_utc + timedelta(seconds=1)
        )


def test_verify_ca_certificate(national: National, now: datetime) -> None:
    verified = verify_ca_certificate(
        national.county.certificate, national.county.chain, national.trust(), now
    )
    assert verified.division == "520102"
    assert verified.level is Level.COUNTY
    assert verified.scope == "520102"
    assert len(verified.path) == 4
    root = verify_ca_certificate(national.root.certificate, [], national.trust(), now)
    assert root.path == (national.root.certificate,)


def test_verify_ca_certificate_refuses_a_node(national: National, now: datetime) -> None:
    with pytest.raises(NotACAError) as caught:
        verify_ca_certificate(national.node.certificate, national.node.chain, national.trust(), now)
    assert caught.value.code == "not-a-ca"


def test_read_node_certificate_reads_without_trust(national: National) -> None:
    contents = read_node_certificate(national.node.certificate)
    assert str(contents.name) == "520102.gongan"
    assert contents.encryption_key == national.node.identity.peer.encryption_key


def test_naive_now_is_a_usage_error(national: National) -> None:
    with pytest.raises(UsageError):
        verify_node_certificate(
            national.node.certificate, national.node.chain, national.trust(), datetime(2026, 2, 1)
        )


# --- step 1: path building --------------------------------------------------------------------


def test_unknown_root_is_untrusted(national: National, now: datetime) -> None:
    stranger = SyntheticPKI().root("530000")
    trust = national.pki.trust_store([stranger])
    with pytest.raises(UntrustedError) as caught:
        verify_node_certificate(national.node.certificate, national.node.chain, trust, now)
    assert caught.value.code == "untrusted"
    assert "CN=000000" in str(caught.value)


def test_impostor_root_with_the_same_name_is_untrusted(national: National, now: datetime) -> None:
    impostor = SyntheticPKI()
    fake_root = impostor.root("000000", label="evil root")  # same DN, another key
    fake_province = impostor.ca("520000", fake_root, label="evil province")
    node = impostor.node("520000.gongan", fake_province)
    with pytest.raises(UntrustedError):
        verify_node_certificate(node.certificate, node.chain, national.trust(), now)
    # Handing over the impostor's root as an "intermediate" does not help it.
    with pytest.raises(UntrustedError) as caught:
        verify_node_certificate(
            node.certificate, [*node.chain, fake_root.certificate], national.trust(), now
        )
    assert "CN=000000" in str(caught.value)


def test_missing_intermediate_is_untrusted(national: National, now: datetime) -> None:
    with pytest.raises(UntrustedError) as caught:
        verify_node_certificate(
            national.node.certificate, national.node.chain[:1], national.trust(), now
        )
    assert "CN=520100" in str(caught.value)


def test_chain_longer_than_five_is_untrusted(national: National, now: datetime) -> None:
    extra = _bad_ca("520102", national.county, national.pki)  # a sixth certificate
    leaf = _bad_node("520102.gongan", extra, national.pki)
    with pytest.raises(UntrustedError) as caught:
        verify_node_certificate(
            leaf, [extra.certificate, *national.node.chain], national.trust(), now
        )
    assert "within 5 certificates" in str(caught.value)


def _hand_ca(
    subject: str, issuer: str, key: Ed25519PrivateKey, epoch: datetime
) -> x509.Certificate:
    signer = synthetic_signing_key(f"loop:{subject}")
    return (
        x509.CertificateBuilder()
        .subject_name(ca_subject(subject))
        .issuer_name(ca_subject(issuer))
        .public_key(signer.public_key())
        .serial_number(7)
        .not_valid_before(epoch)
        .not_valid_after(epoch + 10 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, None)
    )


def test_issuer_loop_is_untrusted(national: National, now: datetime) -> None:
    epoch = national.pki.epoch
    a = _hand_ca("530000", "540000", synthetic_signing_key("loop:540000"), epoch)
    b = _hand_ca("540000", "530000", synthetic_signing_key("loop:530000"), epoch)
    leaf = _make_node_certificate(
        node_subject("530000.x"),
        synthetic_signing_key("leaf").public_key(),
        synthetic_encryption_key("leaf").public_key(),
        a,
        synthetic_signing_key("loop:530000"),
        9,
        epoch,
        epoch + 5 * DAY,
    )
    with pytest.raises(UntrustedError) as caught:
        verify_node_certificate(leaf, [a, b], national.trust(), now)
    assert "loops" in str(caught.value)


# --- step 2: validity -------------------------------------------------------------------------


def test_expired_leaf(national: National) -> None:
    later = national.node.certificate.not_valid_after_utc + DAY
    with pytest.raises(CertificateExpiredError) as caught:
        verify_node_certificate(
            national.node.certificate, national.node.chain, national.trust(later), later
        )
    assert caught.value.code == "certificate-expired"
    assert "520102.gongan" in str(caught.value)


def test_not_yet_valid_leaf(pki: SyntheticPKI, national: National, now: datetime) -> None:
    node = pki.node("520102.later", national.county, not_before=now + 10 * DAY)
    with pytest.raises(CertificateNotYetValidError) as caught:
        verify_node_certificate(node.certificate, node.chain, national.trust(), now)
    assert caught.value.code == "certificate-not-yet-valid"


def test_expired_intermediate(pki: SyntheticPKI, national: National) -> None:
    short = _bad_ca("520103", national.city, pki, lifetime=10 * DAY)
    leaf = _bad_node("520103.gongan", short, pki, lifetime=100 * DAY)  # outlives its CA
    later = pki.epoch + 20 * DAY
    with pytest.raises(CertificateExpiredError) as caught:
        verify_node_certificate(
            leaf, [short.certificate, *national.county.chain], national.trust(later), later
        )
    assert "CA certificate 520103" in str(caught.value)


def test_not_yet_valid_intermediate(pki: SyntheticPKI, national: National, now: datetime) -> None:
    future = _bad_ca("520103", national.city, pki, not_before=now + 5 * DAY)
    leaf = _bad_node("520103.gongan", future, pki)  # valid now, its CA is not
    with pytest.raises(CertificateNotYetValidError) as caught:
        verify_node_certificate(
            leaf, [future.certificate, *national.county.chain], national.trust(), now
        )
    assert "CA certificate 520103" in str(caught.value)


# --- step 3: issuers are CAs ------------------------------------------------------------------


def test_node_certificate_used_as_an_issuer(pki: SyntheticPKI, now: datetime) -> None:
    root = pki.root("520000")
    city = pki.ca("520100", root)
    node = pki.node("520100.fagai", city)
    as_issuer = IssuedCA("520100", node.identity.signing_private_key, node.certificate)
    leaf = _bad_node("520100.minion", as_issuer, pki)
    with pytest.raises(NotACAError) as caught:
        verify_node_certificate(leaf, [node.certificate, *node.chain], pki.trust_store([root]), now)
    assert caught.value.code == "not-a-ca"
    assert "node certificate 520100.fagai" in str(caught.value)


def test_root_that_is_not_self_issued(national: National, now: datetime) -> None:
    trust = national.pki.trust_store([national.city])  # an intermediate posing as a root
    with pytest.raises(NotACAError) as caught:
        verify_node_certificate(national.node.certificate, national.node.chain, trust, now)
    assert "not self-issued" in str(caught.value)


# --- step 4: signatures -----------------------------------------------------------------------


def test_wrongly_signed_certificate(national: National, now: datetime) -> None:
    # Right issuer DN and AKI, signed by a key that is not the county CA's.
    leaf = _bad_node(
        "520102.forged", national.county, national.pki, key=synthetic_signing_key("attacker")
    )
    with pytest.raises(CertificateSignatureError) as caught:
        verify_node_certificate(leaf, national.node.chain, national.trust(), now)
    assert caught.value.code == "bad-certificate-signature"


def test_root_with_a_bad_self_signature(pki: SyntheticPKI, now: datetime) -> None:
    key = synthetic_signing_key("ca:520000")
    forged_root = _make_ca_certificate(
        ca_subject("520000"),
        key.public_key(),
        None,
        synthetic_signing_key("someone else"),
        1,
        pki.epoch,
        pki.epoch + 100 * DAY,
    )
    root = IssuedCA("520000", key, forged_root)
    node = pki.node("520000.x", root, lifetime=30 * DAY)
    trust = TrustStore([forged_root], [pki.crl(root)])
    with pytest.raises(CertificateSignatureError):
        verify_node_certificate(node.certificate, node.chain, trust, now)


# --- step 5: name constraints -----------------------------------------------------------------


def test_county_ca_certifying_another_countys_department(national: National, now: datetime) -> None:
    leaf = _bad_node("520103.gongan", national.county, national.pki)
    with pytest.raises(NameConstraintError) as caught:
        verify_node_certificate(leaf, national.node.chain, national.trust(), now)
    assert caught.value.code == "name-constraint"
    assert "520102" in str(caught.value)
    assert "520103.gongan" in str(caught.value)


@pytest.mark.parametrize(
    "division",
    [
        "520200",  # another city
        "520100",  # the same level (and division)
        "520201",  # a county of another city
        "530000",  # another province
    ],
)
def test_city_ca_certifying_a_ca_outside_its_scope_or_level(
    national: National, now: datetime, division: str
) -> None:
    bad = _bad_ca(division, national.city, national.pki)
    leaf = _bad_node(f"{division}.x", bad, national.pki)
    with pytest.raises(NameConstraintError) as caught:
        verify_node_certificate(
            leaf, [bad.certificate, *national.city.chain], national.trust(), now
        )
    assert "520100" in str(caught.value)
    assert division in str(caught.value)


def test_node_above_its_ca(national: National, now: datetime) -> None:
    leaf = _bad_node("520000.gongan", national.city, national.pki)
    with pytest.raises(NameConstraintError):
        verify_node_certificate(leaf, national.city.chain, national.trust(), now)


# --- step 6: revocation -----------------------------------------------------------------------


def test_revoked_leaf(national: National, now: datetime) -> None:
    national.pki.revoke(national.node.certificate, national.county, when=national.pki.epoch)
    with pytest.raises(CertificateRevokedError) as caught:
        verify_node_certificate(
            national.node.certificate, national.node.chain, national.trust(), now
        )
    assert caught.value.code == "revoked"
    assert "key-compromise" in str(caught.value)
    assert "2026-01-01T00:00:00Z" in str(caught.value)


def test_revoked_intermediate(national: National, now: datetime) -> None:
    national.pki.revoke(
        national.city.certificate, national.province, reason=x509.ReasonFlags.superseded
    )
    with pytest.raises(CertificateRevokedError) as caught:
        verify_node_certificate(
            national.node.certificate, national.node.chain, national.trust(), now
        )
    assert "CA certificate 520100" in str(caught.value)
    assert "superseded" in str(caught.value)


def test_revoked_even_without_required_revocation(national: National, now: datetime) -> None:
    national.pki.revoke(national.node.certificate, national.county)
    with pytest.raises(CertificateRevokedError):
        verify_node_certificate(
            national.node.certificate,
            national.node.chain,
            national.trust(),
            now,
            require_revocation=False,
        )


def test_missing_crl(national: National, now: datetime) -> None:
    cas = [national.root, national.province, national.city]  # not the county's
    trust = national.pki.trust_store([national.root], crls_for=cas)
    with pytest.raises(RevocationUnavailableError) as caught:
        verify_node_certificate(national.node.certificate, national.node.chain, trust, now)
    assert caught.value.code == "revocation-unavailable"
    assert "no CRL from CA 520102" in str(caught.value)
    # ...which is tolerated only when the caller explicitly opts out.
    verify_node_certificate(
        national.node.certificate, national.node.chain, trust, now, require_revocation=False
    )


def test_stale_crl(national: National) -> None:
    trust = national.trust(national.pki.epoch)
    later = national.pki.epoch + 8 * DAY  # CRLs were good for 7 days
    with pytest.raises(RevocationUnavailableError) as caught:
        verify_node_certificate(national.node.certificate, national.node.chain, trust, later)
    assert "stale" in str(caught.value)


def test_crl_from_the_future(national: National, now: datetime) -> None:
    trust = national.trust(now + DAY)
    with pytest.raises(RevocationUnavailableError) as caught:
        verify_node_certificate(national.node.certificate, national.node.chain, trust, now)
    assert "not valid before" in str(caught.value)


def test_crl_signed_by_the_wrong_key(national: National, now: datetime) -> None:
    good = [national.pki.crl(ca) for ca in (national.root, national.province, national.city)]
    forged = national.pki.crl(national.county, signing_key=synthetic_signing_key("attacker"))
    trust = TrustStore([national.root.certificate], [*good, forged])
    with pytest.raises(RevocationUnavailableError) as caught:
        verify_node_certificate(national.node.certificate, national.node.chain, trust, now)
    assert "not signed by the key of CA 520102" in str(caught.value)


def test_forged_crl_cannot_revoke(national: National, now: datetime) -> None:
    genuine = national.pki.trust_store([national.root]).crls
    national.pki.revoke(national.node.certificate, national.county)
    forged = national.pki.crl(national.county, signing_key=synthetic_signing_key("attacker"))
    trust = TrustStore([national.root.certificate], [*genuine, forged])
    peer = verify_node_certificate(national.node.certificate, national.node.chain, trust, now)
    assert str(peer.name) == "520102.gongan"


def test_stale_crl_listing_the_serial_still_revokes(national: National) -> None:
    # Revocation is final (no certificateHold): a stale but genuine CRL still counts.
    national.pki.revoke(national.node.certificate, national.county)
    later = national.pki.epoch + 30 * DAY
    stale_county = national.pki.crl(national.county, this_update=national.pki.epoch)
    fresh_others = [
        national.pki.crl(ca, this_update=later)
        for ca in (national.root, national.province, national.city)
    ]
    trust = TrustStore([national.root.certificate], [stale_county, *fresh_others])
    with pytest.raises(CertificateRevokedError):
        verify_node_certificate(
            national.node.certificate, national.node.chain, trust, later, require_revocation=False
        )


def test_old_and_fresh_crl_together(national: National) -> None:
    later = national.pki.epoch + 30 * DAY
    stale = national.trust(national.pki.epoch).crls
    fresh = national.trust(later)
    trust = fresh.with_crls([*stale, *fresh.crls])
    verify_node_certificate(national.node.certificate, national.node.chain, trust, later)


# --- step 7 and step 0: the leaf's profile and hostile input ----------------------------------


def test_missing_encryption_key_extension(national: National, now: datetime) -> None:
    leaf = _bad_node("520102.nokey", national.county, national.pki, encryption=False)
    with pytest.raises(MalformedCertificateError) as caught:
        verify_node_certificate(leaf, national.node.chain, national.trust(), now)
    assert caught.value.code == "malformed-certificate"
    assert ENCRYPTION_KEY_OID.dotted_string in str(caught.value)


def _node_with_extension(national: National, value: bytes) -> x509.Certificate:
    county = national.county
    key = synthetic_signing_key("odd")
    now = national.pki.epoch
    return (
        x509.CertificateBuilder()
        .subject_name(node_subject("520102.odd"))
        .issuer_name(county.certificate.subject)
        .public_key(key.public_key())
        .serial_number(77)
        .not_valid_before(now)
        .not_valid_after(now + 10 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.UnrecognizedExtension(ENCRYPTION_KEY_OID, value), critical=False)
        .sign(county.key, None)
    )


@pytest.mark.parametrize(
    "value",
    [
        b"\x00\x01garbage",
        synthetic_signing_key("wrong type")
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    ],
    ids=["garbage", "ed25519-key"],
)
def test_encryption_key_extension_that_is_not_x25519(
    national: National, now: datetime, value: bytes
) -> None:
    leaf = _node_with_extension(national, value)
    with pytest.raises(MalformedCertificateError):
        verify_node_certificate(leaf, national.node.chain, national.trust(), now)


def test_valid_hand_built_node_passes(national: National, now: datetime) -> None:
    # The control for the two tests above: same construction, a real X25519 key.
    spki = (
        X25519PrivateKey.from_private_bytes(bytes(32))
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    leaf = _node_with_extension(national, spki)
    peer = verify_node_certificate(leaf, national.node.chain, national.trust(), now)
    assert str(peer.name) == "520102.odd"


def test_ca_certificate_as_a_node_leaf(national: National, now: datetime) -> None:
    with pytest.raises(MalformedCertificateError) as caught:
        verify_node_certificate(
            national.county.certificate, national.county.chain, national.trust(), now
        )
    assert "not a node certificate" in str(caught.value)


def test_distinguished_name_outside_the_profile(national: National, now: datetime) -> None:
    key = synthetic_signing_key("cn-only")
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "520102.gongan")]))
        .issuer_name(national.county.certificate.subject)
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(national.pki.epoch)
        .not_valid_after(national.pki.epoch + DAY * 30)
        .sign(national.county.key, None)
    )
    with pytest.raises(MalformedCertificateError):
        verify_node_certificate(leaf, national.node.chain, national.trust(), now)


def test_unknown_critical_extension(national: National, now: datetime) -> None:
    leaf = (
        x509.CertificateBuilder()
        .subject_name(node_subject("520102.crit"))
        .issuer_name(national.county.certificate.subject)
        .public_key(synthetic_signing_key("crit").public_key())
        .serial_number(6)
        .not_valid_before(national.pki.epoch)
        .not_valid_after(national.pki.epoch + DAY * 30)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            critical=True,
        )
        .sign(national.county.key, None)
    )
    with pytest.raises(MalformedCertificateError) as caught:
        verify_node_certificate(leaf, national.node.chain, national.trust(), now)
    assert "critical" in str(caught.value)


# --- loaders ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    ],
)
def test_certificate_loader_rejects_garbage(data: bytes) -> None:
    with pytest.raises(MalformedCertificateError):
        load_certificates_pem(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage", b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"],
)
def test_crl_loaders_reject_garbage(data: bytes) -> None:
    with pytest.raises(MalformedCertificateError):
        load_crl_pem(data)
    with pytest.raises(MalformedCertificateError):
        load_crls_pem(data)


def test_loaders_round_trip(national: National) -> None:
    pem = b"".join(
        cert.public_bytes(serialization.Encoding.PEM)
        for cert in (national.node.certificate, *national.node.chain)
    )
    assert load_certificates_pem(pem) == [national.node.certificate, *national.node.chain]
    crls = [national.pki.crl(ca) for ca in (national.root, national.county)]
    bundle = b"".join(crl.public_bytes(serialization.Encoding.PEM) for crl in crls)
    assert load_crls_pem(bundle) == crls
    assert load_crl_pem(crls[0].public_bytes(serialization.Encoding.PEM)) == crls[0]
    with pytest.raises(MalformedCertificateError):
        load_crl_pem(bundle)  # two CRLs where one is expected: refused, not half-read


def test_trust_store_indexes_crls_by_issuer(national: National) -> None:
    trust = national.trust()
    assert isinstance(trust.roots, tuple)
    county_crls = trust.crls_issued_by(national.county.certificate.subject)
    assert len(county_crls) == 1
    assert trust.crls_issued_by(ca_subject("999900")) == ()


def _armour_certificate(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"


def _negative_serial(der: bytes) -> bytes:
    # After "version v3" comes the serial INTEGER; setting its top bit makes it negative.
    version_then_serial = b"\xa0\x03\x02\x01\x02\x02\x01"
    position = der.index(version_then_serial) + len(version_then_serial)
    return der[:position] + bytes([der[position] | 0x80]) + der[position + 1 :]


def _long_country_name(der: bytes) -> bytes:
    # The subject's O=exchnode re-labelled countryName, which must be 2 characters.
    organization = b"\x55\x04\x0a\x0c\x08exchnode"
    position = der.rindex(organization)
    return der[:position] + b"\x55\x04\x06" + der[position + 3 :]


@pytest.mark.parametrize("action", ["error", "ignore"])
@pytest.mark.parametrize("tamper", [_negative_serial, _long_country_name])
def test_what_cryptography_only_warns_about_is_malformed(
    national: National, now: datetime, tamper: Callable[[bytes], bytes], action: str
) -> None:
    # cryptography accepts these with a warning; we reject them, whatever the warning filter.
    der = national.node.certificate.public_bytes(serialization.Encoding.DER)
    data = _armour_certificate(tamper(der))
    with warnings.catch_warnings():
        warnings.simplefilter(action)  # type: ignore[call-overload]
        with pytest.raises(MalformedCertificateError):
            _load_and_verify(data, national, now)


def _load_and_verify(data: bytes, national: National, now: datetime) -> None:
    leaf = load_certificates_pem(data)[0]  # a negative serial stops here ...
    verify_node_certificate(leaf, national.node.chain, national.trust(), now)  # ... the name here
