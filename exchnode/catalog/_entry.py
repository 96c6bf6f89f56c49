"""Catalog entries and their signed records (政务信息资源目录, SPEC §18).

Theory of operation
-------------------
Every department lists the data resources it holds; the catalog must be the
same, and authoritative, at every level.  Authority comes from one rule, "one
source per datum" (一数一源): only the provider of a resource publishes,
changes or withdraws its entry.  So an entry travels as a **record signed by
its provider node**, and hubs relay records without being able to alter them
(``bad-signature``) or pass them off as their own (``not-the-provider``).

Records reuse the envelope's framing and batch signatures (SPEC §5.1, §6)
with item type 3: a provider publishing 500 entries signs one Merkle root.

    record = [format=1, type=3, body: bin, seal]
    body   = [suite, signer, signer_key_id, provider, code, version,
              issued_ms, status, detail]
    detail = entry fields (status "published") | reason: str ("withdrawn")

``version`` is chosen by the provider and grows with every change of one
(provider, code); the merge rules live in ``catalog_state``.  A withdrawal is
a record too -- a **tombstone** with a reason -- so it propagates like an
update and outranks every older copy still travelling.

The entry's fields are the national guide's core fields (发改高技〔2017〕1272号,
summarised in DOMAIN.md).  Every rule is checked in one place,
:func:`_check_entry`, whether the entry was built by the provider's
application (:class:`~exchnode.errors.InvalidCatalogEntryError`, a usage
error) or decoded from the wire (``MalformedError``, a rejection); both name
the field by the same path (``catalog.data_items[3].type``) and state the rule.

The life cycle draft → registered → reviewed → published ⇄ withdrawn is a
transition table (:data:`TRANSITIONS`); only the last two states travel.
Nothing here reads a clock or does I/O: ``now`` is an argument.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple, TypeVar

from exchnode.core import (
    KEY_ID_LENGTH,
    SUITE_X25519_AES256GCM_ED25519,
    TYPE_CATALOG,
    Directory,
    LocalIdentity,
    NodeName,
    SealVerifier,
    check_bytes,
    check_suite,
    check_time,
    decode_signed,
    encode_signed,
    pack,
    require_canonical,
    sign_leaves,
    signed_leaf,
    unpack,
)
from exchnode.errors import (
    InvalidCatalogEntryError,
    InvalidNameError,
    MalformedError,
    NotTheProviderError,
    UsageError,
)

__all__ = [
    "CONTENT_LABEL",
    "MAX_RECORD_BYTES",
    "TRANSITIONS",
    "CatalogEntry",
    "CatalogRecord",
    "CatalogVerifier",
    "Classification",
    "DataItem",
    "DataType",
    "Openness",
    "Publication",
    "ResourceClass",
    "ResourceFormat",
    "ShareMethod",
    "ShareType",
    "Status",
    "UpdateCycle",
    "Withdrawal",
    "advance",
    "decode_record",
    "sign_records",
]

MAX_RECORD_BYTES = 1 << 20
MAX_VERSION = (1 << 53) - 1
CONTENT_LABEL = b"exchnode/v1 catalog content\x00"
MAX_DATA_ITEMS = 500
MAX_RELATED = 64
_BODY_FIELDS = 9
_DETAIL_FIELDS = 14
_ITEM_FIELDS = 3
_MAX_ARRAY = MAX_DATA_ITEMS

# (field, maximum characters); every text field is bounded so a record is too.
_NAME_CHARS = 128
_SUMMARY_CHARS = 2000
_CONDITIONS_CHARS = 2000
_OPEN_CHARS = 1000
_ITEM_NAME_CHARS = 64
_ITEM_DESCRIPTION_CHARS = 256
_REASON_CHARS = 1000

# Class (1 digit: 1 base, 2 theme, 3 department), item (2 digits, 01-99),
# heading (3 digits, 001-999), optional sub-heading (up to 9 digits); then
# "/" and a sequence number (the guide commonly uses 6 digits).
_CLASSIFICATION = re.compile(
    r"([1-3])(0[1-9]|[1-9][0-9])(00[1-9]|0[1-9][0-9]|[1-9][0-9]{2})([0-9]{0,9})\Z"
)
_CODE = re.compile(r"([0-9]{6,15})/([0-9]{1,12})\Z")
_PROVIDER_CODE = re.compile(r"[0-9A-Z][0-9A-Z-]{0,31}\Z")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_CLASSIFICATION_RULE = (
    "must be class (1 base, 2 theme, 3 department), item (2 digits, 01-99), heading "
    "(3 digits, 001-999) and an optional sub-heading of up to 9 digits"
)
_CODE_RULE = "must be <classification code>/<sequence of 1-12 digits>"


# --- vocabularies -------------------------------------------------------------------


class ResourceClass(enum.IntEnum):
    """信息资源分类: the first digit of a classification code."""

    BASE = 1  # 基础: population, legal persons, geospatial, macro-economy, e-licences
    THEME = 2  # 主题: health, social security, food safety, credit, …
    DEPARTMENT = 3  # 部门


class ResourceFormat(enum.Enum):
    DATABASE = "database"
    FILE = "file"
    SPREADSHEET = "spreadsheet"
    IMAGE = "image"
    STREAM = "stream"
    SELF_DESCRIBING = "self_describing"  # JSON, XML
    OTHER = "other"


class DataType(enum.Enum):
    """The guide's data item types, by their one-letter codes."""

    CHARACTER = "C"
    NUMBER = "N"
    CURRENCY = "Y"
    DATE = "D"
    DATETIME = "T"
    LOGICAL = "L"
    MEMO = "M"
    GRAPHIC = "G"
    BINARY = "B"
    INTEGER = "I"
    FLOAT = "F"


