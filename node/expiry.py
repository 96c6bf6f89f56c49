"""What runs out on a running daemon: its certificate, its CA chain, the roots, the CRLs.

Theory of operation
-------------------
A node whose certificate expires is refused by every peer; one whose CA or
root expires takes every node under it along; a CRL past its nextUpdate makes
every node fail closed on that CA's chains (SPEC §3.7).  None of it renews
itself, so the daemon says so early, in three places, by one rule
(``pki.certificate_expiry``, ``pki.crl_expiry``):

* ``/health`` (and ``exchnode node health``) under ``trust``: the CRLs
  (:func:`node.trust.crl_health`), and ``certificates``: this node's own
  certificate (``own``), the intermediates of its chain (``chain``), the
  federation's CA bundle (``ca``) and the roots (``root``), each with its
  notAfter, seconds left and state; every one not ``current`` is also one of
  ``warnings``, with what it means;
* the log, at start and every hour (:func:`watch_expiry`): a warning per
  ``expiring`` item, an **error** per certificate ``expired`` or CRL ``stale``;
* thresholds: ``[trust] certificate_warning_days`` (default 30) and
  ``crl_warning_hours`` (default 48).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.aio import Node
from exchnode.pki import ExpiryState, certificate_expiry

from .trust import WATCH_INTERVAL, crl_health

__all__ = ["certificates_to_watch", "trust_health", "watch_expiry"]

#: States that make a log line an error rather than a warning.
_BROKEN = {"expired", "stale", "early"}


def certificates_to_watch(
    own: x509.Certificate | None,
    chain: Iterable[x509.Certificate],
    cas: Iterable[x509.Certificate],
    roots: Iterable[x509.Certificate],
) -> list[tuple[str, x509.Certificate]]:
    """(role, certificate) for every certificate the node depends on, each once."""
    out: list[tuple[str, x509.Certificate]] = []
    seen: set[bytes] = set()
    for role, certificates in (
        ("own", [] if own is None else [own]),
        ("chain", chain),
        ("ca", cas),
        ("root", roots),
    ):
        for certificate in certificates:
            der = certificate.public_bytes(Encoding.DER)
            if der not in seen:
                seen.add(der)
                out.append((role, certificate))
    return out


def _certificate_json(
    role: str, certificate: x509.Certificate, now: datetime, warning: timedelta
) -> dict[str, Any]:
    expiry = certificate_expiry(certificate, now, warning)
    return {
        "role": role,
        "subject": expiry.subject,
        "serial": str(certificate.serial_number),
        "not_after": certificate.not_valid_after_utc.isoformat(timespec="seconds"),
        "seconds_left": None if expiry.seconds_left is None else round(expiry.seconds_left),
        "state": expiry.state.value,
        "problem": _problem(role, expiry.state, warning) if expiry.state.needs_attention else None,
    }


def _problem(role: str, state: ExpiryState, warning: timedelta) -> str:
    whose = {
        "own": "this node's certificate: every peer refuses this node",
        "chain": "a CA of this node's chain: every peer refuses this node",
        "ca": "a CA of the federation: every node under it is refused",
        "root": "a root: every chain under it is refused",
    }[role]
    if state is ExpiryState.EXPIRED:
        return f"expired; {whose} until it is renewed"
    if state is ExpiryState.EARLY:
        return "not valid yet: check the clocks"
    return (
        f"ends within {warning.days} days; once it does, {whose}: renew it now "
        "('exchnode pki csr', 'pki sign', 'pki install')"
    )


def trust_health(
    node: Node,
    certificates: Sequence[tuple[str, x509.Certificate]],
    *,
    certificate_warning_days: float,
    crl_warning_hours: float,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``/health``'s ``trust``: the CRLs and the certificates, and what needs attention."""
    moment = datetime.now(UTC) if now is None else now
    body = crl_health(node, crl_warning_hours, moment)
    warning = timedelta(days=certificate_warning_days)
    listed = [_certificate_json(role, cert, moment, warning) for role, cert in certificates]
    body["certificate_warning_days"] = certificate_warning_days
    body["certificates"] = listed
    body["warnings"] += [
        {
            "certificate": item["role"],
            "subject": item["subject"],
            "state": item["state"],
            "not_after": item["not_after"],
            "problem": item["problem"],
        }
        for item in listed
        if item["state"] != ExpiryState.CURRENT.value
    ]
    return body


async def watch_expiry(
    node: Node,
    certificates: Sequence[tuple[str, x509.Certificate]],
    *,
    certificate_warning_days: float,
    crl_warning_hours: float,
    log: Any,
    interval: float = WATCH_INTERVAL,
) -> None:
    """Log what needs attention at start and every ``interval`` seconds: errors for what ran out."""
    while True:
        body = trust_health(
            node,
            certificates,
            certificate_warning_days=certificate_warning_days,
            crl_warning_hours=crl_warning_hours,
        )
        for warning in body["warnings"]:
            what = "certificate" if "certificate" in warning else "crl"
            if warning["state"] in _BROKEN:
                log.error(f"{what} not valid", **warning)
            else:
                log.warning(f"{what} needs attention", **warning)
        await asyncio.sleep(interval)
