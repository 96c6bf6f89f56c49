"""Every error exchnode raises on purpose.

Two roots, as in h11: :class:`UsageError` means the caller misused the library
(a local bug or bad configuration); :class:`RejectedError` means input that came
from elsewhere (an envelope, a certificate, a receipt) failed a check.  A
decoder fed arbitrary bytes raises a :class:`RejectedError` subclass and nothing
else; the property tests hold the code to that.

Every class carries a stable ``code``.  The test vectors in
``protocol/vectors/`` name the code each invalid input must produce, and
``protocol/SPEC.md`` lists them, so the code, the spec and other
implementations agree on *which* check failed, not just that one did.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadSignatureError",
    "CertificateError",
    "CertificateExpiredError",
    "CertificateNotYetValidError",
    "CertificateRevokedError",
    "CertificateSignatureError",
    "DecryptionError",
    "DirectoryExpiredError",
    "EquivocationError",
    "ExchnodeError",
    "ExpiredError",
    "InconsistentLogError",
    "InvalidAuditRecordError",
    "InvalidCatalogEntryError",
    "InvalidNameError",
    "InvalidTransitionError",
    "LifetimeTooLongError",
    "MalformedCertificateError",
    "MalformedError",
    "MaskingError",
    "NameConstraintError",
    "NotACAError",
    "NotARecipientError",
    "NotAuthorisedError",
    "NotTheProviderError",
    "NotYetValidError",
    "RejectedError",
    "ReplayError",
    "RequestConflictError",
    "RevocationUnavailableError",
    "RoutingRefusedError",
    "StoreError",
    "TooLargeError",
    "UnexpectedMessageError",
    "UnknownItemError",
    "UnknownMessageError",
    "UnknownRequestError",
    "UnknownResourceError",
    "UnknownSignerError",
    "UnsupportedSuiteError",
    "UnsupportedVersionError",
    "UntrustedError",
    "UsageError",
    "WrongCarrierError",
    "WrongDigestError",
    "WrongIssuerError",
]


class ExchnodeError(Exception):
    """Root of every error exchnode raises on purpose."""

    code: ClassVar[str] = "error"


class UsageError(ExchnodeError):
    """The caller misused the library: wrong arguments, missing keys, bad configuration."""

    code = "usage"


class RejectedError(ExchnodeError):
    """Input from another party failed a check; the message names the check."""

    code = "rejected"


class StoreError(ExchnodeError):
    """The node's own durable store cannot be opened or failed; the message names the file."""

    code = "store"


class InvalidNameError(ExchnodeError, ValueError):
    """A node or division name does not follow the naming rules (SPEC §2)."""

    code = "invalid-name"


# --- envelopes, receipts and the wire encoding -------------------------------


class MalformedError(RejectedError):
    """Bytes that do not decode to the structure SPEC.md defines.

    ``field`` names the offending field by its path in the structure
    (``"envelope.body.recipients[2].name"``) so that an operator reading a
    log line knows where to look without a hex dump.
    """

    code = "malformed"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"malformed {field}: {problem}")
        self.field = field
        self.problem = problem


class TooLargeError(MalformedError):
    code = "too-large"


class UnsupportedVersionError(RejectedError):
    code = "unsupported-version"


class UnsupportedSuiteError(RejectedError):
    code = "unsupported-suite"


class UnknownSignerError(RejectedError):
    code = "unknown-signer"


class BadSignatureError(RejectedError):
    code = "bad-signature"


class NotARecipientError(RejectedError):
    code = "not-a-recipient"


class DecryptionError(RejectedError):
    code = "decryption-failed"


class ExpiredError(RejectedError):
    code = "expired"


class NotYetValidError(RejectedError):
    code = "not-yet-valid"


class LifetimeTooLongError(RejectedError):
    code = "lifetime-too-long"


class ReplayError(RejectedError):
    code = "replayed"


class RoutingRefusedError(RejectedError):
    """A neighbour offered an envelope its place in the hierarchy does not allow."""

    code = "routing-refused"


# --- receipts at the sender (SPEC §10.4) ---------------------------------------


class UnknownMessageError(RejectedError):
    """A receipt about a message this node did not send, or no longer holds (it expired)."""

    code = "unknown-message"


class WrongDigestError(RejectedError):
    """A receipt naming another envelope digest than the one sent under its message id."""

    code = "wrong-digest"


class WrongCarrierError(RejectedError):
    """A receipt brought by another node than the recipient that signed it (SPEC §17.2)."""

    code = "wrong-carrier"


# --- certificates and revocation ---------------------------------------------


class CertificateError(RejectedError):
    """Root of the certificate-chain failures."""

    code = "certificate"


class MalformedCertificateError(CertificateError):
    code = "malformed-certificate"


class UntrustedError(CertificateError):
    code = "untrusted"


class CertificateSignatureError(CertificateError):
    code = "bad-certificate-signature"


class CertificateExpiredError(CertificateError):
    code = "certificate-expired"


class CertificateNotYetValidError(CertificateError):
    code = "certificate-not-yet-valid"