class ShareType(enum.Enum):
    UNCONDITIONAL = "unconditional"  # 无条件共享
    CONDITIONAL = "conditional"  # 有条件共享
    NOT_SHARED = "not_shared"  # 不予共享


class ShareMethod(enum.Enum):
    """共享方式: through the platform in principle; mail or media only where forced."""

    SUBSCRIPTION_PUSH = "subscription_push"
    QUERY_INTERFACE = "query_interface"
    DATABASE_EXCHANGE = "database_exchange"
    FILE_TRANSFER = "file_transfer"
    MAIL = "mail"
    PHYSICAL_MEDIA = "physical_media"


class Openness(enum.Enum):
    """开放属性: whether the resource is opened to society."""

    NOT_OPEN = "not_open"
    OPEN = "open"
    CONDITIONAL = "conditional"


class UpdateCycle(enum.Enum):
    REAL_TIME = "real_time"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"
    IRREGULAR = "irregular"


class Status(enum.Enum):
    """An entry's life cycle.  Only PUBLISHED and WITHDRAWN travel (SPEC §18.3)."""

    DRAFT = "draft"
    REGISTERED = "registered"
    REVIEWED = "reviewed"
    PUBLISHED = "published"
    WITHDRAWN = "withdrawn"

    @property
    def travels(self) -> bool:
        return self in (Status.PUBLISHED, Status.WITHDRAWN)


# A review may send an entry back to draft; a withdrawn entry may be published
# again (as a newer version).  Anything not in the table is refused.
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset({Status.REGISTERED}),
    Status.REGISTERED: frozenset({Status.REVIEWED, Status.DRAFT}),
    Status.REVIEWED: frozenset({Status.PUBLISHED, Status.DRAFT}),
    Status.PUBLISHED: frozenset({Status.WITHDRAWN}),
    Status.WITHDRAWN: frozenset({Status.PUBLISHED}),
}


def advance(current: Status, target: Status) -> Status:
    """The next life-cycle status, or a ``UsageError`` naming the allowed ones."""
    allowed = TRANSITIONS[current]
    if target not in allowed:
        names = ", ".join(sorted(status.value for status in allowed))
        raise UsageError(
            f"a catalog entry cannot go from {current.value} to {target.value} (only to {names})"
        )
    return target


# --- values -------------------------------------------------------------------------


class Classification(NamedTuple):
    """A parsed classification code (类 / 项 / 目 / 细目)."""

    resource_class: ResourceClass
    item: str
    heading: str
    sub_heading: str

    @classmethod
    def parse(cls, code: str, field: str = "catalog.classification") -> Classification:
        match = _CLASSIFICATION.match(code) if type(code) is str else None
        if match is None:
            raise MalformedError(field, _CLASSIFICATION_RULE)
        klass, item, heading, sub_heading = match.groups()
        return cls(ResourceClass(int(klass)), item, heading, sub_heading)

    def __str__(self) -> str:
        return f"{self.resource_class.value}{self.item}{self.heading}{self.sub_heading}"


