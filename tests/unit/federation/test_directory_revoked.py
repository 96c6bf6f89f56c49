"""SPEC §14.6: a revoked signer is known as revoked, not merely unknown (issue 12, item 3).

The snapshot that brings a CRL usually no longer carries the entry it revokes:
the directory must remember the signing key of what vanished that way, so
that a custodian holding envelopes signed with it can end their custody.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from exchnode.errors import UnknownSignerError
from exchnode.federation import verify_snapshot
from tests.unit.federation.directories import Clock, Federation


def test_a_revoked_signer_is_remembered_when_its_entry_vanishes_with_the_crl(
    fed: Federation,
) -> None:
    clock = Clock(fed.t0)
    city = fed.city_with_county(clock)
    key_id = fed.D.identity.peer.signing_key_id
    assert city.signer("520102.gongan", key_id)
    assert city.revoked_keys("520102.gongan") == frozenset()
    # The county revokes its department and re-signs without it, carrying the new CRL.
    fed.pki.revoke(fed.D.certificate, fed.county)
    fresh = fed.pki.crl(fed.county, number=2, this_update=fed.pki.epoch + timedelta(hours=1))
    data = fed.sign(fed.K, crls=[fresh])
    city.update("520102", verify_snapshot(data, fed.trust(), fed.t0, "520102"), fed.t0)
    with pytest.raises(UnknownSignerError):  # the lookup fails closed, as before
        city.signer("520102.gongan", key_id)
    assert city.revoked_keys("520102.gongan") == {key_id}  # and it is known why
    # A name never held is merely unknown; so is another key of the revoked name.
    assert city.revoked_keys("520102.jiaoyu") == frozenset()
    assert fed.K.identity.peer.signing_key_id not in city.revoked_keys("520102.gongan")


def test_a_local_crl_marks_what_it_revokes(fed: Federation) -> None:
    city = fed.city_with_county(Clock(fed.t0), parent=None)
    fed.pki.revoke(fed.D.certificate, fed.county)
    assert city.add_crls([fed.pki.crl(fed.county, number=2)], fed.trust(), fed.t0) == ()
    assert city.revoked_keys("520102.gongan") == {fed.D.identity.peer.signing_key_id}