class CertificateRevokedError(CertificateError):
    code = "revoked"


class NameConstraintError(CertificateError):
    code = "name-constraint"


class NotACAError(CertificateError):
    code = "not-a-ca"


class RevocationUnavailableError(CertificateError):
    code = "revocation-unavailable"


# --- the node directory ---------------------------------------------------------


class DirectoryExpiredError(RejectedError):
    """Directory data -- a whole snapshot, or one node's entry -- is past its expiry (SPEC §14).

    A rejection, not a usage error: the caller asked for nothing wrong, the data
    from elsewhere has gone stale.  It is also temporary: a fresh pull from
    ``source`` cures it, so a custodian should defer, not refuse for good.
    ``source`` names the neighbour the data came from ("" when unknown) and
    ``expired_ms`` when it expired, so the node knows which hub to pull again.
    """

    code = "directory-expired"

    def __init__(self, message: str, *, source: str = "", expired_ms: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.expired_ms = expired_ms


class WrongIssuerError(RejectedError):
    """A directory snapshot fetched from one node is signed by another (SPEC §14)."""

    code = "wrong-issuer"


# --- subscriptions and the sharing rules (issue 4) ------------------------------


class InvalidTransitionError(UsageError):
    """An operator asked for a subscription step its current state does not allow.

    The message names the request, its state and the step; the transition table
    in ``subscriptions`` is the whole list of what is allowed.
    """

    code = "invalid-transition"


class MaskingError(UsageError):
    """A masking rule that cannot be applied as configured; names the data item and the rule."""

    code = "invalid-mask"

    def __init__(self, item: str, rule: str, problem: str) -> None:
        super().__init__(f"mask {rule!r} on data item {item!r}: {problem}")
        self.item = item
        self.rule = rule


class UnknownItemError(RejectedError):
    """A request names a data item its resource does not have, or a grant one never requested."""

    code = "unknown-item"

    def __init__(self, item: str, problem: str) -> None:
        super().__init__(f"data item {item!r}: {problem}")
        self.item = item


class NotAuthorisedError(RejectedError):
    """A subscription message from a node whose role does not allow it (SPEC-draft §19.6)."""

    code = "not-authorised"


class UnknownRequestError(RejectedError):
    """A subscription message about a request id this node does not hold."""

    code = "unknown-request"


class RequestConflictError(RejectedError):
    """A request id seen before, with different content."""

    code = "request-conflict"


class UnexpectedMessageError(RejectedError):
    """A subscription message the request's current state does not accept."""

    code = "unexpected-message"


# --- the resource catalog (SPEC §18) ---------------------------------------------


class InvalidCatalogEntryError(UsageError):
    """A catalog entry built locally breaks a rule of the catalog (SPEC §18.2).

    A usage error, not a rejection: the provider's own application built it.
    ``field`` and ``problem`` are those a decoder would report as ``malformed``
    for the same value on the wire, so one rule reads the same either way.
    """

    code = "invalid-catalog-entry"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid {field}: {problem}")
        self.field = field
        self.problem = problem


class NotTheProviderError(RejectedError):
    """A catalog record validly signed by a node that is not its provider (SPEC §18.4).

    One source per datum: only the provider publishes, changes or withdraws
    its entries.  Distinct from ``bad-signature`` because the signature is
    genuine: the record is proof that ``signer`` (typically a relaying hub)
    signed another node's entry.
    """

    code = "not-the-provider"

    def __init__(self, message: str, *, signer: str = "", provider: str = "") -> None:
        super().__init__(message)
        self.signer = signer
        self.provider = provider


class EquivocationError(RejectedError):
    """A provider signed two different records with the same code and version (SPEC §18.5).

    The first one held stays; ``held`` and ``offered`` are both signed items,
    together the provider's proof of equivocation for oversight.
    """

    code = "equivocation"

    def __init__(self, message: str, *, held: bytes = b"", offered: bytes = b"") -> None:
        super().__init__(message)
        self.held = held
        self.offered = offered


class UnknownResourceError(RejectedError):
    """A subscription request for a resource its provider does not list."""

    code = "unknown-resource"


# --- the tamper-evident audit log (issue 5) ----------------------------------------


class InvalidAuditRecordError(UsageError):
    """An audit record built locally breaks the record schema (audit draft §20.2).

    A usage error: the node's own code built it.  ``field`` and ``problem`` are
    those a decoder reports as ``malformed`` for the same value on the wire,
    so free text, payload bytes or a key outside the detail schema is refused
    the same way wherever it comes from.
    """

    code = "invalid-audit-record"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid {field}: {problem}")
        self.field = field
        self.problem = problem


class InconsistentLogError(RejectedError):
    """Audit records or tree heads that contradict a signed tree head (audit draft §20.9).

    Raised where a check has one answer (restoring a log from its stored
    records, a checkpoint whose frontier is not its head's); the full list of
    findings of a log is ``audit_verify.verify_log``'s report.
    """

    code = "inconsistent-log"