@dataclass(frozen=True, slots=True)
class DataItem:
    """信息项: one field of the resource."""

    name: str
    type: DataType
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogEntry:
    """One resource as its provider describes it.  Checked when built (SPEC §18.2)."""

    provider: str
    code: str
    classification: str
    name: str
    provider_code: str
    summary: str
    format: ResourceFormat
    data_items: tuple[DataItem, ...] = ()
    share_type: ShareType
    share_conditions: str = ""
    share_methods: frozenset[ShareMethod] = frozenset()
    openness: Openness = Openness.NOT_OPEN
    open_conditions: str = ""
    update_cycle: UpdateCycle
    publish_date: date
    related: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # Accept any iterable from the application; hold the canonical containers.
        for name, kind in (("data_items", tuple), ("share_methods", frozenset)):
            value = getattr(self, name)
            if isinstance(value, list | tuple | set | frozenset) and type(value) is not kind:
                object.__setattr__(self, name, kind(value))
        if isinstance(self.related, list | tuple | set):
            object.__setattr__(self, "related", frozenset(self.related))
        try:
            _check_entry(self)
        except MalformedError as exc:
            raise InvalidCatalogEntryError(exc.field, exc.problem) from None

    @property
    def resource_class(self) -> ResourceClass:
        return Classification.parse(self.classification).resource_class

    def detail(self) -> list[object]:
        """The entry's fields after provider and code, as the body carries them."""
        return [
            self.classification,
            self.name,
            self.provider_code,
            self.summary,
            self.format.value,
            [[item.name, item.type.value, item.description] for item in self.data_items],
            self.share_type.value,
            self.share_conditions,
            sorted(method.value for method in self.share_methods),
            self.openness.value,
            self.open_conditions,
            self.update_cycle.value,
            self.publish_date.isoformat(),
            sorted(self.related),
        ]


@dataclass(frozen=True, slots=True)
class Publication:
    """A change to sign: publish (or update) ``entry`` as ``version``."""

    entry: CatalogEntry
    version: int


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A change to sign: withdraw resource ``code`` as ``version`` (a tombstone)."""

    code: str
    version: int
    reason: str


@dataclass(frozen=True, slots=True)
class CatalogRecord:
    """A decoded signed record; ``data`` is the exact signed item, to store and forward.

    ``digest`` names these bytes (the Merkle leaf).  ``content_digest`` names
    what the provider said -- provider, code, version, status and detail,
    not when or with which key it signed -- so two signatures of the same
    version are the same record, and two different ones are equivocation.
    """

    provider: str
    code: str
    version: int
    issued_ms: int
    status: Status
    entry: CatalogEntry | None
    reason: str
    signer: str
    signer_key_id: bytes
    suite: int
    digest: bytes
    content_digest: bytes
    data: bytes = b""

    @property
    def withdrawn(self) -> bool:
        return self.status is Status.WITHDRAWN

    @property
    def classification(self) -> str:
        """The code's classification part: known for tombstones too."""
        return self.code.partition("/")[0]

    def describe(self) -> str:
        return f"catalog record {self.provider} {self.code} v{self.version}"


# --- the rules (SPEC §18.2) ---------------------------------------------------------


def _text(value: object, field: str, limit: int, *, required: bool, lines: bool = False) -> str:
    if type(value) is not str:
        raise MalformedError(field, "must be a string")
    if len(value) > limit:
        raise MalformedError(field, f"must be at most {limit} characters")
    if required and not value.strip():
        raise MalformedError(field, "is required")
    allowed = "\n\t" if lines else ""
    for char in value:
        if (char < " " or "\x7f" <= char < "\xa0" or "\ud800" <= char <= "\udfff") and (
            char not in allowed
        ):
            kind = "control characters" if lines else "line breaks or control characters"
            raise MalformedError(field, f"must not contain {kind} ({char!r})")
    return value


def check_provider(value: object, field: str) -> str:
    if type(value) is not str:
        raise MalformedError(field, "must be a string")
    try:
        name = NodeName.parse(value)
    except InvalidNameError as exc:
        raise MalformedError(field, str(exc)) from None
    if name.is_hub:
        raise MalformedError(
            field, "must be a department node (<division>.<department>): hubs provide no data"
        )
    return value


def check_code(value: object, field: str) -> str:
    if type(value) is not str or not _CODE.match(value):
        raise MalformedError(field, _CODE_RULE)
    Classification.parse(value.partition("/")[0], field)
    return value


