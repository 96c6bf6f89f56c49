"""Audit records: what a node writes to its tamper-evident log (audit draft §20.2).

Theory of operation.  Every security- or sharing-relevant event at a node
becomes one :class:`AuditRecord`: its place in the log (``seq``, from 0 with
no gaps), when, at which node, a category, an action, who acted
(:class:`Actor`), on what (:class:`Subject`), with which outcome
(:class:`Outcome`) and a small structured ``detail``.  The record is encoded
as a canonical msgpack array (SPEC §4) and its Merkle leaf is
``SHA-256(0x00 || encoded record)`` (RFC 9162 §2.1.1); ``audit_log`` builds
the tree over those leaves.

What a record may hold is a schema, not a convention.  GB/T 39477 asks for
audit of *who* used *what* and *when*; a log that copied payloads or
secrets would itself need the protection of the data.  So every value has
a type that cannot carry text: names are node names, resources are catalog
codes, ids and digests are fixed-length bytes, codes and states are short
ASCII tokens, and ``detail`` takes only the keys of :data:`DETAIL_SCHEMA`,
each with its type.  The one human-written value is an operator's name
(``Actor``), bounded to 64 characters.  A caller that tries to put a
sentence or a payload in gets :class:`~exchnode.errors.InvalidAuditRecordError`
naming the field; a decoder fed the same value on the wire raises
``malformed`` with the same field and problem.

``prev`` is the leaf of the previous record (32 zero bytes for seq 0).  The
signed tree heads are what make the log tamper-evident; the chain only
*locates* an edit: a record changed in place no longer hashes to what its
successor says, so the verifier names its seq instead of a range of them
(``audit_verify``).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar, cast

from exchnode.catalog import check_code
from exchnode.core import (
    HASH_LENGTH,
    AuditEvent,
    NodeName,
    check_bytes,
    check_name,
    check_time,
    leaf_hash,
    pack,
    require_canonical,
    unpack,
)
from exchnode.errors import (
    InvalidAuditRecordError,
    InvalidNameError,
    MalformedError,
    UnsupportedVersionError,
)

__all__ = [
    "DETAIL_SCHEMA",
    "GENESIS_PREV",
    "MAX_DETAIL",
    "MAX_MESSAGES",
    "MAX_OPERATOR_CHARS",
    "MAX_RECORD_BYTES",
    "NO_SUBJECT",
    "RECORD_FORMAT",
    "Actor",
    "AuditEntry",
    "AuditRecord",
    "Category",
    "Outcome",
    "Role",
    "Status",
    "Subject",
    "SubjectKind",
    "ValueType",
    "decode_record",
    "details",
    "encode_record",
    "entry_from_event",
    "record_leaf",
]

RECORD_FORMAT = 1
MAX_RECORD_BYTES = 2048
MAX_DETAIL = 16
MAX_MESSAGES = 64  # message ids in one record's "messages": custody is logged per batch
MAX_OPERATOR_CHARS = 64
MAX_UINT = (1 << 63) - 1
MAX_SERIAL = 20  # RFC 5280 §4.1.2.2: certificate serials are at most 20 octets
GENESIS_PREV: Final = bytes(HASH_LENGTH)
_FIELDS = 11
_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9._:-]{0,63}\Z")
_TOKEN_RULE = "must be 1-64 of a-z 0-9 . _ : - (a code, never free text)"  # noqa: S105
_ACTION = re.compile(r"[a-z][a-z0-9._-]{0,47}\Z")
_ACTION_RULE = "must be 1-48 of a-z 0-9 . _ - from a letter"


class Category(enum.Enum):
    CONNECTION = "connection"
    ENVELOPE = "envelope"
    CATALOG = "catalog"
    SUBSCRIPTION = "subscription"
    RECORD = "record"
    KEY = "key"  # keys and certificates
    CONFIGURATION = "configuration"
    ADMINISTRATION = "administration"
    WITNESS = "witness"  # a hub's check of a child's tree heads (audit_witness)


class Role(enum.Enum):
    """Who acted: the node itself, or a person in one of GB/T 39477's three roles."""

    NODE = "node"
    ADMINISTRATOR = "administrator"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class Status(enum.Enum):
    OK = "ok"
    REFUSED = "refused"


