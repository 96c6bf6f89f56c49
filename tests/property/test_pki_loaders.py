"""Hostile bytes either load and verify, or raise a CertificateError -- nothing else.

The invariant of SPEC §3.7 step 0, in the manner of h11's fuzz harness: the
loaders and the verifier are fed arbitrary bytes, PEM-armoured arbitrary
bytes, and valid certificates and CRLs with bytes flipped.
"""

from __future__ import annotations

import base64
import contextlib
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchnode.errors import CertificateError
from exchnode.pki import TrustStore, load_certificates_pem, load_crls_pem, verify_node_certificate
from exchnode.pki._verify import load_crl_pem
from exchnode.testing import SyntheticPKI

_PKI = SyntheticPKI()
_ROOT = _PKI.root("520000")
_CITY = _PKI.ca("520100", _ROOT)
_NODE = _PKI.node("520100.fagai", _CITY)
_NOW = _PKI.epoch + timedelta(days=1)
_TRUST = _PKI.trust_store([_ROOT])
_LEAF_DER = _NODE.certificate.public_bytes(serialization.Encoding.DER)
_CRL_DER = _PKI.crl(_CITY).public_bytes(serialization.Encoding.DER)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _armour(label: bytes, der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN " + label + b"-----\n" + body + b"-----END " + label + b"-----\n"


def _flip(der: bytes, position: int, value: int) -> bytes:
    index = position % len(der)
    return der[:index] + bytes([der[index] ^ (value or 1)]) + der[index + 1 :]


def _load_and_verify_certificates(data: bytes) -> None:
    try:
        certificates = load_certificates_pem(data)
    except CertificateError:
        return
    for cert in certificates:
        with contextlib.suppress(CertificateError):
            verify_node_certificate(cert, [_CITY.certificate], _TRUST, _NOW)


def _load_and_use_crls(data: bytes) -> None:
    for loader in (load_crl_pem, load_crls_pem):
        try:
            loaded = loader(data)
        except CertificateError:
            continue
        crls = loaded if isinstance(loaded, list) else [loaded]
        try:
            trust = TrustStore(_TRUST.roots, [*crls, *_TRUST.crls])
            verify_node_certificate(_NODE.certificate, _NODE.chain, trust, _NOW)
        except CertificateError:
            pass


@SETTINGS
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    _load_and_verify_certificates(data)
    _load_and_use_crls(data)


@SETTINGS
@given(st.binary(max_size=1024))
def test_armoured_arbitrary_bytes(data: bytes) -> None:
    _load_and_verify_certificates(_armour(b"CERTIFICATE", data))
    _load_and_use_crls(_armour(b"X509 CRL", data))


@SETTINGS
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_flipped_certificate(position: int, value: int) -> None:
    _load_and_verify_certificates(_armour(b"CERTIFICATE", _flip(_LEAF_DER, position, value)))


@SETTINGS
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_flipped_crl(position: int, value: int) -> None:
    _load_and_use_crls(_armour(b"X509 CRL", _flip(_CRL_DER, position, value)))


def test_the_unflipped_inputs_verify() -> None:
    # The control: the fuzzed inputs start from material that does verify.
    leaf = load_certificates_pem(_armour(b"CERTIFICATE", _LEAF_DER))[0]
    crl = load_crl_pem(_armour(b"X509 CRL", _CRL_DER))
    assert isinstance(crl, x509.CertificateRevocationList)
    trust = TrustStore(_TRUST.roots, _TRUST.crls)
    assert str(verify_node_certificate(leaf, [_CITY.certificate], trust, _NOW).name) == (
        "520100.fagai"
    )
