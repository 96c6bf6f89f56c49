"""The merged catalog one node holds, and how it reconciles with its neighbours (SPEC §18.5-§18.8).

Theory of operation
-------------------
A node holds, per (provider, code), the newest signed record it has seen.
Merging needs no coordination because the provider alone orders its own
records by ``version``:

* a higher version replaces a lower one, whatever order copies arrive in;
  a lower one is ignored (stale);
* a withdrawal is a record like any other -- a **tombstone** -- and is kept,
  so it travels onwards and a late copy of an older version cannot bring the
  entry back; only a newer version from the provider can;
* the same version with other content means the provider signed two
  different things under one number (equivocation): the first one held stays,
  the pair is kept as evidence, and :class:`EquivocationError` is raised.

The merge is a join (the maximum per key), so states that have seen the same
records are equal whatever the order: that is what makes anti-entropy
converge.

**Scope** follows the hierarchy as the node directory's does (SPEC §14.7): a
hub holds its subtree's entries plus everything its parent sends down; a
parent sends a child everything it holds; a child or a link sends only
entries whose provider lies in its own subtree, and only those are accepted
from it.  Signatures already stop anyone but the provider from speaking;
scope keeps each neighbour to its place in the flow, so entries climb only
through the branch that holds their provider.

**Anti-entropy** (SPEC §18.7), a puller A against a neighbour B:

1. B: ``summary(to=A)``.  A: ``diff(summary, source=B)`` → providers whose
   digests differ (none if the top digests match).
2. B: ``versions(providers, to=A)``.  A: ``wanted(versions, source=B)`` →
   the (provider, code, version) that A lacks or holds older.
3. B: ``entries_for(wanted, to=A)`` → signed records.  A verifies each
   (``CatalogVerifier``) and ``apply``-s it with ``source=B``.

Run both ways, it leaves both holding the join of what each may see, and
sends only records that differ.  Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

from exchnode.catalog._entry import CatalogRecord, CatalogVerifier, ShareType, Status, decode_record
from exchnode.catalog._sync import ProviderDigest, Summary, Version, Wanted, provider_digest
from exchnode.core import Level, NodeName, pack, unpack
from exchnode.errors import EquivocationError, MalformedError, UnsupportedVersionError
from exchnode.federation import Neighbour, Relation

__all__ = [
    "MAX_CONFLICTS",
    "CatalogState",
    "Conflict",
    "Outcome",
    "accepts_from",
    "sends_to",
    "within_subtree",
]

MAX_CONFLICTS = 1024
_SNAPSHOT_FORMAT = 1


class Outcome(enum.Enum):
    NEW = "new"
    UPDATED = "updated"
    SAME = "same"
    STALE = "stale-ignored"
    OUT_OF_SCOPE = "out-of-scope"


class Conflict(NamedTuple):
    """Equivocation evidence: two records the provider signed with one version."""

    held: CatalogRecord
    offered: CatalogRecord


# --- scope (SPEC §18.6) -------------------------------------------------------------


def within_subtree(node: NodeName, provider: str) -> bool:
    """True if ``provider`` lies in ``node``'s subtree (a department's is itself)."""
    return Neighbour(node, Relation.CHILD).covers(NodeName.parse(provider))


def accepts_from(neighbour: Neighbour, provider: str) -> bool:
    """Whether a node takes ``provider``'s records from its ``neighbour``.

    From the parent, everything: what is visible from above, and the echo of
    our own subtree, harmless under versions and a way back after a lost disk.
    From a child or a link, only what lies in its subtree.
    """
    if neighbour.relation is Relation.PARENT:
        return True
    return within_subtree(neighbour.name, provider)


def sends_to(me: NodeName, neighbour: Neighbour, provider: str) -> bool:
    """Whether ``me`` offers ``provider``'s records to ``neighbour``: ``accepts_from`` mirrored."""
    if neighbour.relation is Relation.CHILD:
        return True
    return within_subtree(me, provider)


# --- the state ----------------------------------------------------------------------


