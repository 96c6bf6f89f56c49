"""The CRLs a node's directory keeps: from where, served to whom, stored how (SPEC §14.6, §14.14).

Why a module of its own: revocations reach every node of the network (3,210
CAs nationally), so they are the one part of a department's directory that
grows with the nation rather than with its subtree.  What a node does with
them is decided here, in one place:

* **Kept**: the newest genuine, current CRL of each CA from every source
  (local configuration, feeds, lookup answers, format-1 snapshots); every
  genuine CRL revokes what it lists, current or not (revocation is final).
* **Served**: down to children, every CRL kept; up to the parent (and to a
  link), only those that came from local configuration or from a child.  A
  CRL climbs to the root once and comes down everywhere from there; a node
  does not echo back up what its parent sent it (which, from 140,000 nodes,
  would send every CRL change back up the tree from every leaf).
* **Stored**: a CRL this node may serve on keeps its CA's chain, which
  travels with it (§14.14); one it serves to no one (a node without children
  that took it from above: a department) keeps only its CA's 32-byte key, so
  a department stores ~250 bytes per CA instead of ~1 KB.  After a restart,
  a chained row is verified again as from a page, a keyed row by its
  signature and dates under that key (:func:`exchnode.pki.crl_problem_under_key`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchnode.errors import RejectedError
from exchnode.federation._directory_pages import CrlRow
from exchnode.federation._directory_rows import (
    authority_key,
    ca_chain,
    decode_crl_row,
    encode_crl_row,
)
from exchnode.federation._directory_trust import VerifiedCrl
from exchnode.federation._directory_verify import (
    Dropped,
    VerifiedSnapshot,
    accept_crls,
    trust_with,
)
from exchnode.pki import (
    CrlSet,
    TrustStore,
    crl_problem_under_key,
    load_certificate_der,
    load_crl_der,
)

__all__ = ["KeptCrls"]

_CRL = x509.CertificateRevocationList
_DER = serialization.Encoding.DER
_RAW = serialization.Encoding.Raw


#: The chains of the entries a node holds, as (certificates, their DER), read on demand.
HeldChains = Callable[[], Iterable[tuple[Sequence[x509.Certificate], Sequence[bytes]]]]


def _der(crl: _CRL) -> bytes:
    return crl.public_bytes(_DER)


def _signing_key(crl: _CRL, chain: Sequence[bytes]) -> bytes | None:
    """The raw key of the CA in ``chain`` that signed ``crl`` (None: not there, e.g. a root's)."""
    for der in chain:
        try:
            cert = load_certificate_der(der)
            key = cert.public_key()
        except (RejectedError, ValueError):
            continue
        if (
            cert.subject == crl.issuer
            and isinstance(key, Ed25519PublicKey)
            and crl.is_signature_valid(key)
        ):
            return key.public_bytes(_RAW, serialization.PublicFormat.Raw)
    return None


class KeptCrls:
    """One node's CRLs: see the module docstring."""

    def __init__(self) -> None:
        # From local configuration: genuine and current (kept, served), genuine at all (revoking).
        self._local = CrlSet()
        self._local_revoking = CrlSet()
        # Taken from pages and lookup answers (never removed: a CA's CRL only grows).
        self._taken = CrlSet()
        self._taken_revoking = CrlSet()
        #: The newest genuine, current CRL of each CA, from every source.
        self.kept = CrlSet()
        #: (authority key id, serial) listed by any genuine CRL held.
        self.revoked_serials: frozenset[tuple[bytes, int]] = frozenset()
        #: DER of every CRL taken, so that a page bringing it again skips its check.
        self.known: set[bytes] = set()
        self._chains: dict[bytes, tuple[bytes, ...]] = {}
        # Feed keys of the CAs whose CRLs came from local configuration or from a child.
        self._below: set[bytes] = set()

    def revoking(self) -> list[_CRL]:
        """The genuine CRLs that are not current: they vouch for nothing but still revoke."""
        return [*self._local_revoking, *self._taken_revoking]

    def add_local(
        self,
        crls: Sequence[_CRL],
        cas: Sequence[x509.Certificate],
        trust: TrustStore,
        when: datetime,
    ) -> tuple[Dropped, ...]:
        """CRLs from local configuration, checked against ``cas`` and the roots; served onwards."""
        numbered = [(f"crls[{i}]", crl) for i, crl in enumerate(crls)]
        checked, dropped = accept_crls(numbered, cas, trust_with(trust, crls), when)
        for crl in checked.genuine:  # its CA's chain travels with it (SPEC §14.14)
            chain = ca_chain(crl.issuer, cas)
            if chain:
                self._chains[_der(crl)] = chain
            self._below.add(authority_key(crl))
        self._local = self._local.with_crls(checked.current)
        self._local_revoking = self._local_revoking.with_crls(checked.genuine)
        return tuple(dropped)

    def take(
        self,
        crls: Iterable[VerifiedCrl],
        revoking: Iterable[_CRL],
        *,
        keep_chains: bool,
        from_below: bool,
    ) -> list[tuple[bytes, bytes]]:
        """Keep what a page or a lookup answer brought; the stored rows ``(feed key, row)``.

        ``keep_chains``: this node may serve these CRLs on (it has children, or
        they come from one); else each is stored with its CA's key alone.
        """
        taken, rows = [], []
        for verified in crls:
            crl, chain = verified.crl, verified.ca_chain
            der = _der(crl)
            key = None if keep_chains else _signing_key(crl, chain)
            if key is None:
                self._chains.setdefault(der, chain)
            rows.append((authority_key(crl), encode_crl_row(der, chain, key)))
            if from_below:
                self._below.add(authority_key(crl))
            taken.append(crl)
        revoking = list(revoking)
        if taken:
            self._taken = self._taken.with_crls(taken)
            self.known.update(map(_der, taken))
        if revoking:
            self._taken_revoking = self._taken_revoking.with_crls(revoking)
        return rows

    def restore(
        self,
        rows: Iterable[bytes],
        own_chain: Sequence[x509.Certificate],
        trust: TrustStore,
        when: datetime,
        *,
        from_below: bool,
    ) -> tuple[dict[bytes, bytes], tuple[Dropped, ...]]:
        """Take back stored rows, each verified again; the rows kept (feed key → row) and drops."""
        dropped: list[Dropped] = []
        chained: list[tuple[str, _CRL]] = []
        cas: list[x509.Certificate] = list(own_chain)
        current: list[_CRL] = []
        genuine: list[_CRL] = []
        kept: dict[bytes, bytes] = {}
        for i, data in enumerate(rows):
            field = f"crl row {i}"
            try:
                der, chain, key = decode_crl_row(data)
                crl = load_crl_der(der)
                if key is None:
                    cas.extend(load_certificate_der(c) for c in chain)
            except RejectedError as exc:
                dropped.append(Dropped(field, "", exc.code, str(exc)))
                continue
            kept[authority_key(crl)] = bytes(data)
            if key is None:
                chained.append((field, crl))
                self._chains.setdefault(der, chain)
                continue
            problem = crl_problem_under_key(crl, Ed25519PublicKey.from_public_bytes(key), when)
            if problem is None or problem.genuine:
                genuine.append(crl)
            if problem is None:
                current.append(crl)
            else:
                dropped.append(Dropped(field, "", problem.code, problem.reason))
        checked, refused = accept_crls(
            chained, cas, trust_with(trust, (c for _, c in chained)), when
        )
        dropped.extend(refused)
        current.extend(checked.current)
        genuine.extend(checked.genuine)
        self._taken = self._taken.with_crls(current)
        self._taken_revoking = self._taken_revoking.with_crls(genuine)
        self.known.update(map(_der, current))
        if from_below:
            self._below.update(authority_key(c) for c in genuine)
        return kept, tuple(dropped)

    def rebuild(self, snapshots: Iterable[VerifiedSnapshot]) -> None:
        """Recompute what is kept and revoked, after any source's CRLs changed."""
        snapshots = list(snapshots)
        self.kept = self._local.with_crls(
            itertools.chain((crl for s in snapshots for crl in s.crls), self._taken)
        )
        revoking = self._local_revoking.with_crls(
            itertools.chain((crl for s in snapshots for crl in s.revoking), self._taken_revoking)
        )
        self.revoked_serials = self.kept.revoked() | revoking.revoked()

    def served(
        self, *, up: bool, from_children: Iterable[VerifiedSnapshot], held: HeldChains
    ) -> list[tuple[bytes, CrlRow]]:
        """The CRL rows said to an audience: all kept (``up`` False), or those from below.

        ``from_children``: the format-1 snapshots of children (their CRLs came
        from below too); ``held``: chains of entries held, where a CRL's CA
        chain is looked for when none was kept with it.
        """
        below = self._below
        if up:
            below = below | {authority_key(c) for s in from_children for c in s.crls}
        rows = []
        for crl in self.kept:
            key = authority_key(crl)
            if up and key not in below:
                continue
            der = _der(crl)
            rows.append((key, CrlRow(der, self.chain(crl, der, held))))
        return rows

    def chain(self, crl: _CRL, der: bytes, held: HeldChains) -> tuple[bytes, ...]:
        """The chain of a CRL's CA (root excluded): kept with it, or found among ``held()``."""
        chain = self._chains.get(der)
        if chain is not None:
            return chain
        found: tuple[bytes, ...] = ()
        for certificates, chain_der in held():
            for j, cert in enumerate(certificates[1:], start=1):
                if cert.subject == crl.issuer:
                    found = tuple(chain_der[j:])
                    break
            if found:
                break
        self._chains[der] = found
        return found
