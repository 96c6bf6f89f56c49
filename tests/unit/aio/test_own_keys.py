"""The certificates a node keeps so its old heads verify after a key rotation (``_own_keys``)."""

from __future__ import annotations

from datetime import timedelta

from exchnode.aio import earlier_identities
from exchnode.aio._own_keys import with_current
from exchnode.testing import SyntheticPKI


def test_a_kept_certificate_counts_expired_but_not_revoked() -> None:
    pki = SyntheticPKI()
    root = pki.root("520000")
    city = pki.ca("520100", root)
    old = pki.node("520100.fagai", city, lifetime=timedelta(days=30))
    new = pki.node("520100.fagai", city, generation=1)
    kept = with_current(with_current(None, old.certificate), new.certificate)
    assert with_current(kept, new.certificate) is None  # kept once
    later = pki.epoch + timedelta(days=60)  # the old certificate has expired since
    trust = pki.trust_store([root], now=later)
    names = earlier_identities(kept, "520100.fagai", [city.certificate], trust, later)
    assert [p.signing_key_id for p in names] == [
        old.identity.peer.signing_key_id,
        new.identity.peer.signing_key_id,
    ]
    assert earlier_identities(kept, "520100.jiaotong", [city.certificate], trust, later) == []
    # Revoked (a compromised key): its heads are not to be believed, expired or not.
    pki.revoke(old.certificate, city, when=pki.epoch + timedelta(days=1))
    trust = pki.trust_store([root], now=later)
    names = earlier_identities(kept, "520100.fagai", [city.certificate], trust, later)
    assert [p.signing_key_id for p in names] == [new.identity.peer.signing_key_id]
