"""The wire forms of catalog format 2: feed pages and lookups up the tree (SPEC §18.10-§18.12).

Theory of operation
-------------------
Format 1 (§18.7, ``_sync``) compares whole summaries and lists every record
version of a provider that differs; its lists are capped at 65,536, and a
national catalog exceeds that.  Format 2 replaces it between neighbours of the
new version with two exchanges whose size follows what changed or what was
asked, never what a node holds:

* **Feed pages.**  A hub pulls its child's *feed*: every change of a record in
  the child's subtree has the next number of the child's
  :class:`~exchnode.federation.ChangeFeed`; the hub asks for the changes after
  its position and gets the signed records in pages.  One changed entry costs
  one page of one record on each link it climbs.
* **Lookups.**  Whatever lies outside a node's subtree it asks its parent for:
  (provider, code, version held) triples -- the records newer than the version
  held come back, so the same message refreshes what a node uses -- and an
  optional search query.  Each hub answers from its subtree (and from what it
  caches of what lies above) and asks its own parent for the rest.

Every answer carries provider-signed records (§18.3): the asker verifies each
one as always, so neither pages nor answers are signed by the relay.  Every
list has a stated bound that holds whatever the catalog's size; a longer list
is paged by the sender.  Decoders name the failing field and raise only
``RejectedError`` subclasses.

    feed-request = [2, feed: bin(0|16), seq: uint, listing: bool, limit: uint]
    feed-page    = [2, reset: bool, feed: bin(16), seq: uint, more: bool, [record: bin, ...]]
    lookup       = [2, [[provider, code, version], ...], query | nil]
    query        = [scope, code | nil, provider | nil, classification | nil,
                    share_type | nil, keyword | nil, level | nil, status | nil,
                    after: [code, provider] | nil, limit: uint]
    answer       = [2, complete: bool, more: bool, [record: bin, ...]]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from exchnode.catalog._entry import (
    MAX_RECORD_BYTES,
    ShareType,
    Status,
    check_code,
    check_provider,
    check_version,
)
from exchnode.catalog._sync import Wanted, check_array
from exchnode.core import Level, framed_fields, pack, require_canonical, unpack
from exchnode.errors import MalformedError, TooLargeError
from exchnode.federation import FEED_ID_BYTES, FeedPosition, check_feed_position

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_KEYWORD_CHARS",
    "MAX_LOOKUP_KEYS",
    "MAX_PAGE_RECORDS",
    "MAX_SEARCH_LIMIT",
    "PAGES_FORMAT",
    "CatalogQuery",
    "FeedRequest",
    "LookupAnswer",
    "LookupRequest",
    "RecordPage",
]

PAGES_FORMAT = 2
#: Records in one feed page or lookup answer; a sender pages beyond it.
MAX_PAGE_RECORDS = 1024
#: Bytes of the records of one page or answer (a record alone may be 1 MiB).
MAX_ANSWER_BYTES = 8 * 1024 * 1024
#: (provider, code, version) triples in one lookup; a node pages what it uses beyond it.
MAX_LOOKUP_KEYS = 4096
#: Results one search answer may ask for.
MAX_SEARCH_LIMIT = 1000
MAX_KEYWORD_CHARS = 128
_MAX_MESSAGE = MAX_ANSWER_BYTES + 64 * 1024
_SCOPE = re.compile(r"[0-9]{0,6}\Z")
_CLASSIFICATION_PREFIX = re.compile(r"[0-9]{1,15}\Z")


@dataclass(frozen=True, slots=True)
class CatalogQuery:
    """A search (SPEC §18.8) over the providers under a division prefix ``scope``.

    ``scope`` is a prefix of division codes: ``""`` the nation, ``"52"`` a
    province, ``"520102"`` one county.  ``after`` pages: results sort by
    (code, provider) and an answer starts after that pair.
    """

    scope: str = ""
    code: str | None = None
    provider: str | None = None
    classification: str | None = None
    share_type: ShareType | None = None
    keyword: str | None = None
    level: Level | None = None
    status: Status | None = Status.PUBLISHED
    after: tuple[str, str] | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        _check_query(self, "catalog.query")

    def wire(self) -> list[Any]:
        return [
            self.scope,
            self.code,
            self.provider,
            self.classification,
            None if self.share_type is None else self.share_type.value,
            self.keyword,
            None if self.level is None else self.level.name.lower(),
            None if self.status is None else self.status.value,
            None if self.after is None else list(self.after),
            self.limit,
        ]

    @classmethod
    def from_wire(cls, value: object, what: str) -> CatalogQuery:
        fields = _shaped(
            value,
            what,
            10,
            "[scope, code, provider, classification, share_type, "
            "keyword, level, status, after, limit]",
        )
        scope, code, provider, classification, share, keyword, level, status, after, limit = fields
        if after is not None:
            pair = _shaped(after, f"{what}.after", 2, "[code, provider]")
            after = (
                check_code(pair[0], f"{what}.after.code"),
                check_provider(pair[1], f"{what}.after.provider"),
            )
        for name, text in (
            ("scope", scope),
            ("keyword", keyword),
            ("classification", classification),
        ):
            if text is not None and type(text) is not str:
                raise MalformedError(f"{what}.{name}", "must be a string or nil")
        return cls(
            scope=scope if type(scope) is str else _bad(f"{what}.scope", "must be a string"),
            code=None if code is None else check_code(code, f"{what}.code"),
            provider=None if provider is None else check_provider(provider, f"{what}.provider"),
            classification=classification,
            share_type=_enum(share, ShareType, f"{what}.share_type"),
            keyword=keyword,
            level=_level(level, f"{what}.level"),
            status=_enum(status, Status, f"{what}.status"),
            after=after,
            limit=limit if type(limit) is int else _bad(f"{what}.limit", "must be an integer"),
        )


def _check_query(query: CatalogQuery, what: str) -> None:
    # The same rules for a query built locally and one decoded: a bad one is malformed.
    if type(query.scope) is not str or not _SCOPE.match(query.scope):
        raise MalformedError(f"{what}.scope", "must be 0-6 digits (a division code prefix)")
    if query.code is not None:
        check_code(query.code, f"{what}.code")
    if query.provider is not None:
        check_provider(query.provider, f"{what}.provider")
    if query.classification is not None and not _CLASSIFICATION_PREFIX.match(query.classification):
        raise MalformedError(f"{what}.classification", "must be 1-15 digits")
    if query.keyword is not None and not 1 <= len(query.keyword) <= MAX_KEYWORD_CHARS:
        raise MalformedError(f"{what}.keyword", f"must be 1-{MAX_KEYWORD_CHARS} characters")
    if query.status is not None and not query.status.travels:
        raise MalformedError(f"{what}.status", "must be published or withdrawn")
    if type(query.limit) is not int or not 1 <= query.limit <= MAX_SEARCH_LIMIT:
        raise MalformedError(f"{what}.limit", f"must be an integer in 1..{MAX_SEARCH_LIMIT}")


def _bad(field: str, rule: str) -> Any:
    raise MalformedError(field, rule)


def _enum(value: object, kind: type[ShareType] | type[Status], field: str) -> Any:
    if value is None:
        return None
    for member in kind:
        if member.value == value:
            return member
    raise MalformedError(field, f"must be nil or one of {' '.join(str(m.value) for m in kind)}")


def _level(value: object, field: str) -> Level | None:
    if value is None:
        return None
    for level in Level:
        if level.name.lower() == value:
            return level
    raise MalformedError(field, "must be nil or one of national province city county")


# --- feeds (SPEC §18.11) -------------------------------------------------------------


class FeedRequest(NamedTuple):
    """A puller's ask: the changes after ``position`` (None: from the start), at most ``limit``."""

    position: FeedPosition | None
    listing: bool
    limit: int = MAX_PAGE_RECORDS

    def encode(self) -> bytes:
        feed, seq = self.position if self.position is not None else (b"", 0)
        return pack([PAGES_FORMAT, feed, seq, self.listing, self.limit])

    @classmethod
    def decode(cls, data: bytes) -> FeedRequest:
        what = "catalog.feed-request"
        feed, seq, listing, limit = _framed(data, what, 4, max_size=256)
        position = check_feed_position(feed, seq, what)
        if type(listing) is not bool:
            raise MalformedError(f"{what}.listing", "must be a boolean")
        if type(limit) is not int or not 1 <= limit <= MAX_PAGE_RECORDS:
            raise MalformedError(f"{what}.limit", f"must be an integer in 1..{MAX_PAGE_RECORDS}")
        require_canonical([PAGES_FORMAT, feed, seq, listing, limit], data, what=what)
        return cls(None if not position.feed else position, listing, limit)


