"""The one CRL check (SPEC §3.7 step 6, §14.6): what makes a CRL genuine and current,
which of a CA's CRLs is the newest, and that the chain verifier and ``check_crls``
(the directory's path, and so the node's TLS bundle) agree on every CRL.

    root CA 520000
     └─ CA 520100 ── CA 520102 ── node 520102.gongan
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.errors import (
    CertificateRevokedError,
    RevocationUnavailableError,
    UsageError,
)
from exchnode.pki import (
    CrlSet,
    TrustStore,
    VerifiedCA,
    check_crls,
    crl_problem,
    verify_ca_certificate,
    verify_node_certificate,
)
from exchnode.testing import IssuedCA, SyntheticPKI, synthetic_signing_key

DAY = timedelta(days=1)


class World:
    def __init__(self) -> None:
        self.pki = pki = SyntheticPKI()
        self.root = pki.root("520000")
        self.city = pki.ca("520100", self.root)
        self.county = pki.ca("520102", self.city)
        self.node = pki.node("520102.gongan", self.county)
        self.now = pki.epoch + DAY

    def trust(self, *crls: x509.CertificateRevocationList) -> TrustStore:
        """The root, fresh CRLs of the root and the city, and ``crls``."""
        upper = [self.pki.crl(ca) for ca in (self.root, self.city)]
        return TrustStore([self.root.certificate], [*upper, *crls])

    def county_ca(self) -> VerifiedCA:
        return verify_ca_certificate(
            self.county.certificate, self.county.chain, self.trust(), self.now
        )

    def check(self, *crls: x509.CertificateRevocationList) -> tuple[str, ...]:
        """check_crls on each CRL: "current", "superseded" (by a newer current one), or the
        code it was refused with ("revocation-unavailable": genuine, but stale or early)."""
        checked = check_crls(crls, self.county.chain, self.trust(), self.now)
        refused = {r.position: r.code for r in checked.refused}
        current = _ders(checked.current)
        return tuple(
            "current" if _der(crl) in current else refused.get(i, "superseded")
            for i, crl in enumerate(crls)
        )


def _der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(Encoding.DER)


def _ders(crls: Iterable[x509.CertificateRevocationList]) -> set[bytes]:
    return {_der(crl) for crl in crls}


@pytest.fixture
def world() -> World:
    return World()


def _crl_with_critical_extension(
    ca: IssuedCA, at: datetime, *revoked: x509.Certificate
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(at)
        .next_update(at + 7 * DAY)
        .add_extension(x509.CRLNumber(7), critical=False)
        .add_extension(
            x509.IssuingDistributionPoint(None, None, True, False, None, False, False),
            critical=True,
        )
    )
    for cert in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
        builder = builder.add_revoked_certificate(entry.revocation_date(at).build())
    return builder.sign(ca.key, None)


# --- the rule for one CRL ---------------------------------------------------------------------


def test_a_genuine_current_crl_has_no_problem(world: World) -> None:
    assert crl_problem(world.pki.crl(world.county), world.county_ca(), world.now) is None


def test_a_crl_signed_by_the_wrong_key_is_not_genuine(world: World) -> None:
    forged = world.pki.crl(world.county, signing_key=synthetic_signing_key("forger"))
    problem = crl_problem(forged, world.county_ca(), world.now)
    assert problem is not None
    assert (problem.code, problem.genuine) == ("bad-certificate-signature", False)
    assert "not signed by the key of CA 520102" in problem.reason


def test_a_crl_of_another_ca_is_not_genuine_under_this_one(world: World) -> None:
    problem = crl_problem(world.pki.crl(world.city), world.county_ca(), world.now)
    assert problem is not None
    assert (problem.code, problem.genuine) == ("untrusted", False)


def test_an_expired_crl_is_genuine_but_not_current(world: World) -> None:
    crl = world.pki.crl(world.county)  # thisUpdate at the epoch, for 7 days
    stale = crl_problem(crl, world.county_ca(), world.pki.epoch + 7 * DAY)
    assert stale is not None
    assert (stale.code, stale.genuine) == ("revocation-unavailable", True)
    assert "stale" in stale.reason
    # nextUpdate is exclusive, thisUpdate inclusive.
    assert (
        crl_problem(crl, world.county_ca(), world.pki.epoch + 7 * DAY - timedelta(seconds=1))
        is None
    )
    assert crl_problem(crl, world.county_ca(), world.pki.epoch) is None


def test_a_crl_not_yet_valid_is_genuine_but_not_current(world: World) -> None:
    early = world.pki.crl(world.county, this_update=world.now + timedelta(minutes=1))
    problem = crl_problem(early, world.county_ca(), world.now)
    assert problem is not None
    assert (problem.code, problem.genuine) == ("revocation-unavailable", True)
    assert "not valid before" in problem.reason


def test_an_unrecognised_critical_extension_makes_a_crl_unusable(world: World) -> None:
    crl = _crl_with_critical_extension(world.county, world.pki.epoch)
    problem = crl_problem(crl, world.county_ca(), world.now)
    assert problem is not None
    assert (problem.code, problem.genuine) == ("bad-certificate-signature", False)
    assert "unrecognised critical extension" in problem.reason


def test_a_certificate_without_crl_sign_signs_no_genuine_crl(world: World) -> None:
    # Even were it handed in as a verified CA: a node certificate lacks cRLSign.
    key = world.node.identity.signing_private_key
    ca = VerifiedCA("520102", key.public_key(), world.node.certificate, ())
    as_issuer = IssuedCA("520102", key, world.node.certificate)
    problem = crl_problem(world.pki.crl(as_issuer, signing_key=key), ca, world.now)
    assert problem is not None
    assert (problem.code, problem.genuine) == ("bad-certificate-signature", False)
    assert "may not sign CRLs" in problem.reason


# --- check_crls: the CA found and verified, then the rule ------------------------------------


def test_check_crls_sorts_each_crl_by_the_rule(world: World) -> None:
    forged = world.pki.crl(world.county, number=9, signing_key=synthetic_signing_key("forger"))
    stale = world.pki.crl(world.county, number=3, this_update=world.now - 8 * DAY)
    early = world.pki.crl(world.county, number=4, this_update=world.now + DAY)
    good = world.pki.crl(world.county, number=2)
    assert world.check(forged, stale, early, good) == (
        "bad-certificate-signature",
        "revocation-unavailable",
        "revocation-unavailable",
        "current",
    )
    checked = check_crls([forged, stale, early, good], world.county.chain, world.trust(), world.now)
    # The stale and the early one are the county's own: what they list counts (the newest).
    assert _ders(checked.genuine) == {_der(early)}


def test_a_crl_from_an_unknown_ca_is_untrusted(world: World) -> None:
    stranger = world.pki.ca("520103", world.city)  # its certificate is not among the CAs given
    checked = check_crls([world.pki.crl(stranger)], world.county.chain, world.trust(), world.now)
    (refused,) = checked.refused
    assert (refused.position, refused.code) == (0, "untrusted")
    assert "no CA certificate" in refused.reason
    assert len(checked.current) == len(checked.genuine) == 0


def test_a_crl_whose_ca_does_not_verify_is_refused_with_the_cas_code(world: World) -> None:
    world.pki.revoke(world.county.certificate, world.city)
    trust = TrustStore(
        [world.root.certificate], [world.pki.crl(world.root), world.pki.crl(world.city)]
    )
    checked = check_crls([world.pki.crl(world.county)], world.county.chain, trust, world.now)
    (refused,) = checked.refused
    assert refused.code == "revoked"
    assert "its CA certificate does not verify" in refused.reason


def test_check_crls_wants_an_aware_now(world: World) -> None:
    with pytest.raises(UsageError, match="timezone-aware"):
        check_crls([], [], world.trust(), world.now.replace(tzinfo=None))


# --- the newest per CA --------------------------------------------------------------------------


def test_the_newest_crl_per_ca_wins(world: World) -> None:
    older = world.pki.crl(world.county, number=1)
    newer = world.pki.crl(world.county, number=2, this_update=world.pki.epoch + DAY / 2)
    city = world.pki.crl(world.city)
    # Whatever the order they come in.
    assert CrlSet([older, newer, city]).crls == CrlSet([city, newer, older]).crls
    assert _ders(CrlSet([older, newer, city])) == _ders([newer, city])
    # The number decides before thisUpdate; thisUpdate only between equal numbers.
    later_but_lower = world.pki.crl(world.county, number=1, this_update=world.pki.epoch + DAY)
    assert _ders(CrlSet([newer, later_but_lower])) == {_der(newer)}
    assert _ders(CrlSet([older, later_but_lower])) == {_der(later_but_lower)}


def test_an_older_crl_than_one_held_is_not_taken(world: World) -> None:
    held = CrlSet([world.pki.crl(world.county, number=5)])
    older = world.pki.crl(world.county, number=4, this_update=world.pki.epoch + DAY)
    assert _ders(held.with_crls([older])) == _ders(held)
    newer = world.pki.crl(world.county, number=6)
    assert _ders(held.with_crls([newer])) == {_der(newer)}


def test_check_crls_keeps_the_newest_and_a_forgery_cannot_displace_it(world: World) -> None:
    good = world.pki.crl(world.county, number=2)
    old = world.pki.crl(world.county, number=1)
    forged = world.pki.crl(world.county, number=99, signing_key=synthetic_signing_key("forger"))
    assert world.check(old, forged, good) == ("superseded", "bad-certificate-signature", "current")


def test_a_re_keyed_cas_crls_do_not_displace_each_other(world: World) -> None:
    rekeyed = world.pki.ca("520102", world.city, label="rekeyed")
    crls = [world.pki.crl(world.county, number=5), world.pki.crl(rekeyed, number=1)]
    assert len(CrlSet(crls)) == 2


def test_what_a_genuine_crl_lists_is_revoked_whatever_its_dates(world: World) -> None:
    world.pki.revoke(world.node.certificate, world.county)
    stale = world.pki.crl(world.county, number=2, this_update=world.now - 8 * DAY)
    checked = check_crls([stale], world.county.chain, world.trust(), world.now)
    assert len(checked.current) == 0
    assert (
        world.county.certificate.subject.public_bytes(),
        world.node.certificate.serial_number,
    ) in checked.genuine.revoked()


# --- the verifier and check_crls agree, CRL by CRL --------------------------------------------


def test_the_chain_verifier_counts_exactly_the_crls_check_crls_accepts(world: World) -> None:
    revoked = world.pki.node("520102.old", world.county).certificate
    world.pki.revoke(revoked, world.county)
    county = world.county
    variants = {
        "good": world.pki.crl(county, number=2),
        "forged": world.pki.crl(county, number=2, signing_key=synthetic_signing_key("forger")),
        "stale": world.pki.crl(county, number=2, this_update=world.now - 8 * DAY),
        "early": world.pki.crl(county, number=2, this_update=world.now + DAY),
        "critical": _crl_with_critical_extension(county, world.pki.epoch, revoked),
    }
    verdicts = {name: world.check(crl)[0] for name, crl in variants.items()}
    assert verdicts == {
        "good": "current",
        "forged": "bad-certificate-signature",
        "stale": "revocation-unavailable",
        "early": "revocation-unavailable",
        "critical": "bad-certificate-signature",
    }
    for name, crl in variants.items():
        trust = world.trust(crl)
        # Only the CRL check_crls accepts vouches for the node in the chain verifier...
        try:
            verify_node_certificate(world.node.certificate, world.node.chain, trust, world.now)
        except RevocationUnavailableError:
            counted = False
        else:
            counted = True
        assert counted == (verdicts[name] == "current"), name
        # ...and what a genuine one lists, current or not, is revoked there too.
        if verdicts[name] in {"current", "revocation-unavailable"}:
            with pytest.raises(CertificateRevokedError):
                verify_node_certificate(
                    revoked, world.node.chain, trust, world.now, require_revocation=False
                )
        else:
            verify_node_certificate(
                revoked, world.node.chain, trust, world.now, require_revocation=False
            )
