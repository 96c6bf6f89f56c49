"""``node.expiry``: what /health and the log say of certificates and CRLs about to run out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from cryptography import x509

from exchnode.aio import Node
from exchnode.node.expiry import certificates_to_watch, trust_health
from exchnode.pki import TrustStore
from exchnode.testing import SyntheticPKI


@dataclass
class _Held:
    """What ``trust_health`` reads of a node: the trust store and the CA bundle."""

    trust: TrustStore
    ca_bundle: tuple[x509.Certificate, ...]


def test_each_certificate_is_judged_and_what_runs_out_is_a_warning() -> None:
    pki = SyntheticPKI()
    root = pki.root("520000")
    city = pki.ca("520100", root, lifetime=timedelta(days=40))
    node = pki.node("520100.fagai", city, lifetime=timedelta(days=10))
    crls = [pki.crl(root), pki.crl(city)]
    held = cast(Node, _Held(TrustStore([root.certificate], crls), (city.certificate,)))
    watched = certificates_to_watch(
        node.certificate, [city.certificate], [city.certificate], [root.certificate]
    )
    assert [role for role, _ in watched] == ["own", "chain", "root"]  # the CA once

    def health(days_after_epoch: float) -> dict[str, Any]:
        return trust_health(
            held,
            watched,
            certificate_warning_days=30,
            crl_warning_hours=24,
            now=pki.epoch + timedelta(days=days_after_epoch),
        )

    early = health(1)
    states = {c["role"]: c["state"] for c in early["certificates"]}
    assert states == {"own": "expiring", "chain": "current", "root": "current"}
    (warning,) = [w for w in early["warnings"] if "certificate" in w]
    assert warning["certificate"] == "own"
    assert "every peer refuses this node" in warning["problem"]

    late = health(20)
    states = {c["role"]: c["state"] for c in late["certificates"]}
    assert states == {"own": "expired", "chain": "expiring", "root": "current"}
    assert {w["state"] for w in late["warnings"] if "certificate" in w} == {"expired", "expiring"}
    # The CRLs (7 days) are stale by then, and say so in the same list.
    assert {w["state"] for w in late["warnings"] if "certificate" not in w} == {"stale"}