class SubjectKind(enum.Enum):
    NONE = "none"
    MESSAGE = "message"  # message id, bin(16)
    REQUEST = "request"  # subscription request or correction id, bin(16)
    RESOURCE = "resource"  # catalog resource code
    NODE = "node"  # node name
    KEY = "key"  # key id, bin(16)
    CERTIFICATE = "certificate"  # serial, bin(1..20)
    SETTING = "setting"  # configuration key, a token


class ValueType(enum.Enum):
    NAME = "name"  # node name
    CODE = "code"  # catalog resource code
    TOKEN = "token"  # noqa: S105  [a-z0-9][a-z0-9._:-]{0,63}
    ID = "id"  # bin(16)
    HASH = "hash"  # bin(32)
    SERIAL = "serial"  # bin(1..20)
    UINT = "uint"  # 0 .. 2^63-1
    IDS = "ids"  # 1..MAX_MESSAGES of bin(16): the messages of one custody batch


DetailValue = str | int | bytes | tuple[bytes, ...]

# The only keys a detail may hold, and the type of each (audit draft §20.2).
DETAIL_SCHEMA: Final[Mapping[str, ValueType]] = {
    "address": ValueType.TOKEN,  # a peer's IP address (IPv6 written out in full), no port
    "count": ValueType.UINT,
    "counterpart": ValueType.NAME,
    "digest": ValueType.HASH,
    "key_id": ValueType.ID,
    "kind": ValueType.TOKEN,
    "message": ValueType.ID,
    "messages": ValueType.IDS,
    "peer": ValueType.NAME,
    "previous_size": ValueType.UINT,
    "reason": ValueType.TOKEN,
    "request": ValueType.ID,
    "resource": ValueType.CODE,
    "root": ValueType.HASH,
    "sender": ValueType.NAME,
    "serial": ValueType.SERIAL,
    "setting": ValueType.TOKEN,
    "size": ValueType.UINT,
    "state": ValueType.TOKEN,
    "targets": ValueType.UINT,
    "tree_size": ValueType.UINT,
    "version": ValueType.UINT,
}

_SUBJECT_TYPE: Final[Mapping[SubjectKind, ValueType | None]] = {
    SubjectKind.NONE: None,
    SubjectKind.MESSAGE: ValueType.ID,
    SubjectKind.REQUEST: ValueType.ID,
    SubjectKind.RESOURCE: ValueType.CODE,
    SubjectKind.NODE: ValueType.NAME,
    SubjectKind.KEY: ValueType.ID,
    SubjectKind.CERTIFICATE: ValueType.SERIAL,
    SubjectKind.SETTING: ValueType.TOKEN,
}


# --- the checks, shared by building and decoding ----------------------------------------


def _check_value(kind: ValueType, value: object, where: str) -> DetailValue:
    if kind is ValueType.IDS:
        if not isinstance(value, list | tuple) or not 1 <= len(value) <= MAX_MESSAGES:
            raise MalformedError(where, f"must be an array of 1..{MAX_MESSAGES} message ids")
        for i, item in enumerate(value):
            if type(item) is not bytes or len(item) != 16:
                check_bytes(item, f"{where}[{i}]", 16)
        return tuple(value)
    if kind is ValueType.UINT:
        if type(value) is not int or not 0 <= value <= MAX_UINT:
            raise MalformedError(where, f"must be an integer in 0..{MAX_UINT}")
        return value
    if kind is ValueType.ID:
        return check_bytes(value, where, 16)
    if kind is ValueType.HASH:
        return check_bytes(value, where, HASH_LENGTH)
    if kind is ValueType.SERIAL:
        if type(value) is not bytes or not 1 <= len(value) <= MAX_SERIAL:
            raise MalformedError(where, f"must be 1..{MAX_SERIAL} bytes")
        return value
    if kind is ValueType.NAME:
        return check_name(value, where)
    if kind is ValueType.CODE:
        return check_code(value, where)
    if type(value) is not str or not _TOKEN.match(value):
        raise MalformedError(where, _TOKEN_RULE)
    return value


