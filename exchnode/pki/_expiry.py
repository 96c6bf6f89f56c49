"""How long a certificate or a CRL has left, and whether that needs attention (pure).

Theory of operation
-------------------
Nothing in the hierarchy renews itself: a node certificate, a CA certificate
and a CRL each run out on a date, and when one does every node fails closed on
the chains it vouches for (SPEC §3.7: an expired certificate, a CRL past its
nextUpdate).  An operator therefore needs to hear of it *before*: the daemon's
health and log and ``exchnode pki expiry`` all judge a date by the same rule
here, with ``now`` and the warning window as arguments:

* ``early``: not valid yet (notBefore / thisUpdate in the future: a clock);
* ``expired``: past notAfter, or a CRL past its nextUpdate (or without one,
  which is never current);
* ``expiring``: within the warning window of that date;
* ``current``: otherwise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from exchnode.errors import UsageError
from exchnode.pki._hostile import name_text

__all__ = ["Expiry", "ExpiryState", "certificate_expiry", "crl_expiry"]


class ExpiryState(enum.Enum):
    CURRENT = "current"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    EARLY = "early"

    @property
    def needs_attention(self) -> bool:
        return self is not ExpiryState.CURRENT


@dataclass(frozen=True, slots=True)
class Expiry:
    """One certificate's or CRL's end and its state at ``now``."""

    kind: str  # "certificate" or "crl"
    subject: str  # a certificate's subject, a CRL's issuer
    ends: datetime | None  # notAfter or nextUpdate (None: a CRL without nextUpdate)
    seconds_left: float | None
    state: ExpiryState

    def describe(self) -> str:
        """One line for an operator: what, when, and what it means."""
        what = "CRL of" if self.kind == "crl" else "certificate"
        end = "no nextUpdate" if self.ends is None else f"{self.ends:%Y-%m-%dT%H:%M:%SZ}"
        if self.state is ExpiryState.EXPIRED:
            return f"{what} {self.subject} expired ({end}): nodes refuse the chains it vouches for"
        if self.state is ExpiryState.EARLY:
            return f"{what} {self.subject} is not valid yet: check the clocks"
        left = (self.seconds_left or 0.0) / 86400
        return f"{what} {self.subject} ends {end}, in {left:.1f} days"


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise UsageError("now must be a timezone-aware datetime")
    return now


def _window(warning: timedelta) -> float:
    if warning < timedelta(0):
        raise UsageError(f"a warning window cannot be negative, got {warning}")
    return warning.total_seconds()


def certificate_expiry(cert: x509.Certificate, now: datetime, warning: timedelta) -> Expiry:
    """The certificate's notAfter and its state at ``now``, ``warning`` ahead."""
    moment, window = _aware(now), _window(warning)
    ends = cert.not_valid_after_utc
    left = (ends - moment).total_seconds()
    if cert.not_valid_before_utc > moment:
        state = ExpiryState.EARLY
    elif left <= 0:
        state = ExpiryState.EXPIRED
    else:
        state = ExpiryState.EXPIRING if left <= window else ExpiryState.CURRENT
    return Expiry("certificate", name_text(cert.subject), ends, left, state)


def crl_expiry(crl: x509.CertificateRevocationList, now: datetime, warning: timedelta) -> Expiry:
    """The CRL's nextUpdate and its state at ``now``, ``warning`` ahead."""
    moment, window = _aware(now), _window(warning)
    ends = crl.next_update_utc
    left = None if ends is None else (ends - moment).total_seconds()
    if crl.last_update_utc > moment:
        state = ExpiryState.EARLY
    elif left is None or left <= 0:
        state = ExpiryState.EXPIRED  # a CRL without nextUpdate is never current (SPEC §3.7)
    else:
        state = ExpiryState.EXPIRING if left <= window else ExpiryState.CURRENT
    return Expiry("crl", name_text(crl.issuer), ends, left, state)