class CatalogState:
    """The catalog a node holds: the newest record per (provider, code), tombstones included."""

    def __init__(self, me: NodeName | str) -> None:
        self.me = me if isinstance(me, NodeName) else NodeName.parse(me)
        self._records: dict[str, dict[str, CatalogRecord]] = {}
        self._digests: dict[str, ProviderDigest] = {}
        self._conflicts: OrderedDict[tuple[str, str, int, bytes], Conflict] = OrderedDict()

    # --- merging (SPEC §18.5) -------------------------------------------------------

    def apply(self, record: CatalogRecord, source: Neighbour | None = None) -> Outcome:
        """Merge one verified record; ``source`` is the neighbour it came from (None: local).

        Raises ``EquivocationError`` (after recording the evidence) when the
        provider signed other content under the version held.
        """
        if source is not None and not accepts_from(source, record.provider):
            return Outcome.OUT_OF_SCOPE
        codes = self._records.setdefault(record.provider, {})
        held = codes.get(record.code)
        if held is None or record.version > held.version:
            codes[record.code] = record
            self._digests.pop(record.provider, None)
            return Outcome.NEW if held is None else Outcome.UPDATED
        if record.version < held.version:
            return Outcome.STALE
        if record.content_digest == held.content_digest:
            return Outcome.SAME
        self._remember(Conflict(held, record))
        raise EquivocationError(
            f"{record.provider} signed two different versions {record.version} of {record.code}; "
            "the first one held stays",
            held=held.data,
            offered=record.data,
        )

    def _remember(self, conflict: Conflict) -> None:
        offered = conflict.offered
        key = (offered.provider, offered.code, offered.version, offered.content_digest)
        self._conflicts[key] = conflict
        self._conflicts.move_to_end(key)
        while len(self._conflicts) > MAX_CONFLICTS:
            self._conflicts.popitem(last=False)

    @property
    def conflicts(self) -> tuple[Conflict, ...]:
        return tuple(self._conflicts.values())

    # --- reading --------------------------------------------------------------------

    def get(self, provider: str, code: str) -> CatalogRecord | None:
        return self._records.get(provider, {}).get(code)

    def version(self, provider: str, code: str) -> int:
        """The version held, 0 if none."""
        held = self.get(provider, code)
        return 0 if held is None else held.version

    def next_version(self, code: str) -> int:
        """The version this node, as provider, signs its next change of ``code`` with."""
        return self.version(str(self.me), code) + 1

    def records(self) -> Iterator[CatalogRecord]:
        """Every record held, tombstones included, by (provider, code)."""
        for provider in sorted(self._records):
            codes = self._records[provider]
            for code in sorted(codes):
                yield codes[code]

    def __len__(self) -> int:
        return sum(len(codes) for codes in self._records.values())

    def search(
        self,
        *,
        code: str | None = None,
        provider: str | None = None,
        classification: str | None = None,
        share_type: ShareType | None = None,
        keyword: str | None = None,
        level: Level | None = None,
        status: Status | None = Status.PUBLISHED,
    ) -> list[CatalogRecord]:
        """Records matching every criterion given, sorted by (code, provider).

        ``classification`` is a prefix of the classification code (``"1"``:
        every base resource).  ``keyword`` matches the name, the summary or a
        data item's name, ignoring case.  ``status=None`` includes tombstones,
        which match no entry field criterion (share type, keyword).
        """
        needle = keyword.casefold() if keyword is not None else None
        found = []
        for record in self.records():
            if status is not None and record.status is not status:
                continue
            if code is not None and record.code != code:
                continue
            if provider is not None and record.provider != provider:
                continue
            if classification is not None and not record.classification.startswith(classification):
                continue
            if level is not None and NodeName.parse(record.provider).level is not level:
                continue
            if (share_type is not None or needle is not None) and not _entry_matches(
                record, share_type, needle
            ):
                continue
            found.append(record)
        found.sort(key=lambda r: (r.code, r.provider))
        return found

    # --- anti-entropy (SPEC §18.7) --------------------------------------------------

    def _digest(self, provider: str) -> ProviderDigest:
        cached = self._digests.get(provider)
        if cached is None:
            codes = self._records[provider]
            cached = provider_digest(
                Version(r.code, r.version, r.content_digest) for r in codes.values()
            )
            self._digests[provider] = cached
        return cached

    def _providers(self, include: Iterable[str]) -> dict[str, ProviderDigest]:
        return {p: self._digest(p) for p in include if self._records.get(p)}

    def summary(self, to: Neighbour | None = None) -> Summary:
        """Step 1: digests of what ``to`` may receive from this node (None: everything)."""
        return Summary.of(self._providers(p for p in self._records if self._may_send(to, p)))

    def diff(self, theirs: Summary, source: Neighbour | None = None) -> tuple[str, ...]:
        """Step 1, the puller's side: providers whose digests differ from ``source``'s."""
        accepted = [p for p in theirs.providers if self._may_take(source, p)]
        mine = self._providers(accepted)
        if theirs.top == Summary.of(mine).top:
            return ()
        return tuple(
            sorted(p for p in accepted if mine.get(p) != theirs.providers[p]),
        )

    def versions(
        self, providers: Iterable[str], to: Neighbour | None = None
    ) -> dict[str, tuple[Version, ...]]:
        """Step 2: the (code, version, content digest) lists of ``providers``."""
        listed = {}
        for provider in sorted(set(providers)):
            codes = self._records.get(provider)
            if codes and self._may_send(to, provider):
                listed[provider] = tuple(
                    Version(code, r.version, r.content_digest) for code, r in sorted(codes.items())
                )
        return listed

    def wanted(
        self, theirs: Mapping[str, Sequence[Version]], source: Neighbour | None = None
    ) -> tuple[Wanted, ...]:
        """Step 2, the puller's side: records it lacks, holds older, or has not seen conflict.

        An equal version with another content digest is fetched once, so the
        equivocation is detected and kept as evidence, not silently skipped.
        """
        wanted = []
        for provider, versions in sorted(theirs.items()):
            if not self._may_take(source, provider):
                continue
            codes = self._records.get(provider, {})
            for code, version, digest in versions:
                held = codes.get(code)
                if (
                    held is None
                    or version > held.version
                    or (
                        version == held.version
                        and digest != held.content_digest
                        and (provider, code, version, digest) not in self._conflicts
                    )
                ):
                    wanted.append(Wanted(provider, code, version))
        return tuple(sorted(wanted))

    def entries_for(self, wanted: Iterable[Wanted], to: Neighbour | None = None) -> list[bytes]:
        """Step 3: the signed records asked for, or newer ones where this node has them."""
        records = []
        for provider, code, version in sorted(set(wanted)):
            held = self.get(provider, code)
            if held is not None and held.version >= version and self._may_send(to, provider):
                records.append(held.data)
        return records

    def _may_send(self, to: Neighbour | None, provider: str) -> bool:
        return to is None or sends_to(self.me, to, provider)

    def _may_take(self, source: Neighbour | None, provider: str) -> bool:
        return source is None or accepts_from(source, provider)

    # --- persistence ------------------------------------------------------------------

    def encode(self) -> bytes:
        """Every record held and the equivocation evidence, as signed bytes, for the store."""
        return pack(
            [
                _SNAPSHOT_FORMAT,
                [record.data for record in self.records()],
                [[c.held.data, c.offered.data] for c in self._conflicts.values()],
            ]
        )

    @classmethod
    def restore(
        cls, data: bytes, me: NodeName | str, verifier: CatalogVerifier | None = None
    ) -> CatalogState:
        """Rebuild a state from ``encode``'s bytes; every record is decoded and checked again.

        Signatures were verified when the records were applied and the bytes
        come from the node's own store; pass a ``verifier`` to check them again.
        """
        what = "catalog.snapshot"
        value = unpack(data, what=what, max_size=len(data), max_array=max(len(data), 64))
        if type(value) is not list or len(value) != 3 or type(value[0]) is not int:
            raise MalformedError(what, "expected [format, records, conflicts]")
        if value[0] != _SNAPSHOT_FORMAT:
            raise UnsupportedVersionError(f"{what} format {value[0]} is not supported (only 1)")
        _, records, conflicts = value
        if type(records) is not list or type(conflicts) is not list:
            raise MalformedError(what, "records and conflicts must be arrays")
        read = decode_record if verifier is None else verifier.verify
        state = cls(me)
        for i, item in enumerate(records):
            if type(item) is not bytes:
                raise MalformedError(f"{what}.records[{i}]", "must be bytes")
            state.apply(read(item))
        for i, pair in enumerate(conflicts):
            if type(pair) is not list or len(pair) != 2 or not all(type(x) is bytes for x in pair):
                raise MalformedError(f"{what}.conflicts[{i}]", "expected [held, offered]")
            state._remember(Conflict(read(pair[0]), read(pair[1])))
        return state


def _entry_matches(record: CatalogRecord, share_type: ShareType | None, needle: str | None) -> bool:
    entry = record.entry
    if entry is None:
        return False
    if share_type is not None and entry.share_type is not share_type:
        return False
    if needle is None:
        return True
    texts = (entry.name, entry.summary, *(item.name for item in entry.data_items))
    return any(needle in text.casefold() for text in texts)