class RecordPage(NamedTuple):
    """One page of a feed: the signed records changed after the asker's position."""

    reset: bool
    next: FeedPosition
    more: bool
    records: tuple[bytes, ...]

    def encode(self) -> bytes:
        return pack(
            [PAGES_FORMAT, self.reset, self.next.feed, self.next.seq, self.more, list(self.records)]
        )

    @classmethod
    def decode(cls, data: bytes) -> RecordPage:
        what = "catalog.feed-page"
        reset, feed, seq, more, records = _framed(data, what, 5)
        for name, flag in (("reset", reset), ("more", more)):
            if type(flag) is not bool:
                raise MalformedError(f"{what}.{name}", "must be a boolean")
        position = check_feed_position(feed, seq, what)
        if len(position.feed) != FEED_ID_BYTES:
            raise MalformedError(f"{what}.feed", f"must be {FEED_ID_BYTES} bytes")
        listed = _records(records, f"{what}.records")
        require_canonical([PAGES_FORMAT, reset, feed, seq, more, records], data, what=what)
        return cls(reset, position, more, listed)


# --- lookups (SPEC §18.12) -----------------------------------------------------------


class LookupRequest(NamedTuple):
    """Records asked of a parent: (provider, code, version held; 0 for none), and a search."""

    keys: tuple[Wanted, ...]
    query: CatalogQuery | None = None

    def encode(self) -> bytes:
        keys = [list(k) for k in sorted(set(self.keys))]
        return pack([PAGES_FORMAT, keys, None if self.query is None else self.query.wire()])

    @classmethod
    def decode(cls, data: bytes) -> LookupRequest:
        what = "catalog.lookup"
        keys, query = _framed(data, what, 2, max_size=1 << 20)
        listed = check_array(keys, f"{what}.keys")
        if len(listed) > MAX_LOOKUP_KEYS:
            raise TooLargeError(f"{what}.keys", f"more than {MAX_LOOKUP_KEYS} keys")
        wanted: list[Wanted] = []
        for i, item in enumerate(listed):
            field = f"{what}.keys[{i}]"
            provider, code, version = _shaped(item, field, 3, "[provider, code, version]")
            check_provider(provider, f"{field}.provider")
            check_code(code, f"{field}.code")
            if version != 0:
                check_version(version, f"{field}.version")
            one = Wanted(provider, code, version)
            if wanted and one <= wanted[-1]:
                raise MalformedError(field, "keys must be sorted and unique")
            wanted.append(one)
        parsed = None if query is None else CatalogQuery.from_wire(query, f"{what}.query")
        require_canonical([PAGES_FORMAT, keys, query], data, what=what)
        return cls(tuple(wanted), parsed)


