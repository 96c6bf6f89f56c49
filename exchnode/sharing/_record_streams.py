"""Record numbering and its window, gap tracking, and grouping deliveries for the wire (pure).

Theory of operation
-------------------
The provider numbers the records of each resource 1, 2, 3, ... (one number
per publication, the same for every subscriber, draft §19.6):
:class:`RecordStream`.  It also keeps a **window** of the most recent raw
records of each resource (before projection), to answer ``sub.resend``:
at most ``window`` records *and* at most ``window_bytes`` bytes of encoded
records per resource, oldest dropped first (defaults 1024 records, 4 MiB).
A resend reaching below the window is told ``sub.gap`` (gap-unrecoverable).
Records before projection, so that a resend is projected and masked under
the grant exactly as the original push was -- but only the items some grant
live at publication allows (``SubscriptionBook.publish_many`` narrows them):
a grant is only ever asked to resend numbers from its ``first_seq`` on, so no
later grant can need an item that no grant had when the record was published,
and the provider keeps no item it has no reason to send.  In the stored state
each kept record is encrypted (AES-SIV under a key
derived from the masking secret, which is configuration, never state:
:class:`AtRestCipher`), so a copy of the store file does not hold them in clear.

A subscriber tracks per grant which numbers arrived (:class:`GapTracker`):
``high_water`` is the last number up to which nothing is missing, what
arrived beyond it is held until the gap closes, ``missing()`` is what to ask
for again, and ``give_up(to_seq)`` closes a gap the provider can no longer
fill.

:func:`group_deliveries` turns ``SubscriptionBook.publish`` results into
``sub.records`` bodies, one per distinct body: subscribers whose projected
records (and grant terms) are identical share one body, so a node can send
it in ONE multi-recipient envelope (one copy per link).  The body holds only
what every one of its recipients may see (``record_messages``): no
subscriber, request id, grant version or expiry.  Records masked with
``hash`` never group across grants, since each grant has its own hash key.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from exchnode.core import pack, require_canonical, unpack
from exchnode.errors import MalformedError, RejectedError, UsageError
from exchnode.sharing._codecs import MAX_CODE, MAX_ITEMS, text_codec
from exchnode.sharing._masking import Record, Value
from exchnode.sharing._persistence import (
    check_array,
    check_counter,
    check_list,
    check_time_ms,
    encode_row,
    open_row,
    open_state,
)
from exchnode.sharing._record_messages import (
    FINGERPRINT_LENGTH,
    MAX_RECORDS,
    MAX_RECORDS_BODY,
    RecordBatch,
    check_fields,
    fields_to_wire,
)

__all__ = [
    "DEFAULT_WINDOW",
    "DEFAULT_WINDOW_BYTES",
    "AtRestCipher",
    "GapTracker",
    "KeptRecord",
    "RecordDelivery",
    "RecordGroup",
    "RecordStream",
    "Seen",
    "group_deliveries",
]

# Any text: a stream counts whatever its owner names; the book names catalog codes.
_CODE = text_codec(MAX_CODE, empty=False).check
#: recipients of one envelope (the default ``core.Limits.max_recipients``, SPEC §4.3)
MAX_GROUP_RECIPIENTS = 1024
DEFAULT_WINDOW = 1024
DEFAULT_WINDOW_BYTES = 4 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordDelivery:
    """One record for one subscriber, projected and masked under its grant.

    ``provider`` and ``terms`` (the grant's terms fingerprint) are what
    :func:`group_deliveries` needs to build the wire form; ``publish`` sets them.
    """

    subscriber: str
    request_id: bytes
    resource_code: str
    seq: int
    fields: Mapping[str, Value]
    provider: str = ""
    terms: bytes = b""


class AtRestCipher:
    """Encryption at rest of what a node keeps of records: AES-SIV (RFC 5297), key from the secret.

    The resend window's records and the sharing service's outbox are stored
    with it, under a key derived from the masking secret (configuration,
    never state), so a copy of the store file does not hold them in clear.
    Deterministic, so a state's encoding stays canonical (the same state
    encodes to the same bytes) with no randomness passed in; what the value
    is (its purpose, and e.g. the resource code and number) is associated
    data, so a stored value cannot be moved to another place.  AES-SIV
    reveals only that two values sealed for the same place are equal.
    """

    __slots__ = ("_aead",)
    _INFO = b"exchnode/sharing/at-rest/v1"

    def __init__(self, secret: bytes) -> None:
        if type(secret) is not bytes or len(secret) < 16:
            raise UsageError("the key at rest comes from a secret of at least 16 bytes")
        key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=self._INFO).derive(secret)
        self._aead = AESSIV(key)

    def seal(self, purpose: bytes, plaintext: bytes, *place: bytes) -> bytes:
        return self._aead.encrypt(plaintext, [purpose, *place])

    def open(self, purpose: bytes, sealed: bytes, *place: bytes) -> bytes | None:
        """The plaintext, or None if it was not sealed here under this key (changed secret)."""
        try:
            return self._aead.decrypt(sealed, [purpose, *place])
        except InvalidTag:
            return None


def _window_place(resource_code: str, seq: int) -> tuple[bytes, bytes]:
    return resource_code.encode("utf-8"), seq.to_bytes(8, "big")


_WINDOW = b"resend-window"


class KeptRecord(NamedTuple):
    seq: int
    published_ms: int
    record: dict[str, Value]
    size: int


class RecordStream:
    """Provider side: record sequence numbers per resource, 1, 2, 3, ..., and the resend window.

    Per resource rather than per subscriber, so one publication is one number
    for everyone and a grant can say which record it starts with.
    """

    __slots__ = (
        "_bytes",
        "_cipher",
        "_dirty",
        "_kept",
        "_last",
        "dropped",
        "window",
        "window_bytes",
    )

    def __init__(
        self,
        last: Mapping[str, int] | None = None,
        *,
        window: int = DEFAULT_WINDOW,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
        cipher: AtRestCipher | None = None,
    ) -> None:
        """``cipher``: how kept records are encrypted in :meth:`to_wire` (None: in clear,
        for tests of the pure machine only; a node always passes one)."""
        if type(window) is not int or window < 0 or type(window_bytes) is not int:
            raise UsageError("a resend window is a non-negative number of records and bytes")
        self._cipher = cipher
        #: kept records a restore could not decrypt (the secret changed): dropped, so a
        #: resend of them is answered with ``sub.gap``
        self.dropped = 0
        self._last = dict(last or {})
        self.window = window
        self.window_bytes = window_bytes
        self._kept: dict[str, list[KeptRecord]] = {}
        self._bytes: dict[str, int] = {}
        #: rows changed since ``take_changes``: (code, 0) its counter, (code, seq) a window item
        self._dirty: set[tuple[str, int]] = set()

    def last(self, resource_code: str) -> int:
        return self._last.get(resource_code, 0)

    def assign(self, resource_code: str) -> int:
        seq = self.last(resource_code) + 1
        self._last[resource_code] = seq
        self._dirty.add((resource_code, 0))
        return seq

    def keep(self, resource_code: str, seq: int, record: Record, published_ms: int) -> None:
        """Hold record ``seq`` (raw, before projection) for resends, within the window."""
        fields = check_record(record, f"record {seq} of {resource_code}")
        self.keep_checked(resource_code, seq, fields, published_ms)

    def keep_checked(
        self, resource_code: str, seq: int, fields: dict[str, Value], published_ms: int
    ) -> None:
        """``keep`` for fields ``check_record`` has already passed."""
        size = len(pack(fields_to_wire(fields)))
        kept = self._kept.setdefault(resource_code, [])
        if kept and seq <= kept[-1].seq:
            raise UsageError(f"record {seq} of {resource_code} is not after {kept[-1].seq}")
        kept.append(KeptRecord(seq, published_ms, fields, size))
        self._bytes[resource_code] = self._bytes.get(resource_code, 0) + size
        self._dirty.add((resource_code, seq))
        self._trim(resource_code)

    def oldest(self, resource_code: str) -> int:
        """The lowest number still in the window; ``last + 1`` if the window is empty."""
        kept = self._kept.get(resource_code)
        return kept[0].seq if kept else self.last(resource_code) + 1

    def recent(self, resource_code: str, from_seq: int, to_seq: int) -> list[KeptRecord]:
        return [k for k in self._kept.get(resource_code, ()) if from_seq <= k.seq <= to_seq]

    def _trim(self, resource_code: str) -> None:
        kept = self._kept[resource_code]
        while kept and (len(kept) > self.window or self._bytes[resource_code] > self.window_bytes):
            dropped = kept.pop(0)
            self._bytes[resource_code] -= dropped.size
            self._dirty.add((resource_code, dropped.seq))

    # -- rows (subscription_persistence): a counter per resource, an item per kept record

    def take_changes(self) -> dict[str, bytes | None]:
        """The rows changed since the last call: one counter per resource numbered, one row per
        record kept or dropped from the window -- never a row per subscriber."""
        changes = {_row_name(code, seq): self._row(code, seq) for code, seq in self._dirty}
        self._dirty.clear()
        return changes

    def rows(self) -> dict[str, bytes]:
        rows = {_row_name(code, 0): encode_row(code, last) for code, last in self._last.items()}
        for code, kept in self._kept.items():
            for item in kept:
                rows[_row_name(code, item.seq)] = self._window_row(code, item)
        return rows

    def load_rows(self, rows: Iterable[tuple[str, bytes]], what: str) -> None:
        """Fill an empty stream from its rows (any order); kept records it cannot open under
        this secret are counted in ``dropped``, as in :meth:`from_wire`."""
        items: list[tuple[str, int, int, object, str]] = []
        for name, data in rows:
            at = f"{what}[{name!r}]"
            if name.startswith("last/"):
                code, last = open_row(data, at, 2)
                code = _CODE(code, f"{at}.code")
                if _row_name(code, 0) != name:
                    raise MalformedError(at, "row name and resource code disagree")
                self._last[code] = check_counter(last, f"{at}.seq")
            else:
                code, seq, published, sealed = open_row(data, at, 4)
                code = _CODE(code, f"{at}.code")
                seq = check_counter(seq, f"{at}.seq")
                if _row_name(code, seq) != name or seq == 0:
                    raise MalformedError(at, "row name, resource code and number disagree")
                items.append(
                    (code, seq, check_time_ms(published, f"{at}.published_ms"), sealed, at)
                )
        for code, seq, published, sealed, at in sorted(items, key=lambda item: item[:2]):
            if seq > self.last(code):
                raise MalformedError(f"{at}.seq", "passes the last number of its resource")
            fields = self._from_rest(code, seq, sealed, f"{at}.record")
            if fields is None:
                self.dropped += 1
                self._dirty.add((code, seq))
                continue
            self.keep_checked(code, seq, fields, published)
        # What remains to write are deletions: records a smaller window or another secret dropped.
        self._dirty = {(code, seq) for code, seq in self._dirty if self._row(code, seq) is None}

    def _row(self, code: str, seq: int) -> bytes | None:
        if seq == 0:
            return encode_row(code, self._last[code])
        kept = self._kept.get(code, [])
        at = bisect.bisect_left(kept, seq, key=lambda item: item.seq)
        if at < len(kept) and kept[at].seq == seq:
            return self._window_row(code, kept[at])
        return None  # dropped from the window

    def _window_row(self, code: str, item: KeptRecord) -> bytes:
        return encode_row(code, item.seq, item.published_ms, self._at_rest(code, item))

    # -- persistence

    def to_wire(self) -> list[Any]:
        return [
            [[code, last] for code, last in self._last.items()],
            [
                [code, [[k.seq, k.published_ms, self._at_rest(code, k)] for k in kept]]
                for code, kept in self._kept.items()
            ],
        ]

    def _at_rest(self, code: str, kept: KeptRecord) -> Any:
        fields = fields_to_wire(kept.record)
        if self._cipher is None:
            return fields
        return self._cipher.seal(_WINDOW, pack(fields), *_window_place(code, kept.seq))

    def _from_rest(self, code: str, seq: int, value: object, what: str) -> dict[str, Value] | None:
        """A kept record as stored: sealed bytes (any node), or in clear (an older state, or a
        stream without a cipher).  None if it cannot be opened under this secret."""
        if type(value) is not bytes:
            return check_fields(value, what)
        if self._cipher is None:
            raise MalformedError(what, "is encrypted, and this stream has no key")
        plaintext = self._cipher.open(_WINDOW, value, *_window_place(code, seq))
        if plaintext is None:
            return None
        try:
            raw = unpack(plaintext, what=what, max_size=MAX_RECORDS_BODY, max_array=MAX_ITEMS)
            return check_fields(raw, what)
        except RejectedError:
            return None

    def encode(self) -> bytes:
        return pack([1, *self.to_wire()])

    @classmethod
    def restore(
        cls,
        data: bytes,
        *,
        window: int = DEFAULT_WINDOW,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
        cipher: AtRestCipher | None = None,
    ) -> RecordStream:
        what = "record-stream"
        value = open_state(data, what, 2)
        stream = cls.from_wire(
            value[1:], what, window=window, window_bytes=window_bytes, cipher=cipher
        )
        require_canonical(value, data, what=what)
        return stream

    @classmethod
    def from_wire(
        cls,
        value: list[Any],
        what: str,
        *,
        window: int,
        window_bytes: int,
        cipher: AtRestCipher | None = None,
    ) -> RecordStream:
        counters, windows = value
        stream = cls(window=window, window_bytes=window_bytes, cipher=cipher)
        for i, (code, last) in enumerate(check_list(counters, f"{what}.last", _pair)):
            code = _CODE(code, f"{what}.last[{i}].code")
            stream._last[code] = check_counter(last, f"{what}.last[{i}].seq")
        for i, entry in enumerate(check_list(windows, f"{what}.window", _pair)):
            code = _CODE(entry[0], f"{what}.window[{i}].code")
            for j, kept in enumerate(check_list(entry[1], f"{what}.window[{i}]", _triple)):
                at = f"{what}.window[{i}][{j}]"
                seq = check_counter(kept[0], f"{at}.seq")
                published = check_time_ms(kept[1], f"{at}.published_ms")
                kept_before = stream._kept.get(code)
                if seq > stream.last(code) or (kept_before and seq <= kept_before[-1].seq):
                    raise MalformedError(f"{at}.seq", "must increase and not pass the last number")
                fields = stream._from_rest(code, seq, kept[2], f"{at}.record")
                if fields is None:
                    stream.dropped += 1
                    continue
                stream.keep_checked(code, seq, fields, published)
        stream._dirty.clear()
        return stream


def _row_name(code: str, seq: int) -> str:
    # The code in hex: a catalog code holds "/", and a row name must name one resource only.
    if seq == 0:
        return f"last/{code.encode('utf-8').hex()}"
    return f"window/{code.encode('utf-8').hex()}/{seq:016x}"


def _pair(value: object, what: str) -> list[Any]:
    return check_array(value, what, 2)


def _triple(value: object, what: str) -> list[Any]:
    return check_array(value, what, 3)


def check_record(record: object, what: str) -> dict[str, Value]:
    """A record as the wire carries it (data item names to values of its types), or a usage
    error naming ``what`` and the item."""
    if not isinstance(record, Mapping) or not all(type(item) is str for item in record):
        raise UsageError(f"{what}: a record maps data item names (text) to values")
    try:
        return check_fields(fields_to_wire(record), what)
    except MalformedError as exc:
        raise UsageError(str(exc)) from None


class Seen(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"


class GapTracker:
    """Subscriber side: which sequence numbers of one stream have arrived.

    ``high_water`` is the last number up to which nothing is missing; what
    arrived beyond it is held until the gap closes, so memory grows with
    records received out of order, not with the size of a gap.  After
    downtime, ``missing()`` is what to ask the provider to resend.
    """

    __slots__ = ("_ahead", "high_water")

    def __init__(self, after: int = 0) -> None:
        if type(after) is not int or after < 0:
            raise UsageError(f"a stream starts after a non-negative number, got {after!r}")
        self.high_water = after
        self._ahead: set[int] = set()

    def observe(self, seq: int) -> Seen:
        if type(seq) is not int or seq < 1:
            raise UsageError(f"sequence numbers start at 1, got {seq!r}")
        if seq <= self.high_water or seq in self._ahead:
            return Seen.DUPLICATE
        self._ahead.add(seq)
        self._advance()
        return Seen.NEW

    def missing(self) -> list[tuple[int, int]]:
        """Inclusive ranges not yet seen, below the highest number seen."""
        gaps = []
        expected = self.high_water + 1
        for seq in sorted(self._ahead):
            if seq > expected:
                gaps.append((expected, seq - 1))
            expected = seq + 1
        return gaps

    def give_up(self, to_seq: int) -> None:
        """Stop waiting for anything up to ``to_seq`` (the provider said ``sub.gap``)."""
        if type(to_seq) is not int or to_seq < 0:
            raise UsageError(f"sequence numbers are non-negative, got {to_seq!r}")
        if to_seq <= self.high_water:
            return
        self.high_water = to_seq
        self._ahead = {seq for seq in self._ahead if seq > to_seq}
        self._advance()

    def _advance(self) -> None:
        while self.high_water + 1 in self._ahead:
            self.high_water += 1
            self._ahead.remove(self.high_water)

    # -- persistence

    def to_wire(self) -> list[Any]:
        return [self.high_water, sorted(self._ahead)]

    def encode(self) -> bytes:
        return pack([1, *self.to_wire()])

    @classmethod
    def restore(cls, data: bytes) -> GapTracker:
        what = "gap-tracker"
        value = open_state(data, what, 2)
        tracker = cls.from_wire(value[1:], what)
        require_canonical(value, data, what=what)
        return tracker

    @classmethod
    def from_wire(cls, value: list[Any], what: str) -> GapTracker:
        tracker = cls(check_counter(value[0], f"{what}.high_water"))
        ahead = check_list(value[1], f"{what}.ahead", check_counter)
        if ahead != sorted(set(ahead)) or (ahead and ahead[0] <= tracker.high_water + 1):
            raise MalformedError(f"{what}.ahead", "must be sorted, unique, above high_water + 1")
        tracker._ahead = set(ahead)
        return tracker


class RecordGroup(NamedTuple):
    """One ``sub.records`` body and everyone it goes to, in one envelope."""

    recipients: tuple[str, ...]  # sorted, each once
    request_ids: tuple[bytes, ...]  # the grants it is sent under, for the sender's own books
    payload: bytes

    @property
    def kind(self) -> str:
        return RecordBatch.KIND


def group_deliveries(
    deliveries: Iterable[RecordDelivery],
    *,
    max_body: int = MAX_RECORDS_BODY,
    max_recipients: int = MAX_GROUP_RECIPIENTS,
) -> list[RecordGroup]:
    """``sub.records`` bodies for ``deliveries``, one per distinct body, with their recipients.

    Per grant, its records are sorted by number and cut into bodies of at
    most :data:`MAX_RECORDS` records and ``max_body`` bytes, by one rule, so
    that grants whose records are identical produce identical bodies; those
    are then sent once, to all their subscribers -- in groups of at most
    ``max_recipients`` (an envelope's limit, SPEC §4.3), so that any number
    of subscribers with the same terms all receive.  The body depends only on
    provider, resource, grant terms and the projected records, never on who
    receives it.  The order of the result follows the first delivery of each.
    """
    if not 0 < max_body <= MAX_RECORDS_BODY:
        raise UsageError(f"a sub.records body is at most {MAX_RECORDS_BODY} bytes")
    if not 0 < max_recipients <= MAX_GROUP_RECIPIENTS:
        raise UsageError(f"an envelope has 1..{MAX_GROUP_RECIPIENTS} recipients")
    per_grant: dict[bytes, list[RecordDelivery]] = {}
    for delivery in deliveries:
        if not delivery.provider or len(delivery.terms) != FINGERPRINT_LENGTH:
            raise UsageError("a delivery names its provider and grant terms (from publish)")
        per_grant.setdefault(delivery.request_id, []).append(delivery)
    groups: dict[bytes, dict[str, list[bytes]]] = {}  # body -> subscriber -> its grants
    # Grants with the same terms and the same projected records get the same bodies: made
    # once, so publishing to S subscribers costs one encoding per distinct body, not S.
    made: dict[tuple[str, str, bytes, bytes], list[bytes]] = {}
    for request_id, items in per_grant.items():
        first = items[0]
        for other in items:
            if (other.subscriber, other.provider, other.resource_code, other.terms) != (
                first.subscriber,
                first.provider,
                first.resource_code,
                first.terms,
            ):
                raise UsageError(f"deliveries under grant {request_id.hex()} disagree")
        records = sorted(((d.seq, d.fields) for d in items), key=lambda pair: pair[0])
        same = (
            first.provider,
            first.resource_code,
            first.terms,
            pack([[seq, fields_to_wire(fields)] for seq, fields in records]),
        )
        bodies = made.get(same)
        if bodies is None:
            bodies = made[same] = _bodies(first, records, max_body)
        for payload in bodies:
            groups.setdefault(payload, {}).setdefault(first.subscriber, []).append(request_id)
    out = []
    for payload, by_subscriber in groups.items():
        subscribers = sorted(by_subscriber)
        for start in range(0, len(subscribers), max_recipients):
            chunk = subscribers[start : start + max_recipients]
            request_ids = tuple(r for s in chunk for r in by_subscriber[s])
            out.append(RecordGroup(tuple(chunk), request_ids, payload))
    return out


def _bodies(
    first: RecordDelivery, records: list[tuple[int, Mapping[str, Value]]], max_body: int
) -> list[bytes]:
    # Sizes are summed rather than re-encoded per record: a msgpack array is its
    # header (1 byte below 16 elements, 3 below 65536) followed by its elements.
    empty = RecordBatch.__new__(RecordBatch)
    for name, value in (
        ("provider", first.provider),
        ("resource_code", first.resource_code),
        ("terms", first.terms),
        ("records", ()),
    ):
        object.__setattr__(empty, name, value)
    head = len(pack(empty.to_wire())) - 1  # without the empty records array's 1-byte header
    chunks: list[list[tuple[int, Mapping[str, Value]]]] = [[]]
    size = 0
    for seq, fields in records:
        entry = len(pack([seq, fields_to_wire(fields)]))
        if head + 3 + entry > max_body:
            raise UsageError(f"record {seq} alone exceeds the body limit of {max_body} bytes")
        chunk = chunks[-1]
        if chunk and seq == chunk[-1][0]:
            raise UsageError(f"record {seq} delivered twice under one grant")
        if chunk and (len(chunk) >= MAX_RECORDS or head + 3 + size + entry > max_body):
            chunk = []
            chunks.append(chunk)
            size = 0
        chunk.append((seq, fields))
        size += entry
    return [
        RecordBatch(
            provider=first.provider,
            resource_code=first.resource_code,
            terms=first.terms,
            records=tuple(chunk),
        ).encode()
        for chunk in chunks
        if chunk
    ]
