"""SPEC §14.13-§14.15: which CRLs a node says to whom, and how it stores them.

Revocations reach every node (3,210 CAs nationally), so they are what a
department's state would grow with: it serves them to no one and keeps each
with its CA's key instead of the CA's chain, and nothing a node took from
above is said back up.  The tree is test_directory_pages.Tree.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509

from exchnode.core import pack
from exchnode.errors import UsageError
from exchnode.federation import NodeDirectory
from exchnode.federation._directory_pages import decode_page
from exchnode.federation._directory_rows import decode_crl_row
from tests.unit.federation.directories import HOUR, Federation
from tests.unit.federation.test_directory_pages import LIFETIME, directory, resolve, synced


def pull(
    fed: Federation, into: NodeDirectory, source: NodeDirectory, now: float
) -> tuple[dict[bytes, bytes], bytes | None]:
    """Pull ``source``'s feed into ``into``: the CRL rows it stored, and its pull state."""
    crl_rows: dict[bytes, bytes] = {}
    while True:
        since, listing = into.pull_position(str(source.me), now)
        page = source.feed_page(
            source.audience_of(str(into.me)), since, now, LIFETIME, listing=listing
        )
        report = into.apply_page(str(source.me), page, fed.trust(), now)
        crl_rows.update(dict(report.crls))
        if not report.more:
            return crl_rows, report.state


def revoke_m(fed: Federation) -> tuple[float, x509.CertificateRevocationList]:
    """M's certificate revoked by its county CA's CRL: when, and the CRL."""
    revoked_at = fed.pki.epoch + timedelta(days=1, hours=1)
    fed.pki.revoke(fed.M.certificate, fed.county3, revoked_at)
    return fed.t0 + 2 * HOUR, fed.pki.crl(fed.county3, number=2, this_update=revoked_at)


def revokes_m(node: NodeDirectory, crl: x509.CertificateRevocationList) -> bool:
    return any(c.issuer == crl.issuer and len(list(c)) == 1 for c in node.crls())


def test_a_crl_from_above_comes_down_everywhere_and_is_not_said_back_up(fed: Federation) -> None:
    tree = synced(fed)
    later, crl = revoke_m(fed)
    tree.P.add_crls([crl], fed.trust(), later, cas=[fed.county3.certificate])
    pages = tree.refresh(later)
    for node in (tree.C, tree.K, tree.D, tree.K3, tree.M, tree.T, tree.F):
        assert revokes_m(node, crl), node.me
    for parent, child in tree.up:  # what each child said to its parent
        said = pages[(str(parent.me), str(child.me))]
        assert sum(len(decode_page(page).crls) for page in said) == 0, (parent.me, child.me)


def test_a_crl_entered_below_climbs_to_the_root_and_comes_down_everywhere(
    fed: Federation,
) -> None:
    tree = synced(fed)
    later, crl = revoke_m(fed)
    # Entered at a department of another county: up through K and C to P, then down.
    tree.D.add_crls([crl], fed.trust(), later, cas=[fed.county3.certificate])
    for _ in range(2):  # M signs nothing any more: its own page would be refused
        for into, source in (*tree.up, *tree.down):
            if source is not tree.M:
                pull(fed, into, source, later)
    for node in (tree.K, tree.C, tree.P, tree.T, tree.F, tree.K3, tree.M):
        assert revokes_m(node, crl), node.me


def test_a_department_keeps_crls_from_above_with_their_cas_key_and_restarts_revoking(
    fed: Federation,
) -> None:
    tree = synced(fed)
    clock = tree.clock
    resolve(fed, [tree.D, tree.K, tree.C], ["520103.minzheng"], fed.t0)
    later, crl = revoke_m(fed)
    tree.P.add_crls([crl], fed.trust(), later, cas=[fed.county3.certificate])
    for into, source in (*tree.up, *tree.down):
        if into is not tree.D:
            pull(fed, into, source, later)
    rows, state = pull(fed, tree.D, tree.K, later)
    decoded = [decode_crl_row(row) for row in rows.values()]
    assert any(x509.load_der_x509_crl(der).issuer == crl.issuer for der, _, _ in decoded)
    for der, chain, key in decoded:
        assert chain == ()  # no chain: a department serves these CRLs to no one
        is_root = x509.load_der_x509_crl(der).issuer == fed.root.certificate.subject
        assert (key is None) == is_root
        assert key is None or len(key) == 32
    # A hub keeps the chains: it serves the CRLs on to its children.
    k_rows = [decode_crl_row(row) for row in pull(fed, tree.K, tree.C, later)[0].values()]
    k_rows = k_rows or [decode_crl_row(r) for r in tree.K._pulls["520100"].crl_rows.values()]
    assert any(chain for _, chain, _ in k_rows)
    assert all(key is None for *_, key in k_rows)
    # Restarted, the department takes its rows back, re-checked, and still revokes.
    again = directory(fed, fed.D, clock, "520102")
    assert again.restore_pull("520102", state, [], rows.values(), fed.trust(), later) == ()
    assert revokes_m(again, crl)
    assert again.footprint() < 250 * len(rows) + 200  # CRLs with their CAs' keys, no chains
    with pytest.raises(UsageError):
        again.recipient_at("520103.minzheng", later)


def test_a_keyed_crl_row_that_does_not_verify_is_dropped_at_restart(fed: Federation) -> None:
    tree = synced(fed)
    clock = tree.clock
    later, crl = revoke_m(fed)
    tree.P.add_crls([crl], fed.trust(), later, cas=[fed.county3.certificate])
    tree.refresh(later)
    stored = tree.D._pulls["520102"].crl_rows.values()
    keyed = [decode_crl_row(r) for r in stored if decode_crl_row(r)[2] is not None]
    assert keyed
    der, _, key = keyed[0]
    assert key is not None
    other_key = fed.county.certificate.public_key().public_bytes_raw()  # type: ignore[union-attr]
    again = directory(fed, fed.D, clock, "520102")
    dropped = again.restore_pull(
        "520102", None, [], [pack([der, [], other_key])], fed.trust(), later
    )
    assert [(d.field, d.code) for d in dropped] == [("crl row 0", "bad-certificate-signature")]
    assert again.crls() == ()
