"""SPEC §3.2-§3.6: the builders emit exactly the profile and refuse what §3.5 forbids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, SignatureAlgorithmOID

from exchnode.errors import InvalidNameError, UsageError
from exchnode.pki import (
    Revocation,
    build_crl,
    build_intermediate_ca,
    build_node_certificate,
    build_root_ca,
    parse_subject,
)
from exchnode.pki._profile import ENCRYPTION_KEY_OID, ca_subject, node_subject
from exchnode.testing import (
    IssuedCA,
    SyntheticPKI,
    synthetic_encryption_key,
    synthetic_signing_key,
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)


@pytest.fixture
def city(pki: SyntheticPKI) -> IssuedCA:
    return pki.ca("520100", pki.ca("520000", pki.root("000000")))


def _node(name: str, issuer: IssuedCA, serial: int = 1000) -> x509.Certificate:
    return build_node_certificate(
        name,
        synthetic_signing_key(name).public_key(),
        synthetic_encryption_key(name).public_key(),
        issuer.certificate,
        issuer.key,
        serial,
        EPOCH,
        EPOCH + YEAR,
    )


def _sub_ca(division: str, issuer: IssuedCA) -> x509.Certificate:
    return build_intermediate_ca(
        division,
        synthetic_signing_key(division).public_key(),
        issuer.certificate,
        issuer.key,
        2000,
        EPOCH,
        EPOCH + YEAR,
    )


def _extensions(
    cert: x509.Certificate,
) -> dict[x509.ObjectIdentifier, x509.Extension[x509.ExtensionType]]:
    return {extension.oid: extension for extension in cert.extensions}


# --- the profile, exactly --------------------------------------------------------------------


def test_builders_are_deterministic() -> None:
    first, second = SyntheticPKI(), SyntheticPKI()
    a = first.node("520100.fagai", first.ca("520100", first.root("520000")))
    b = second.node("520100.fagai", second.ca("520100", second.root("520000")))
    der = serialization.Encoding.DER
    assert a.certificate.public_bytes(der) == b.certificate.public_bytes(der)
    crl_a = first.crl(first.cas["520100"])
    crl_b = second.crl(second.cas["520100"])
    assert crl_a.public_bytes(der) == crl_b.public_bytes(der)


def test_root_profile(pki: SyntheticPKI) -> None:
    root = pki.root("000000").certificate
    assert root.subject == root.issuer == ca_subject("000000")
    assert [attribute.oid for attribute in root.subject] == [
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COMMON_NAME,
    ]
    assert root.subject.rfc4514_string() == "CN=000000,OU=ca,O=exchnode"
    assert root.signature_algorithm_oid == SignatureAlgorithmOID.ED25519
    assert root.version is x509.Version.v3
    extensions = _extensions(root)
    assert set(extensions) == {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    }
    constraints = extensions[ExtensionOID.BASIC_CONSTRAINTS]
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=True, path_length=None)
    usage = extensions[ExtensionOID.KEY_USAGE]
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    assert not extensions[ExtensionOID.SUBJECT_KEY_IDENTIFIER].critical
    root.verify_directly_issued_by(root)


def test_intermediate_profile(pki: SyntheticPKI, city: IssuedCA) -> None:
    cert = city.certificate
    extensions = _extensions(cert)
    assert set(extensions) == {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
    province = pki.cas["520000"].certificate
    aki = extensions[ExtensionOID.AUTHORITY_KEY_IDENTIFIER].value
    ski = province.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == ski.digest
    assert cert.issuer == province.subject
    cert.verify_directly_issued_by(province)


def test_node_profile(city: IssuedCA) -> None:
    cert = _node("520102.gongan", city)
    assert cert.subject.rfc4514_string() == "CN=520102.gongan,OU=node,O=exchnode"
    assert cert.serial_number == 1000
    assert cert.not_valid_before_utc == EPOCH
    assert cert.not_valid_after_utc == EPOCH + YEAR
    extensions = _extensions(cert)
    assert set(extensions) == {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ENCRYPTION_KEY_OID,
    }
    assert extensions[ExtensionOID.BASIC_CONSTRAINTS].critical
    assert extensions[ExtensionOID.BASIC_CONSTRAINTS].value == x509.BasicConstraints(
        ca=False, path_length=None
    )
    usage = extensions[ExtensionOID.KEY_USAGE]
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign
    assert not usage.value.key_agreement
    eku = extensions[ExtensionOID.EXTENDED_KEY_USAGE]
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    encryption = extensions[ENCRYPTION_KEY_OID]
    assert not encryption.critical
    assert isinstance(encryption.value, x509.UnrecognizedExtension)
    expected = synthetic_encryption_key("520102.gongan").public_key()
    loaded = serialization.load_der_public_key(encryption.value.value)
    assert isinstance(loaded, X25519PublicKey)
    assert loaded == expected
    public = cert.public_key()
    assert isinstance(public, Ed25519PublicKey)
    assert public == synthetic_signing_key("520102.gongan").public_key()


def test_encryption_key_oid_is_the_uuid_arc() -> None:
    assert ENCRYPTION_KEY_OID.dotted_string == "2.25.94333907179797405902471640745814667606.1"


def test_sub_second_times_are_dropped(city: IssuedCA) -> None:
    cert = build_node_certificate(
        "520100.x",
        synthetic_signing_key("x").public_key(),
        synthetic_encryption_key("x").public_key(),
        city.certificate,
        city.key,
        5,
        EPOCH + timedelta(microseconds=999),
        EPOCH + YEAR,
    )
    assert cert.not_valid_before_utc == EPOCH


# --- issuance rules (SPEC §3.5) -------------------------------------------------------------


def test_county_ca_refuses_another_countys_department(pki: SyntheticPKI, city: IssuedCA) -> None:
    county = pki.ca("520102", city)
    with pytest.raises(UsageError) as caught:
        _node("520103.gongan", county)
    assert "may not certify node 520103.gongan" in str(caught.value)


@pytest.mark.parametrize(
    ("division", "why"),
    [
        ("520200", "outside its scope"),  # another city
        ("520100", "strictly lower level"),  # the same level
        ("520201", "outside its scope"),  # a county of another city
        ("520000", "outside its scope"),  # upwards
    ],
)
def test_city_ca_refuses_foreign_or_same_level_ca(city: IssuedCA, division: str, why: str) -> None:
    with pytest.raises(UsageError) as caught:
        _sub_ca(division, city)
    assert why in str(caught.value)


@pytest.mark.parametrize("division", ["520100", "520102"])
def test_province_ca_certifies_city_and_county_cas(pki: SyntheticPKI, division: str) -> None:
    province = pki.ca("520000", pki.root("000000"))
    assert _sub_ca(division, province).subject == ca_subject(division)


@pytest.mark.parametrize("division", ["520000", "520100", "520102"])
def test_national_ca_certifies_any_lower_ca(pki: SyntheticPKI, division: str) -> None:
    assert _sub_ca(division, pki.root("000000")).subject == ca_subject(division)


def test_province_ca_refuses_another_province(pki: SyntheticPKI) -> None:
    with pytest.raises(UsageError):
        _sub_ca("530000", pki.root("520000"))


def test_hub_names_are_nodes_within_scope(city: IssuedCA) -> None:
    assert _node("520100", city).subject == node_subject("520100")
    assert _node("520102", city).subject == node_subject("520102")
    with pytest.raises(UsageError):
        _node("520000", city)


@pytest.mark.parametrize("serial", [0, -1, 2**159, True])
def test_bad_serials_are_refused(city: IssuedCA, serial: int) -> None:
    with pytest.raises(UsageError):
        _node("520100.x", city, serial=serial)


def test_largest_serial_is_accepted(city: IssuedCA) -> None:
    assert _node("520100.x", city, serial=2**159 - 1).serial_number == 2**159 - 1


def test_naive_times_are_refused(city: IssuedCA) -> None:
    with pytest.raises(UsageError):
        build_node_certificate(
            "520100.x",
            synthetic_signing_key("x").public_key(),
            synthetic_encryption_key("x").public_key(),
            city.certificate,
            city.key,
            5,
            datetime(2026, 1, 1),
            datetime(2027, 1, 1),
        )


def test_empty_validity_is_refused() -> None:
    with pytest.raises(UsageError):
        build_root_ca("520000", synthetic_signing_key("r"), 1, EPOCH, EPOCH)


def test_certificate_may_not_outlive_its_issuer(pki: SyntheticPKI) -> None:
    root = pki.root("520000", lifetime=timedelta(days=30))
    with pytest.raises(UsageError) as caught:
        _sub_ca("520100", root)
    assert "not within the issuer's validity" in str(caught.value)


def test_wrong_issuer_key_is_refused(city: IssuedCA) -> None:
    impostor = IssuedCA("520100", synthetic_signing_key("not the city"), city.certificate)
    with pytest.raises(UsageError) as caught:
        _node("520100.x", impostor)
    assert "does not belong" in str(caught.value)


def test_node_certificate_cannot_issue(pki: SyntheticPKI, city: IssuedCA) -> None:
    node = pki.node("520100.fagai", city)
    as_issuer = IssuedCA("520100", node.identity.signing_private_key, node.certificate)
    with pytest.raises(UsageError):
        _node("520100.x", as_issuer)


@pytest.mark.parametrize("bad", ["52010", "520100.", "520100.UPPER", "001100"])
def test_bad_names_are_usage_errors(city: IssuedCA, bad: str) -> None:
    with pytest.raises(UsageError):
        _node(bad, city)


def test_bad_division_for_root() -> None:
    with pytest.raises(UsageError):
        build_root_ca("52", synthetic_signing_key("r"), 1, EPOCH, EPOCH + YEAR)


# --- CRLs (SPEC §3.6) -------------------------------------------------------------------------


def test_crl_profile(city: IssuedCA) -> None:
    revoked = [
        Revocation(30, EPOCH, x509.ReasonFlags.key_compromise),
        (20, EPOCH + timedelta(hours=1), x509.ReasonFlags.unspecified),
    ]
    crl = build_crl(city.certificate, city.key, revoked, 7, EPOCH, EPOCH + timedelta(days=7))
    assert crl.issuer == city.certificate.subject
    assert crl.is_signature_valid(city.key.public_key())
    assert crl.last_update_utc == EPOCH
    assert crl.next_update_utc == EPOCH + timedelta(days=7)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = city.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert [entry.serial_number for entry in crl] == [20, 30]  # sorted
    unspecified, compromised = list(crl)
    with pytest.raises(x509.ExtensionNotFound):
        unspecified.extensions.get_extension_for_class(x509.CRLReason)
    reason = compromised.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise


def test_crl_rejects_duplicate_serials(city: IssuedCA) -> None:
    entry = Revocation(30, EPOCH, x509.ReasonFlags.superseded)
    with pytest.raises(UsageError):
        build_crl(city.certificate, city.key, [entry, entry], 1, EPOCH, EPOCH + YEAR)


def test_crl_rejects_negative_number(city: IssuedCA) -> None:
    with pytest.raises(UsageError):
        build_crl(city.certificate, city.key, [], -1, EPOCH, EPOCH + YEAR)


# --- distinguished names ----------------------------------------------------------------------


def test_parse_subject_round_trips() -> None:
    assert parse_subject(ca_subject("520100"))[1] == "520100"
    assert parse_subject(node_subject("520100.fagai"))[1] == "520100.fagai"


@pytest.mark.parametrize(
    "name",
    [
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "520100")]),
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ca"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "exchnode"),
                x509.NameAttribute(NameOID.COMMON_NAME, "520100"),
            ]
        ),
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "other"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ca"),
                x509.NameAttribute(NameOID.COMMON_NAME, "520100"),
            ]
        ),
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "exchnode"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "hub"),
                x509.NameAttribute(NameOID.COMMON_NAME, "520100"),
            ]
        ),
    ],
    ids=["cn-only", "wrong-order", "wrong-o", "wrong-ou"],
)
def test_parse_subject_rejects_other_shapes(name: x509.Name) -> None:
    with pytest.raises(ValueError, match="distinguished name"):
        parse_subject(name)


def test_parse_subject_rejects_a_department_in_a_ca_name() -> None:
    with pytest.raises(InvalidNameError):
        parse_subject(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "exchnode"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ca"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "520100.gongan"),
                ]
            )
        )
