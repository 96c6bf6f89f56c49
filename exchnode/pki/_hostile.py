"""Hostile certificate and CRL bytes: what decoding them can raise, and the guard.

Why a module of its own: ``cryptography`` decodes a certificate's or a CRL's
fields lazily, when they are first read, so whatever reads attacker-supplied
DER -- the trust store, the chain verifier, the CRL check, the loaders -- can
meet a foreign exception anywhere.  SPEC §3.7 step 0 wants hostile input to
yield a certificate error and nothing else; these are the exceptions each of
them turns into one, listed once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from exchnode.errors import MalformedCertificateError

__all__ = ["DECODE_ERRORS", "hostile_input", "name_text", "utc_text"]

# Exceptions `cryptography` raises while lazily decoding attacker-supplied
# certificates and CRLs; each becomes a CertificateError subclass (SPEC §3.7 step 0).
DECODE_ERRORS = (
    Warning,  # only raised where warnings are errors; see hostile_input()
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
)


@contextlib.contextmanager
def hostile_input() -> Iterator[None]:
    """Keep warnings about hostile input from escaping as foreign exceptions.

    ``cryptography`` only *warns* about some malformations it still accepts (a
    zero or negative serial, a countryName of the wrong length).  The profile
    rejects those by its own checks (positive serial, exact DN shape), so the
    outcome does not depend on the warning filters.  Where warnings are errors
    (``-W error``, our test suite) the warning arrives as an exception: the
    decoders catch it as one of ``DECODE_ERRORS``, and this block turns any
    that slips past them into MalformedCertificateError.  The global warning
    filters are deliberately left alone: changing them is not thread-safe.
    """
    try:
        yield
    except Warning as exc:
        raise MalformedCertificateError(f"certificate data rejected: {exc}") from None


def utc_text(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def name_text(name: x509.Name) -> str:
    """A DN for a message, whatever it holds."""
    try:
        return name.rfc4514_string()
    except DECODE_ERRORS:
        return "(a name that does not decode)"
