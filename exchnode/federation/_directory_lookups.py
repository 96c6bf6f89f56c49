"""Lookups on demand through the hierarchy (SPEC §14.16): asked, answered, kept.

Why a module of its own: a name outside a node's subtree and path is not
held but looked up, through the hubs, and kept in a bounded cache until it
expires.  :class:`LookupExchange` decides which names to ask the parent
for, answers a child's lookup from what this node holds (with the CRLs of
the CAs on the answer's chains), and keeps and restores what its parent
answered, each entry in its source's scope.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives import serialization

from exchnode.core import (
    NodeName,
    check_name,
    pack,
    unpack,
)
from exchnode.errors import (
    ExchnodeError,
    MalformedError,
    RejectedError,
)
from exchnode.federation._directory_core import STATIC, DirectoryCore
from exchnode.federation._directory_pages import (
    Audience,
    CrlRow,
    leaf_digest,
    sign_page,
)
from exchnode.federation._directory_rows import (
    LookupReport,
    Record,
    decode_row,
    encode_row,
)
from exchnode.federation._directory_trust import verify_page
from exchnode.federation._directory_verify import (
    Dropped,
    VerifiedEntry,
)
from exchnode.federation._directory_wire import (
    DirectoryEntry,
)
from exchnode.pki import (
    TrustStore,
)

__all__ = ["LookupExchange"]


class LookupExchange(DirectoryCore):
    """Lookups on demand: see the module docstring."""

    def wants(self, name: str) -> bool:
        """Whether asking the hierarchy for ``name`` could help: outside this node's subtree."""
        try:
            parsed = NodeName.parse(name)
        except ExchnodeError:
            return False
        return parsed != self.me and not self._within_me(parsed)

    def has_live(self, name: str, now: float) -> bool:
        now_ms = int(now * 1000)
        return any(record.live(now_ms) for record in self._index.get(name, ()))

    def lookup_split(self, names: Iterable[str], now: float) -> tuple[list[str], list[str]]:
        """The names this node answers itself, and those to ask its parent first."""
        has_parent = self.parent is not None
        local, forward = [], []
        for name in names:
            if has_parent and self.wants(name) and not self.has_live(name, now):
                forward.append(name)
            else:
                local.append(name)
        return local, forward

    def lookup_answer(self, names: Iterable[str], now: float, lifetime: float) -> bytes:
        """A signed answer with every live entry of ``names`` held; the rest unknown.

        Unknown is authoritative for a name in this node's subtree (its
        children tell it everything there) and for a hub with no parent;
        otherwise it means only that the hierarchy above did not know it.
        """
        now_ms = int(now * 1000)
        entries: list[DirectoryEntry] = []
        unknown: list[str] = []
        cas: set[bytes] = set()
        for name in sorted(set(names)):
            live = [r for r in self._index.get(name, ()) if r.source != STATIC and r.live(now_ms)]
            if not live:
                unknown.append(name)
            for record in live:
                entries.append(
                    DirectoryEntry(name, record.chain, record.entry.address, record.valid_until_ms)
                )
                cas.update(cert.issuer.public_bytes() for cert in record.entry.certificates)
        crls = [
            CrlRow(der, self._crls.chain(crl, der, self._held_chains))
            for crl in self._crls.kept
            if crl.issuer.public_bytes() in cas
            for der in (crl.public_bytes(serialization.Encoding.DER),)
        ]
        return sign_page(
            self.identity,
            issued_ms=now_ms,
            expires_ms=now_ms + int(lifetime * 1000),
            audience=Audience.LOOKUP,
            since=None,
            next=None,
            reset=False,
            more=False,
            entries=entries,
            crls=crls,
            unknown=unknown,
            policy=self.page_policy,
        )

    def apply_lookup(
        self, source: str, data: bytes, asked: Iterable[str], trust: TrustStore, now: float
    ) -> LookupReport:
        """Keep what ``source`` answered to a lookup for ``asked``, until each entry expires."""
        asked_names = set(asked)
        accepts = self.accepts_from(source)
        verified = verify_page(
            data,
            self._working_trust(trust),
            now,
            source,
            Audience.LOOKUP,
            memo=self.memo,
            revoked=self._crls.revoked_serials.__contains__,
            cas=self.identity.chain,
            wanted=lambda name: str(name) in asked_names and accepts(name),
            policy=self.page_policy,
            freshness=self.policy,
        )
        by_name: dict[str, list[Record]] = {}
        for entry in verified.entries:
            by_name.setdefault(entry.name, []).append(Record.of(entry, source))
        rows = []
        for name, records in by_name.items():
            self._lookups[name] = tuple(records)
            self._lookups.move_to_end(name)
            for record in records:
                row = pack([source, encode_row(record)])
                rows.append((name, leaf_digest(record.leaf), row))
        evicted = []
        while len(self._lookups) > self._lookup_capacity:
            evicted.append(self._lookups.popitem(last=False)[0])
        self._crls.take(
            verified.crls,
            verified.revoking,
            keep_chains=self._keeps_chains(source),
            from_below=False,
        )
        self._rebuild(crls=bool(verified.crls or verified.revoking))
        return LookupReport(
            source,
            tuple(sorted(by_name)),
            tuple(n for n in verified.unknown if n in asked_names),
            verified.dropped,
            tuple(rows),
            tuple(evicted),
        )

    def restore_lookups(
        self, rows: Iterable[bytes], trust: TrustStore, now: float
    ) -> tuple[Dropped, ...]:
        """Take back the looked-up entries ``apply_lookup`` had stored, each chain verified again.

        Kept dead or alive as stored: one past its expiry answers lookups with
        "expired" (and from where), as the cache of SPEC §14.11 does.
        """
        dropped: list[Dropped] = []
        working = self._working_trust(trust)
        by_name: dict[str, list[Record]] = {}
        for i, data in enumerate(rows):
            try:
                value = unpack(data, what="directory lookup row", max_size=64 * 1024, max_array=4)
                if type(value) is not list or len(value) != 2 or type(value[1]) is not bytes:
                    raise MalformedError("directory lookup row", "expected [source, row]")
                source = check_name(value[0], "directory lookup row.source")
                entry = decode_row(value[1])
                peer, certificates = self.memo.verify(
                    entry.chain, working, now, self._crls.revoked_serials.__contains__, f"row {i}"
                )
                if str(peer.name) != entry.name or source not in self._neighbours:
                    raise MalformedError(f"row {i}", f"{entry.name} does not belong here")
                if not self.accepts_from(source)(peer.name):
                    raise MalformedError(f"row {i}", f"{source} may not speak for {entry.name}")
            except RejectedError as exc:
                dropped.append(Dropped(f"row {i}", "", exc.code, str(exc)))
                continue
            verified = VerifiedEntry(peer, certificates, entry.address, entry.valid_until_ms)
            by_name.setdefault(entry.name, []).append(Record.of(verified, source))
        for name, records in by_name.items():
            self._lookups[name] = tuple(records)
        while len(self._lookups) > self._lookup_capacity:
            self._lookups.popitem(last=False)
        self._rebuild()
        return tuple(dropped)