def check_version(value: object, field: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_VERSION:
        raise MalformedError(field, f"must be an integer in 1..{MAX_VERSION}")
    return value


def _check_entry(entry: CatalogEntry) -> None:
    """Every rule of an entry, in wire order, so the first failure is the same everywhere."""
    check_provider(entry.provider, "catalog.provider")
    check_code(entry.code, "catalog.code")
    Classification.parse(entry.classification)
    if entry.code.partition("/")[0] != entry.classification:
        raise MalformedError("catalog.code", "must begin with the entry's classification code")
    _text(entry.name, "catalog.name", _NAME_CHARS, required=True)
    if type(entry.provider_code) is not str or not _PROVIDER_CODE.match(entry.provider_code):
        raise MalformedError(
            "catalog.provider_code",
            "must be 1-32 characters of 0-9, A-Z and '-' (an organisation code)",
        )
    _text(entry.summary, "catalog.summary", _SUMMARY_CHARS, required=True, lines=True)
    _member(entry.format, ResourceFormat, "catalog.format")
    _check_items(entry.data_items)
    _member(entry.share_type, ShareType, "catalog.share_type")
    _check_sharing(entry)
    _member(entry.openness, Openness, "catalog.openness")
    _text(entry.open_conditions, "catalog.open_conditions", _OPEN_CHARS, required=False, lines=True)
    if entry.openness is Openness.CONDITIONAL and not entry.open_conditions.strip():
        raise MalformedError("catalog.open_conditions", "is required when openness is conditional")
    _member(entry.update_cycle, UpdateCycle, "catalog.update_cycle")
    if type(entry.publish_date) is not date:
        raise MalformedError("catalog.publish_date", "must be a date (YYYY-MM-DD)")
    _check_related(entry)


_E = TypeVar("_E", bound=enum.Enum)


def _choices(kind: type[enum.Enum]) -> str:
    separator = " " if kind is DataType else ", "
    return separator.join(str(member.value) for member in kind)


def _member(value: object, kind: type[_E], field: str) -> _E:
    if not isinstance(value, kind):
        raise MalformedError(field, f"must be one of {_choices(kind)}")
    return value


def _check_items(items: object) -> None:
    field = "catalog.data_items"
    if type(items) is not tuple or len(items) > MAX_DATA_ITEMS:
        raise MalformedError(field, f"must be at most {MAX_DATA_ITEMS} data items")
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, DataItem):
            raise MalformedError(f"{field}[{i}]", "must be a data item (name, type, description)")
        _text(item.name, f"{field}[{i}].name", _ITEM_NAME_CHARS, required=True)
        folded = item.name.casefold()
        if folded in seen:
            raise MalformedError(f"{field}[{i}].name", "must be unique (ignoring case)")
        seen.add(folded)
        _member(item.type, DataType, f"{field}[{i}].type")
        _text(
            item.description,
            f"{field}[{i}].description",
            _ITEM_DESCRIPTION_CHARS,
            required=False,
            lines=True,
        )


def _check_sharing(entry: CatalogEntry) -> None:
    field = "catalog.share_conditions"
    conditions = _text(entry.share_conditions, field, _CONDITIONS_CHARS, required=False, lines=True)
    stated = bool(conditions.strip())
    if entry.share_type is ShareType.UNCONDITIONAL and stated:
        # Decree 809 forbids conditions beyond the catalog's: none may hide here.
        raise MalformedError(field, "must be empty for unconditional sharing")
    if entry.share_type is ShareType.CONDITIONAL and not stated:
        raise MalformedError(field, "must state who may use the resource and on what terms")
    if entry.share_type is ShareType.NOT_SHARED and not stated:
        raise MalformedError(field, "must state the legal basis for not sharing")
    methods = entry.share_methods
    field = "catalog.share_methods"
    if type(methods) is not frozenset or not all(isinstance(m, ShareMethod) for m in methods):
        raise MalformedError(field, f"must be a set of {_choices(ShareMethod)}")
    if entry.share_type is ShareType.NOT_SHARED and methods:
        raise MalformedError(field, "must be empty for a resource that is not shared")
    if entry.share_type is not ShareType.NOT_SHARED and not methods:
        raise MalformedError(field, "must name at least one method for a shared resource")