class LookupAnswer(NamedTuple):
    """Signed records answering a lookup.

    ``complete`` is False when a hub above could not be asked in time (or
    speaks only format 1): what is missing may exist.  ``more``: the search had
    more results than its limit; ask again with ``after``.
    """

    complete: bool
    more: bool
    records: tuple[bytes, ...]

    def encode(self) -> bytes:
        return pack([PAGES_FORMAT, self.complete, self.more, list(self.records)])

    @classmethod
    def decode(cls, data: bytes) -> LookupAnswer:
        what = "catalog.answer"
        complete, more, records = _framed(data, what, 3)
        for name, flag in (("complete", complete), ("more", more)):
            if type(flag) is not bool:
                raise MalformedError(f"{what}.{name}", "must be a boolean")
        listed = _records(records, f"{what}.records")
        require_canonical([PAGES_FORMAT, complete, more, records], data, what=what)
        return cls(complete, more, listed)


def fit_records(records: Iterable[bytes], limit: int = MAX_PAGE_RECORDS) -> list[bytes]:
    """The leading records that fit one page: at most ``limit`` and ``MAX_ANSWER_BYTES``.

    The first record always fits (one is at most 1 MiB), so paging advances.
    """
    fitted: list[bytes] = []
    size = 0
    for record in records:
        if len(fitted) == limit or (fitted and size + len(record) > MAX_ANSWER_BYTES):
            break
        fitted.append(record)
        size += len(record)
    return fitted


# --- shapes -------------------------------------------------------------------------


def _framed(data: bytes, what: str, fields: int, *, max_size: int = _MAX_MESSAGE) -> list[Any]:
    value = unpack(
        data, what=what, max_size=max_size, max_array=max(MAX_PAGE_RECORDS, MAX_LOOKUP_KEYS) + 1
    )
    return framed_fields(value, what, fields, PAGES_FORMAT)


def _records(value: object, what: str) -> tuple[bytes, ...]:
    records = check_array(value, what)
    if len(records) > MAX_PAGE_RECORDS:
        raise TooLargeError(what, f"more than {MAX_PAGE_RECORDS} records")
    for i, record in enumerate(records):
        if type(record) is not bytes or not record or len(record) > MAX_RECORD_BYTES:
            raise MalformedError(f"{what}[{i}]", f"must be 1..{MAX_RECORD_BYTES} bytes")
    return tuple(records)


def _shaped(value: object, field: str, count: int, shape: str) -> Sequence[Any]:
    if type(value) is not list or len(value) != count:
        raise MalformedError(field, f"expected {shape}")
    return value