def _enum(kind: type[_E], value: object, where: str) -> _E:
    if type(value) is str:
        member = kind._value2member_map_.get(value)
        if member is not None:
            return cast(_E, member)
    raise MalformedError(where, "must be one of " + ", ".join(str(m.value) for m in kind))


def _check_operator(value: object, where: str) -> str:
    if type(value) is not str or not 1 <= len(value) <= MAX_OPERATOR_CHARS:
        raise MalformedError(where, f"must be a name of 1..{MAX_OPERATOR_CHARS} characters")
    if value != value.strip() or any(unicodedata.category(c)[0] == "C" for c in value):
        raise MalformedError(where, "must not hold control characters or surrounding spaces")
    return value


def _check_action(value: object, where: str) -> str:
    if type(value) is not str or not _ACTION.match(value):
        raise MalformedError(where, _ACTION_RULE)
    return value


def _check_code(value: object, status: Status, where: str) -> str:
    if value == "" and status is Status.OK:
        return ""
    if type(value) is not str or not _TOKEN.match(value):
        raise MalformedError(where, _TOKEN_RULE + ("; required when refused" if not value else ""))
    return value


def _check_detail(pairs: object, where: str) -> tuple[tuple[str, DetailValue], ...]:
    if not isinstance(pairs, list | tuple) or len(pairs) > MAX_DETAIL:
        raise MalformedError(where, f"must be at most {MAX_DETAIL} [key, value] pairs")
    out: list[tuple[str, DetailValue]] = []
    previous = ""
    for i, pair in enumerate(pairs):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise MalformedError(f"{where}[{i}]", "expected [key, value]")
        key, value = pair
        if type(key) is not str or key not in DETAIL_SCHEMA:
            raise MalformedError(
                f"{where}[{i}]", f"key {key!r} is not in the schema: {', '.join(DETAIL_SCHEMA)}"
            )
        if key <= previous:
            raise MalformedError(where, "keys must be strictly ascending (sorted, no duplicates)")
        previous = key
        out.append((key, _check_value(DETAIL_SCHEMA[key], value, f"{where}.{key}")))
    return tuple(out)


def _check_actor(role: object, name: object, where: str) -> Role:
    kind = _enum(Role, role, f"{where}.role")
    if kind is Role.NODE:
        check_name(name, f"{where}.name")
    else:
        _check_operator(name, f"{where}.name")
    return kind


def _check_subject(kind: object, value: object, where: str) -> SubjectKind:
    subject = _enum(SubjectKind, kind, f"{where}.kind")
    expected = _SUBJECT_TYPE[subject]
    if expected is None:
        if value != "":
            raise MalformedError(f"{where}.value", "must be empty when there is no subject")
    else:
        _check_value(expected, value, f"{where}.value")
    return subject


def _local(check: Callable[[], _T]) -> _T:
    """Run a wire check on a value built locally: ``malformed`` becomes a usage error."""
    try:
        return check()
    except MalformedError as exc:
        raise InvalidAuditRecordError(exc.field, exc.problem) from None


# --- values --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a node (``name`` is its node name) or a person in a role (any short name)."""

    role: Role
    name: str

    def __post_init__(self) -> None:
        _local(lambda: _check_actor(self.role.value, self.name, "audit.actor"))

    @classmethod
    def node(cls, name: str) -> Actor:
        return cls(Role.NODE, name)


@dataclass(frozen=True, slots=True)
class Subject:
    """What the action was about: a message, request, resource, node, key, certificate, setting."""

    kind: SubjectKind
    value: str | bytes = ""

    def __post_init__(self) -> None:
        _local(lambda: _check_subject(self.kind.value, self.value, "audit.subject"))


