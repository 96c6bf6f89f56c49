"""``exchnode pki csr | sign | install | expiry``: a node's keys never leave it (issue 15, item 6).

The request is checked before anything is issued (signature, name, key types),
the CA applies its profile and its division whatever the request asks, and the
node installs only a certificate for the keys it holds.  Each refusal is one
line naming what was wrong.
"""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from exchnode.errors import CertificateSignatureError, MalformedCertificateError
from exchnode.pki import (
    ExpiryState,
    build_node_request,
    certificate_expiry,
    crl_expiry,
    load_certificates_pem,
    load_crls_pem,
    load_request_pem,
    read_node_request,
)
from exchnode.pki._issue import encryption_key_extension
from exchnode.pki._profile import ca_subject, node_subject
from tests.unit.cli.test_pki import ca_chain, node_verify_args, ok, run

NAME = "520102.gongan"


@pytest.fixture
def ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Root 520000 → 520100 → county CA 520102 in ``tmp_path/pki``."""
    pki = str(tmp_path / "pki")
    ca_chain(capsys, pki, "520000", "520100", "520102")
    return tmp_path / "pki"


def sign_args(request: Path, ca: Path, out: Path, issuer: str = "520102") -> list[str]:
    return ["pki", "sign", str(request), "--issuer", issuer, "--dir", str(ca), "--out", str(out)]


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status, out, err = run(capsys, *argv)
    assert status == 1, out
    assert err.count("\n") == 1, err
    assert err.startswith("exchnode: error: ")
    return err


def test_csr_sign_install_keeps_the_keys_on_the_node(
    ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node, signed = tmp_path / "node", tmp_path / "signed"
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse\n")
    passphrase.chmod(0o600)
    out = ok(capsys, "pki", "csr", NAME, "--out", str(node), "--passphrase-file", str(passphrase))
    fingerprint = out.split("SHA-256")[1].split()[0]
    for key in ("signing.key", "encryption.key"):
        assert stat.S_IMODE((node / key).stat().st_mode) == 0o600
        assert b"ENCRYPTED PRIVATE KEY" in (node / key).read_bytes()
    before = {key: (node / key).read_bytes() for key in ("signing.key", "encryption.key")}

    signed_out = ok(capsys, *sign_args(node / "request.csr", ca, signed))
    assert fingerprint in signed_out  # the CA operator compares it out of band
    assert not (signed / "signing.key").exists()
    assert not (signed / "encryption.key").exists()
    assert sorted(p.name for p in (signed / "crls").iterdir()) == [
        "520000.crl.pem",
        "520100.crl.pem",
        "520102.crl.pem",
    ]
    chain = load_certificates_pem((signed / "chain.pem").read_bytes())
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=520102.gongan,OU=node,O=exchnode",
        "CN=520102,OU=ca,O=exchnode",
        "CN=520100,OU=ca,O=exchnode",
    ]

    installed = ok(
        capsys,
        "pki",
        "install",
        str(signed),
        "--keys",
        str(node),
        "--passphrase-file",
        str(passphrase),
    )
    assert f"node {NAME}" in installed
    assert {key: (node / key).read_bytes() for key in before} == before  # keys untouched
    assert (node / "chain.pem").read_bytes() == (signed / "chain.pem").read_bytes()
    # The installed files pass 'pki verify' as a peer checks them.
    verified = ok(capsys, *node_verify_args(node))
    assert f"node {NAME}" in verified
    listed = ok(capsys, "pki", "list", "--dir", str(ca), "--issuer", "520102")
    assert NAME in listed  # the CA knows what it issued, for revocation


def test_install_refuses_a_certificate_for_other_keys(
    ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "pki", "csr", NAME, "--out", str(tmp_path / "a"))
    ok(capsys, "pki", "csr", NAME, "--out", str(tmp_path / "b"))
    ok(capsys, *sign_args(tmp_path / "a" / "request.csr", ca, tmp_path / "signed"))
    err = one_line_error(
        capsys, "pki", "install", str(tmp_path / "signed"), "--keys", str(tmp_path / "b")
    )
    assert "does not match the certificate of 520102.gongan" in err
    assert not (tmp_path / "b" / "chain.pem").exists()


def test_a_name_outside_the_cas_division_is_refused(
    ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "pki", "csr", "520103.gongan", "--out", str(tmp_path / "n"))
    err = one_line_error(capsys, *sign_args(tmp_path / "n" / "request.csr", ca, tmp_path / "s"))
    assert "name outside the CA's division" in err
    assert "[name-constraint]" in err
    assert not (tmp_path / "s").exists()


def test_a_forged_request_signature_is_refused(
    ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = _request()
    der = bytearray(request.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the Ed25519 signature
    path = tmp_path / "forged.csr"
    forged = x509.load_der_x509_csr(bytes(der))
    path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    err = one_line_error(capsys, *sign_args(path, ca, tmp_path / "s"))
    assert "request signature invalid" in err
    assert "[bad-certificate-signature]" in err


def test_a_request_for_the_wrong_key_type_is_refused(
    ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(node_subject(NAME))
        .add_extension(
            encryption_key_extension(X25519PrivateKey.generate().public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "ec.csr"
    path.write_bytes(request.public_bytes(serialization.Encoding.PEM))
    err = one_line_error(capsys, *sign_args(path, ca, tmp_path / "s"))
    assert "wrong key type: the request's key is EC (secp256r1), not Ed25519" in err


def test_garbage_is_one_line(ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "garbage.csr"
    path.write_bytes(
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    )
    err = one_line_error(capsys, *sign_args(path, ca, tmp_path / "s"))
    assert "not a PEM certificate signing request" in err


def test_the_profile_is_applied_not_the_requests_extensions() -> None:
    signing = Ed25519PrivateKey.generate()
    encryption = X25519PrivateKey.generate().public_key()
    greedy = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(node_subject(NAME))
        .add_extension(encryption_key_extension(encryption), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), False)
        .sign(signing, None)
    )
    wanted = read_node_request(greedy)
    assert str(wanted.name) == NAME
    assert wanted.signing_key == signing.public_key()
    assert wanted.encryption_key == encryption
    assert set(wanted.ignored) == {"2.5.29.19", "2.5.29.17"}


def test_the_profiles_issuance_ignores_a_requested_ca_bit(
    ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signing = Ed25519PrivateKey.generate()
    greedy = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(node_subject(NAME))
        .add_extension(
            encryption_key_extension(X25519PrivateKey.generate().public_key()), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signing, None)
    )
    path = tmp_path / "greedy.csr"
    path.write_bytes(greedy.public_bytes(serialization.Encoding.PEM))
    out = ok(capsys, *sign_args(path, ca, tmp_path / "s"))
    assert "requested extensions not copied: 2.5.29.19" in out
    (cert,) = load_certificates_pem((tmp_path / "s" / "node.crt").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda k, e: _builder(ca_subject("520102"), e).sign(k, None), "a request is for a node"),
        (lambda k, e: _builder(node_subject(NAME), None).sign(k, None), "encryption-key extension"),
        (
            lambda k, e: (
                _builder(node_subject(NAME), None)
                .add_extension(encryption_key_extension_of_an_ed25519_key(), critical=False)
                .sign(k, None)
            ),
            "wrong key type",
        ),
    ],
)
def test_malformed_requests_are_refused(make: object, problem: str) -> None:
    key = Ed25519PrivateKey.generate()
    request = make(key, X25519PrivateKey.generate().public_key())  # type: ignore[operator]
    with pytest.raises(MalformedCertificateError, match=problem):
        read_node_request(request)


def test_a_request_round_trips_through_pem() -> None:
    request = _request()
    again = load_request_pem(request.public_bytes(serialization.Encoding.PEM))
    assert str(read_node_request(again).name) == NAME
    der = bytearray(request.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x80
    with pytest.raises(CertificateSignatureError):
        read_node_request(x509.load_der_x509_csr(bytes(der)))


# --- expiry --------------------------------------------------------------------------------


def test_expiry_states_at_their_edges(ca: Path) -> None:
    (root,) = load_certificates_pem((ca / "520000" / "ca.crt").read_bytes())
    (crl,) = load_crls_pem((ca / "520000" / "crl.pem").read_bytes())
    end = root.not_valid_after_utc
    day = timedelta(days=1)
    assert certificate_expiry(root, end - 31 * day, 30 * day).state is ExpiryState.CURRENT
    assert certificate_expiry(root, end - 29 * day, 30 * day).state is ExpiryState.EXPIRING
    assert certificate_expiry(root, end + day, 30 * day).state is ExpiryState.EXPIRED
    assert certificate_expiry(root, root.not_valid_before_utc - day, day).state.value == "early"
    next_update = crl.next_update_utc
    assert next_update is not None
    hour = timedelta(hours=1)
    assert crl_expiry(crl, next_update - 25 * hour, 24 * hour).state is ExpiryState.CURRENT
    assert crl_expiry(crl, next_update - 23 * hour, 24 * hour).state is ExpiryState.EXPIRING
    assert crl_expiry(crl, next_update + hour, 24 * hour).state is ExpiryState.EXPIRED


def test_expiry_verb_warns_and_fails_on_what_ran_out(
    ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ok(capsys, "pki", "expiry", str(ca / "520102"), "--warn-days", "400")
    assert "CN=520102,OU=ca" in out
    assert "current" in out
    assert "expiring: certificate CN=520102,OU=ca,O=exchnode" not in out  # 1825 days left
    out = ok(capsys, "pki", "expiry", str(ca / "520102"), "--warn-days", "2000")
    assert "expiring: certificate CN=520102,OU=ca,O=exchnode" in out
    # A CRL past its nextUpdate: a node refuses the chains under it, so exit 1.
    key = Ed25519PrivateKey.generate()
    (issuer,) = load_certificates_pem((ca / "520000" / "ca.crt").read_bytes())
    now = datetime.now(UTC)
    stale = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - timedelta(days=9))
        .next_update(now - timedelta(days=2))
        .sign(key, None)
    )
    path = tmp_path / "stale.crl.pem"
    path.write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    status, out, err = run(capsys, "pki", "expiry", str(path))
    assert status == 1
    assert "expired: CRL of CN=520000" in out
    assert err.startswith("exchnode: error: 1 of 1 not valid now: CRL of CN=520000")


# --- helpers ------------------------------------------------------------------------------


def _request() -> x509.CertificateSigningRequest:
    return build_node_request(
        NAME, Ed25519PrivateKey.generate(), X25519PrivateKey.generate().public_key()
    )


def _builder(subject: x509.Name, encryption: object) -> x509.CertificateSigningRequestBuilder:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if encryption is not None:
        builder = builder.add_extension(
            encryption_key_extension(encryption),  # type: ignore[arg-type]
            critical=False,
        )
    return builder


def encryption_key_extension_of_an_ed25519_key() -> x509.UnrecognizedExtension:
    from exchnode.pki._profile import ENCRYPTION_KEY_OID

    spki = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return x509.UnrecognizedExtension(ENCRYPTION_KEY_OID, spki)
