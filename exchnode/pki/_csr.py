"""Certificate signing requests: a node asks for its certificate without giving up a key (pure).

Theory of operation
-------------------
``exchnode pki issue-node`` generates a node's keys on the CA's machine and
carries them to the node: the CA operator has held them.  The request flow
keeps them where they were born:

1. on the node's machine, :func:`build_node_request` makes a PKCS#10 request
   (RFC 2986) naming the node as the profile does (``O=exchnode, OU=node,
   CN=<name>``, SPEC §3.2), for its Ed25519 signing key, which signs the
   request (the proof that the requester holds it), and asking for its X25519
   encryption key in the profile's own extension (SPEC §3.3);
2. on the CA's side, :func:`read_node_request` reads what the request says and
   believes none of it blindly: the signature must verify under the request's
   own key, the name must be a node name in the profile's DN shape, the key
   types must be the profile's, and the encryption key must be an X25519
   SubjectPublicKeyInfo.  Only the name and the two public keys are taken; every
   other requested extension is listed (``ignored``) and dropped.  The
   certificate is then built by the same checked builder ``issue-node`` uses
   (:func:`build_node_certificate`), which applies the profile and refuses a name
   outside the issuing CA's division (SPEC §3.5).

An X25519 key cannot sign, so the request cannot prove possession of the
encryption key; it needs none: a wrong encryption key only means the requester
cannot read what is sealed to it, and the request itself is bound by the
signing key's signature.

Errors are rejections (the request comes from elsewhere), each naming what was
wrong: ``bad-certificate-signature`` for a signature that does not verify,
``malformed-certificate`` for a wrong shape or key type, ``invalid-name`` for
a name that is not a node's.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from exchnode.core import NodeName
from exchnode.errors import (
    CertificateSignatureError,
    InvalidNameError,
    MalformedCertificateError,
    UsageError,
)
from exchnode.pki._hostile import DECODE_ERRORS, hostile_input
from exchnode.pki._issue import encryption_key_extension
from exchnode.pki._profile import (
    ENCRYPTION_KEY_OID,
    CertKind,
    encryption_key_value,
    node_subject,
    parse_subject,
)

__all__ = ["NodeRequest", "build_node_request", "load_request_pem", "read_node_request"]

_MAX_REQUEST_BYTES = 64 * 1024  # a node's request is under 1 KiB


@dataclass(frozen=True, slots=True, eq=False)
class NodeRequest:
    """What a CA takes from a verified request: the name and the two public keys, no more."""

    name: NodeName
    signing_key: Ed25519PublicKey
    encryption_key: X25519PublicKey
    #: Dotted OIDs of requested extensions the CA does not copy (the profile decides them).
    ignored: tuple[str, ...] = ()


def build_node_request(
    name: NodeName | str, signing_key: Ed25519PrivateKey, encryption_key: X25519PublicKey
) -> x509.CertificateSigningRequest:
    """The PKCS#10 request of node ``name``, signed by its signing key (deterministic)."""
    try:
        node = name if isinstance(name, NodeName) else NodeName.parse(name)
    except InvalidNameError as exc:
        raise UsageError(str(exc)) from None
    if not isinstance(signing_key, Ed25519PrivateKey):
        raise UsageError("a node's signing key must be an Ed25519 private key")
    if not isinstance(encryption_key, X25519PublicKey):
        raise UsageError("a node's encryption key must be an X25519 public key")
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(node_subject(node))
        .add_extension(encryption_key_extension(encryption_key), critical=False)
        .sign(signing_key, None)
    )


def load_request_pem(data: bytes) -> x509.CertificateSigningRequest:
    """One PEM request; MalformedCertificateError when it is not one."""
    if not isinstance(data, bytes | bytearray):
        raise UsageError("request data must be bytes")
    if len(data) > _MAX_REQUEST_BYTES:
        raise MalformedCertificateError(
            f"request is {len(data)} bytes, more than a node's request can be "
            f"({_MAX_REQUEST_BYTES})"
        )
    try:
        with hostile_input():
            return x509.load_pem_x509_csr(bytes(data))
    except DECODE_ERRORS as exc:
        raise MalformedCertificateError(f"not a PEM certificate signing request: {exc}") from None


def read_node_request(request: x509.CertificateSigningRequest) -> NodeRequest:
    """What ``request`` asks for, once every check passed; a rejection naming the first failure.

    The order: key type, signature, name, encryption key -- a request whose
    signature does not verify is not read further.
    """
    try:
        with hostile_input():
            return _read(request)
    except DECODE_ERRORS as exc:
        raise MalformedCertificateError(f"request does not decode: {exc}") from None


def _read(request: x509.CertificateSigningRequest) -> NodeRequest:
    try:
        public_key = request.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedCertificateError(f"request's public key does not decode: {exc}") from None
    if not isinstance(public_key, Ed25519PublicKey):
        raise MalformedCertificateError(
            f"wrong key type: the request's key is {_key_type(public_key)}, not Ed25519 (a "
            "node's certificate is for its Ed25519 signing key, SPEC §3.2.2)"
        )
    if not request.is_signature_valid:
        raise CertificateSignatureError(
            "request signature invalid: it was not signed by the key it asks to certify"
        )
    try:
        kind, common_name = parse_subject(request.subject)
    except ValueError as exc:
        raise MalformedCertificateError(f"request's subject: {exc}") from None
    if kind is not CertKind.NODE:
        raise MalformedCertificateError(
            f"request names CA {common_name} (OU=ca): a request is for a node certificate"
        )
    name = NodeName.parse(common_name)
    encryption = None
    ignored: list[str] = []
    for extension in request.extensions:
        if extension.oid == ENCRYPTION_KEY_OID:
            encryption = _encryption_key(extension.value)
        else:
            ignored.append(extension.oid.dotted_string)
    if encryption is None:
        raise MalformedCertificateError(
            f"request lacks the exchnode encryption-key extension "
            f"({ENCRYPTION_KEY_OID.dotted_string}): make it with 'exchnode pki csr'"
        )
    return NodeRequest(name, public_key, encryption, tuple(ignored))


def _encryption_key(value: x509.ExtensionType) -> X25519PublicKey:
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - private OID
        raise MalformedCertificateError("request's encryption-key extension has a known type")
    return encryption_key_value(
        value.value,
        "request's ",
        lambda key: f"wrong key type: the request's encryption key is {_key_type(key)}, not X25519",
    )


def _key_type(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC ({key.curve.name})"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA ({key.key_size} bits)"
    return type(key).__name__.removeprefix("_").replace("PublicKey", "") or "unknown"