NO_SUBJECT: Final = Subject(SubjectKind.NONE)


@dataclass(frozen=True, slots=True)
class Outcome:
    """``ok`` (``code``: the resulting state, may be empty) or ``refused`` with an error code."""

    status: Status
    code: str = ""

    def __post_init__(self) -> None:
        _local(lambda: _check_code(self.code, self.status, "audit.outcome.code"))

    @classmethod
    def ok(cls, state: str = "") -> Outcome:
        return cls(Status.OK, state)

    @classmethod
    def refused(cls, code: str) -> Outcome:
        return cls(Status.REFUSED, code)


class _CheckedDetail(tuple[tuple[str, DetailValue], ...]):
    """A detail that passed ``_check_detail`` (immutable): not checked a second time."""

    __slots__ = ()


def details(**values: DetailValue) -> tuple[tuple[str, DetailValue], ...]:
    """A detail from keyword arguments: checked against the schema, sorted by key."""
    pairs = [(key, values[key]) for key in sorted(values)]
    return _CheckedDetail(_local(lambda: _check_detail(pairs, "audit.detail")))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """An event to log, before the log gives it a place (``seq``, ``node``, ``prev``)."""

    time_ms: int
    category: Category
    action: str
    actor: Actor
    subject: Subject = NO_SUBJECT
    outcome: Outcome = field(default_factory=Outcome.ok)
    detail: tuple[tuple[str, DetailValue], ...] = ()

    def __post_init__(self) -> None:
        _local(lambda: check_time(self.time_ms, "audit.time"))
        if not isinstance(self.category, Category):
            raise InvalidAuditRecordError("audit.category", "must be a Category")
        _local(lambda: _check_action(self.action, "audit.action"))
        if type(self.detail) is not _CheckedDetail:  # details() checked it already
            checked = _local(lambda: _check_detail(self.detail, "audit.detail"))
            object.__setattr__(self, "detail", _CheckedDetail(checked))

    def get(self, key: str) -> DetailValue | None:
        for k, v in self.detail:
            if k == key:
                return v
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """A logged entry: its seq, the node whose log holds it, and the leaf before it."""

    seq: int
    node: str
    prev: bytes
    entry: AuditEntry

    def __post_init__(self) -> None:
        _local(lambda: _check_value(ValueType.UINT, self.seq, "audit.seq"))
        _local(lambda: check_name(self.node, "audit.node"))
        _local(lambda: check_bytes(self.prev, "audit.prev", HASH_LENGTH))


# --- wire form -------------------------------------------------------------------------


def encode_record(record: AuditRecord) -> bytes:
    """The canonical encoding (audit draft §20.2); its leaf is ``record_leaf`` of it."""
    e = record.entry
    return pack(
        [
            RECORD_FORMAT,
            record.seq,
            e.time_ms,
            record.node,
            record.prev,
            e.category.value,
            e.action,
            [e.actor.role.value, e.actor.name],
            [e.subject.kind.value, e.subject.value],
            [e.outcome.status.value, e.outcome.code],
            [list(pair) for pair in e.detail],
        ]
    )


def record_leaf(encoded: bytes) -> bytes:
    """The Merkle leaf of an encoded record: ``SHA-256(0x00 || encoded)`` (RFC 9162 §2.1.1)."""
    return leaf_hash(encoded)