def _check_related(entry: CatalogEntry) -> None:
    field = "catalog.related"
    related = entry.related
    if type(related) is not frozenset or len(related) > MAX_RELATED:
        raise MalformedError(field, f"must be a set of at most {MAX_RELATED} resource codes")
    for i, code in enumerate(sorted(related, key=str)):
        check_code(code, f"{field}[{i}]")
        if code == entry.code:
            raise MalformedError(field, "must not list the entry's own code")


# --- signing ------------------------------------------------------------------------


def sign_records(
    identity: LocalIdentity, changes: Sequence[Publication | Withdrawal], now: float
) -> list[CatalogRecord]:
    """Sign changes to this provider's own entries, one signature for the batch.

    Versions are the caller's: each must exceed the one last signed for its
    code (``CatalogState.next_version`` gives it), and the same version must
    never be signed with other content, which neighbours report as
    equivocation.
    """
    me = str(identity.name)
    issued_ms = int(now * 1000)
    bodies = [_body(identity, me, change, issued_ms) for change in changes]
    if not bodies:
        return []
    leaves = [signed_leaf(TYPE_CATALOG, body) for body in bodies]
    seals = sign_leaves(identity.signing_private_key, SUITE_X25519_AES256GCM_ED25519, leaves)
    records = []
    for body, seal in zip(bodies, seals, strict=True):
        data = encode_signed(TYPE_CATALOG, body, seal)
        if len(data) > MAX_RECORD_BYTES:
            raise UsageError(f"a catalog record is {len(data)} bytes, over {MAX_RECORD_BYTES}")
        records.append(decode_record(data))
    return records


def _body(identity: LocalIdentity, me: str, change: Publication | Withdrawal, at: int) -> bytes:
    head = [SUITE_X25519_AES256GCM_ED25519, me, identity.peer.signing_key_id, me]
    try:
        if isinstance(change, Publication):
            entry = change.entry
            if entry.provider != me:
                raise UsageError(
                    f"{me} cannot sign {entry.provider}'s entry {entry.code}: "
                    "only the provider publishes its entries"
                )
            version = check_version(change.version, "catalog.version")
            return pack([*head, entry.code, version, at, Status.PUBLISHED.value, entry.detail()])
        check_provider(me, "catalog.provider")
        code = check_code(change.code, "catalog.code")
        version = check_version(change.version, "catalog.version")
        reason = _text(change.reason, "catalog.reason", _REASON_CHARS, required=True, lines=True)
        return pack([*head, code, version, at, Status.WITHDRAWN.value, reason])
    except MalformedError as exc:
        raise InvalidCatalogEntryError(exc.field, exc.problem) from None


# --- decoding -----------------------------------------------------------------------


def decode_record(data: bytes) -> CatalogRecord:
    """Parse and check a signed record, naming the failing field; the seal is not verified.

    Raises only ``RejectedError`` subclasses, whatever the bytes.
    """
    body, _ = decode_signed(data, TYPE_CATALOG, "catalog", MAX_RECORD_BYTES)
    return _record(data, body)


def _record(data: bytes, body: bytes) -> CatalogRecord:
    fields = unpack(body, what="catalog.body", max_size=len(body), max_array=_MAX_ARRAY)
    if type(fields) is not list or len(fields) != _BODY_FIELDS:
        raise MalformedError("catalog.body", f"expected an array of {_BODY_FIELDS} elements")
    suite, signer, key_id, provider, code, version, issued, status, detail = fields
    suite = check_suite(suite, "catalog.suite")
    check_provider(signer, "catalog.signer")
    check_bytes(key_id, "catalog.signer_key_id", KEY_ID_LENGTH)
    check_provider(provider, "catalog.provider")
    check_code(code, "catalog.code")
    check_version(version, "catalog.version")
    check_time(issued, "catalog.issued")
    state = _status(status)
    entry, reason = None, ""
    if state is Status.PUBLISHED:
        entry = _entry(provider, code, detail)
    else:
        reason = _text(detail, "catalog.reason", _REASON_CHARS, required=True, lines=True)
    require_canonical(fields, body, what="catalog.body")
    said = pack([provider, code, version, status, detail])
    return CatalogRecord(
        provider,
        code,
        version,
        issued,
        state,
        entry,
        reason,
        signer,
        key_id,
        suite,
        signed_leaf(TYPE_CATALOG, body),
        hashlib.sha256(CONTENT_LABEL + said).digest(),
        bytes(data),
    )


