"""Mutual TLS between nodes: the contexts and the peer's certificate (federation layer).

Theory of operation
-------------------
Every connection between nodes is TLS 1.3 with certificates on both sides,
verified in two layers:

1. **In the handshake, by OpenSSL.** The chain must reach a configured root,
   every CA in it must have a current CRL, and no certificate may be on one
   (``VERIFY_CRL_CHECK_CHAIN``). RFC 5280 checks are strict
   (``VERIFY_X509_STRICT``). A peer that fails never sends a byte of
   application data. Our Ed25519 chains and CRLs pass this path; the
   integration tests show it, revoked and untrusted peers included.
2. **After the handshake, by exchnode.** ``pki_verify.verify_node_certificate``
   re-checks the peer's leaf with the rules OpenSSL does not know: the
   division name constraints (SPEC §3.5) and the node profile with its
   encryption key. It yields the peer's name from the certificate.

Hostname checking is off on purpose. Nodes are named by division codes, not
DNS names, and a node's identity is the name in its verified certificate,
never the address it was dialled at. The caller compares that name with the
neighbour it expected.

Python 3.11's ``ssl`` exposes only the peer's leaf certificate; the whole
verified chain arrives in 3.13. So the second layer takes the intermediates
from the federation's CA bundle, which is public material distributed with
the CRLs.

The verify bundle (roots and CRLs in one PEM file) changes whenever a CRL is
refreshed. Contexts are cheap to rebuild, and new connections pick up the new
bundle.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.errors import MalformedCertificateError, UsageError

__all__ = ["ALPN_PROTOCOL", "TlsFiles", "make_context", "peer_certificate", "write_verify_bundle"]

ALPN_PROTOCOL = "exchnode/1"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where a node's TLS material lives.

    ``chain`` is the node certificate followed by its intermediates (the
    ``chain.pem`` of ``exchnode pki issue-node``). ``key`` is the node's
    signing key, the certificate's subject key. ``verify`` holds the trusted
    roots and the current CRLs of every CA (``write_verify_bundle``).
    """

    chain: Path
    key: Path
    verify: Path
    passphrase: bytes | None = field(default=None, repr=False)


def make_context(files: TlsFiles, *, server: bool) -> ssl.SSLContext:
    """A TLS 1.3, mutually authenticated, CRL-checking context for one side."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False  # identity is the verified certificate's name, see above
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN | ssl.VERIFY_X509_STRICT
    context.set_alpn_protocols([ALPN_PROTOCOL])
    try:
        context.load_cert_chain(files.chain, files.key, password=files.passphrase)
    except ssl.SSLError as exc:
        raise UsageError(
            f"cannot use {files.chain} with {files.key}: {exc.reason or exc} "
            "(wrong key, wrong passphrase, or not a PEM chain)"
        ) from None
    try:
        context.load_verify_locations(cafile=files.verify)
    except ssl.SSLError as exc:
        raise UsageError(f"cannot load the verify bundle {files.verify}: {exc}") from None
    return context


def write_verify_bundle(
    path: Path | str,
    roots: Iterable[x509.Certificate],
    crls: Iterable[x509.CertificateRevocationList],
) -> Path:
    """Write roots and CRLs as one PEM file, atomically (public material, mode 0644)."""
    target = Path(path)
    pem = b"".join(root.public_bytes(Encoding.PEM) for root in roots)
    pem += b"".join(crl.public_bytes(Encoding.PEM) for crl in crls)
    if b"CERTIFICATE" not in pem:
        raise UsageError("a verify bundle needs at least one root certificate")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> x509.Certificate:
    """The certificate the peer presented (already verified by OpenSSL in the handshake)."""
    if ssl_object is None:
        raise MalformedCertificateError("the connection is not TLS")
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise MalformedCertificateError("the peer presented no certificate")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise MalformedCertificateError(f"the peer's certificate does not parse: {exc}") from None