def decode_record(data: bytes) -> AuditRecord:
    """Parse and check every field of an encoded record, naming the first that fails.

    Raises only ``RejectedError`` subclasses (``malformed``, ``too-large``,
    ``unsupported-version``), whatever the bytes.
    """
    fields = unpack(
        data, what="audit", max_size=MAX_RECORD_BYTES, max_array=max(MAX_DETAIL, MAX_MESSAGES)
    )
    if type(fields) is not list or len(fields) != _FIELDS:
        raise MalformedError("audit", f"expected an array of {_FIELDS} elements")
    fmt, seq, time_ms, node, prev, category, action, actor, subject, outcome, detail = fields
    if type(fmt) is not int:
        raise MalformedError("audit.format", "must be an integer")
    if fmt != RECORD_FORMAT:
        raise UnsupportedVersionError(f"audit record format {fmt} is not supported (only 1)")
    _check_value(ValueType.UINT, seq, "audit.seq")
    check_time(time_ms, "audit.time")
    check_name(node, "audit.node")
    check_bytes(prev, "audit.prev", HASH_LENGTH)
    kind = _enum(Category, category, "audit.category")
    _check_action(action, "audit.action")
    role, name = _pair(actor, "audit.actor")
    who = _check_actor(role, name, "audit.actor")
    subject_kind, value = _pair(subject, "audit.subject")
    what = _check_subject(subject_kind, value, "audit.subject")
    status, code = _pair(outcome, "audit.outcome")
    result = _enum(Status, status, "audit.outcome.status")
    _check_code(code, result, "audit.outcome.code")
    pairs = _check_detail(detail, "audit.detail")
    require_canonical(fields, data, what="audit")
    entry = AuditEntry(
        time_ms=time_ms,
        category=kind,
        action=action,
        actor=Actor(who, cast(str, name)),
        subject=Subject(what, cast("str | bytes", value)),
        outcome=Outcome(result, cast(str, code)),
        detail=pairs,
    )
    return AuditRecord(seq=seq, node=node, prev=prev, entry=entry)


def _pair(value: object, where: str) -> tuple[object, object]:
    if type(value) is not list or len(value) != 2:
        raise MalformedError(where, "expected an array of 2 elements")
    return value[0], value[1]


# --- from the state machines' events ---------------------------------------------------

_RECORD_ACTIONS = frozenset({"sub.correction", "sub.correction-answer", "answer"})


def entry_from_event(event: AuditEvent) -> AuditEntry:
    """The audit entry of an ``events.AuditEvent`` (catalog, subscriptions, corrections).

    * ``actor``: a node name is the node acting; anything else is the
      operator who acted for it (the operator API names the person).
    * ``action``: ``"refused sub.request"`` (a statement refused from a
      sender) becomes action ``refused`` with ``kind`` ``sub.request``.
    * ``outcome``: a refusal (``refused`` or ``*.refused``) carries the
      error code; otherwise the state the request or entry is in after.
    * subject: the request id if there is one (then ``resource`` in the
      detail), else the resource code; ``counterpart`` in the detail.

    Raises ``InvalidAuditRecordError`` if a value breaks the schema, so an
    event can never smuggle text into the log.
    """
    action, _, kind = event.action.partition(" ")
    if action.startswith("catalog."):
        category = Category.CATALOG
    elif event.action in _RECORD_ACTIONS or action.startswith("records."):
        category = Category.RECORD
    else:
        category = Category.SUBSCRIPTION
    refused = action == "refused" or action.endswith(".refused")
    outcome = Outcome.refused(event.outcome) if refused else Outcome.ok(event.outcome)
    try:
        NodeName.parse(event.actor)
        actor = Actor(Role.NODE, event.actor)
    except InvalidNameError:
        actor = Actor(Role.OPERATOR, event.actor)
    extra: dict[str, DetailValue] = {}
    if kind:
        extra["kind"] = kind
    if event.counterpart:
        extra["counterpart"] = event.counterpart
    if event.count:
        extra["count"] = event.count
    if event.request_id:
        subject = Subject(SubjectKind.REQUEST, event.request_id)
        if event.resource_code:
            extra["resource"] = event.resource_code
    elif event.resource_code:
        subject = Subject(SubjectKind.RESOURCE, event.resource_code)
    else:
        subject = NO_SUBJECT
    return AuditEntry(
        time_ms=event.at_ms,
        category=category,
        action=action,
        actor=actor,
        subject=subject,
        outcome=outcome,
        detail=details(**extra),
    )