def _status(value: object) -> Status:
    if type(value) is str:
        for status in (Status.PUBLISHED, Status.WITHDRAWN):
            if value == status.value:
                return status
    raise MalformedError(
        "catalog.status", "must be published or withdrawn (draft, registered, reviewed stay local)"
    )


def _wire_enum(value: object, kind: type[_E], field: str) -> _E:
    try:
        return kind(value)
    except (ValueError, TypeError):
        raise MalformedError(field, f"must be one of {_choices(kind)}") from None


def _ascending(value: object, field: str, limit: int) -> list[Any]:
    if type(value) is not list or len(value) > limit:
        raise MalformedError(field, f"must be an array of at most {limit} elements")
    for i, element in enumerate(value):
        if type(element) is not str:
            raise MalformedError(f"{field}[{i}]", "must be a string")
        if i and element <= value[i - 1]:
            raise MalformedError(field, "must be strictly ascending (sorted, no duplicates)")
    return value


def _entry(provider: str, code: str, detail: object) -> CatalogEntry:
    if type(detail) is not list or len(detail) != _DETAIL_FIELDS:
        raise MalformedError("catalog.entry", f"expected an array of {_DETAIL_FIELDS} elements")
    (
        classification,
        name,
        provider_code,
        summary,
        fmt,
        items,
        share_type,
        conditions,
        methods,
        openness,
        open_conditions,
        cycle,
        published,
        related,
    ) = detail
    if type(classification) is not str:
        raise MalformedError("catalog.classification", _CLASSIFICATION_RULE)
    try:
        return CatalogEntry(
            provider=provider,
            code=code,
            classification=classification,
            name=name,
            provider_code=provider_code,
            summary=summary,
            format=_wire_enum(fmt, ResourceFormat, "catalog.format"),
            data_items=_items(items),
            share_type=_wire_enum(share_type, ShareType, "catalog.share_type"),
            share_conditions=conditions,
            share_methods=frozenset(
                _wire_enum(m, ShareMethod, "catalog.share_methods")
                for m in _ascending(methods, "catalog.share_methods", len(ShareMethod))
            ),
            openness=_wire_enum(openness, Openness, "catalog.openness"),
            open_conditions=open_conditions,
            update_cycle=_wire_enum(cycle, UpdateCycle, "catalog.update_cycle"),
            publish_date=_date(published),
            related=frozenset(_ascending(related, "catalog.related", MAX_RELATED)),
        )
    except InvalidCatalogEntryError as exc:
        raise MalformedError(exc.field, exc.problem) from None


def _items(value: object) -> tuple[DataItem, ...]:
    field = "catalog.data_items"
    if type(value) is not list or len(value) > MAX_DATA_ITEMS:
        raise MalformedError(field, f"must be at most {MAX_DATA_ITEMS} data items")
    items = []
    for i, item in enumerate(value):
        if type(item) is not list or len(item) != _ITEM_FIELDS:
            raise MalformedError(f"{field}[{i}]", "expected [name, type, description]")
        name, kind, description = item
        kind = _wire_enum(kind, DataType, f"{field}[{i}].type")
        items.append(DataItem(name, kind, description))
    return tuple(items)


def _date(value: object) -> date:
    field = "catalog.publish_date"
    if type(value) is str and _DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise MalformedError(field, "must be a date (YYYY-MM-DD)")


# --- verification (SPEC §18.4) ------------------------------------------------------


class CatalogVerifier:
    """Verifies records against the directory's signing keys: only providers speak."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self._seals = SealVerifier()

    def verify(self, data: bytes) -> CatalogRecord:
        """Decode, check the seal under the signer's key, then that the signer is the provider.

        The seal comes first so that a ``not-the-provider`` refusal is true:
        the record is then proof that ``signer`` signed someone else's entry.
        """
        body, seal = decode_signed(data, TYPE_CATALOG, "catalog", MAX_RECORD_BYTES)
        record = _record(data, body)
        signer = self.directory.signer(record.signer, record.signer_key_id)
        self._seals.verify(
            signer.signing_key,
            signer.signing_key_raw,
            record.suite,
            record.digest,
            seal,
            record.describe,
        )
        if record.signer != record.provider:
            raise NotTheProviderError(
                f"{record.describe()} is signed by {record.signer}, not by its provider: "
                "only the provider publishes, changes or withdraws its entries",
                signer=record.signer,
                provider=record.provider,
            )
        return record

    def verify_all(self, items: Iterable[bytes]) -> list[CatalogRecord]:
        return [self.verify(data) for data in items]
