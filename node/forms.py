"""JSON forms of catalog entries, records, masks, grants and requests, for the operator API.

Theory of operation
-------------------
The operator API speaks JSON; the library speaks frozen dataclasses with
enums.  This module is the one translation between them, both ways:

* a **catalog entry** is a JSON object with the guide's fields under their
  library names, every enum as its string value (``"format": "database"``,
  ``"share_type": "conditional"``, data item types as the guide's letters
  ``"C"``, ``"D"``...), dates as ``YYYY-MM-DD``::

      {"code": "101001/000001", "name": "人口基本信息", "provider_code": "11520102MB1234567X",
       "summary": "...", "format": "database",
       "data_items": [{"name": "身份证号", "type": "C", "description": "公民身份号码"}],
       "share_type": "conditional", "share_conditions": "...",
       "share_methods": ["subscription_push"], "openness": "not_open",
       "update_cycle": "daily", "publish_date": "2026-01-05", "related": []}

  ``provider`` defaults to the node's own name and ``classification`` to the
  code's part before ``/``; ``open_conditions`` and ``related`` may be left
  out.  An unknown or mistyped field is refused naming it the way the library
  names fields (``catalog.data_items[2].type``), and the library's own rules
  (:class:`~exchnode.errors.InvalidCatalogEntryError`) keep their field paths;
* **masks** are an object of data item → rule:
  ``{"身份证号": {"rule": "keep", "first": 6, "last": 4}}``, with the rules
  ``keep`` (``first``, ``last``, ``char``), ``redact`` (``replacement``, a
  text or null), ``hash`` and ``year_only``;
* a **record** (one row of a resource) is an object of data item → value:
  text, number, true/false, null, or ``{"base64": "..."}`` for bytes;
* a **correction** (校核) is a subscriber's report that a record looks wrong:
  ``{"correction_id", "subscriber", "provider", "resource_code", "seq",
  "items", "text", "at_ms", "at", "state", "answer"}``, the answer (null while
  ``open``) being ``{"outcome": "accepted"|"rejected", "text", "at_ms", "at"}``;
* request and correction ids are lowercase hex everywhere; times are ms since
  1970 next to an ISO 8601 text in China Standard Time, the domain's clock.

Every parsing problem raises :class:`FormError` (a usage error: the caller
sent it) naming the field, whatever JSON value came (a list where a text was
due, an object where a rule name was): never another exception.  A message
quotes back at most a short identifier the caller gave (``node.api.shown``),
never a record value or a long text.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any, TypeVar

from exchnode.catalog import (
    CatalogEntry,
    CatalogRecord,
    DataItem,
    DataType,
    Openness,
    ResourceFormat,
    ShareMethod,
    ShareType,
    Status,
    UpdateCycle,
)
from exchnode.core import Level, NodeName
from exchnode.errors import InvalidNameError, UsageError
from exchnode.sharing import (
    CHINA_STANDARD_TIME,
    Correction,
    CorrectionAnswer,
    CorrectionState,
    Escalation,
    Grant,
    Hash,
    Keep,
    MaskRule,
    MaskSet,
    Redact,
    RequestState,
    SubscriptionRequest,
    YearOnly,
)

from .api import shown

__all__ = [
    "ENTRY_FIELDS",
    "ENTRY_REQUIRED",
    "FormError",
    "correction_answer_json",
    "correction_json",
    "entry_from_json",
    "entry_json",
    "escalation_json",
    "field_key",
    "grant_json",
    "iso_ms",
    "level_named",
    "masks_from_json",
    "masks_json",
    "node_name",
    "parse_request_id",
    "parse_time",
    "received_records_json",
    "record_from_json",
    "record_json",
    "request_json",
    "status_named",
    "value_from_json",
    "value_json",
]

E = TypeVar("E", bound=enum.Enum)

ENTRY_FIELDS = (
    "provider",
    "code",
    "classification",
    "name",
    "provider_code",
    "summary",
    "format",
    "data_items",
    "share_type",
    "share_conditions",
    "share_methods",
    "openness",
    "open_conditions",
    "update_cycle",
    "publish_date",
    "related",
)
ENTRY_REQUIRED = (  # what an entry must name; the OpenAPI document declares the same
    "code",
    "name",
    "provider_code",
    "summary",
    "format",
    "share_type",
    "update_cycle",
    "publish_date",
)
_ITEM_FIELDS = ("name", "type", "description")
LEVELS = {level.name.lower(): level for level in Level}


class FormError(UsageError):
    """A JSON value the operator API cannot turn into a library value; names the field."""

    code = "invalid-request"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


# --- times and ids ---------------------------------------------------------------------


def iso_ms(ms: int | None, *, timespec: str = "seconds") -> str | None:
    """An instant as ISO 8601 in China Standard Time (``2026-01-05T09:30:00+08:00``).

    The one convention of every time the daemon and its verbs show, in JSON and
    in tables: ISO 8601 with its offset, in the time zone of the working-day
    rule.  Fields named ``*_ms`` are the same instants as ms since 1970, for
    programs.  ``timespec="milliseconds"`` where order within a second matters
    (audit records).
    """
    if ms is None:
        return None
    moment = dt.datetime.fromtimestamp(ms / 1000, CHINA_STANDARD_TIME)
    return moment.isoformat(timespec=timespec)


def iso_time(moment: dt.datetime | None) -> str | None:
    """A timezone-aware ``datetime`` in the convention of :func:`iso_ms`."""
    if moment is None:
        return None
    return moment.astimezone(CHINA_STANDARD_TIME).isoformat(timespec="seconds")


def parse_time(text: object, field: str) -> int:
    """An ISO date or date-time into ms since 1970.

    A date alone means the end of that day (00:00 of the next day, CST), so
    ``2026-12-31`` covers all of 31 December; a date-time without an offset
    is read in China Standard Time.
    """
    if not isinstance(text, str) or not text:
        raise FormError(field, "must be an ISO date (2026-12-31) or date-time")
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text) + dt.timedelta(days=1)
            when = dt.datetime(day.year, day.month, day.day, tzinfo=CHINA_STANDARD_TIME)
        else:
            when = dt.datetime.fromisoformat(text)
            if when.tzinfo is None:
                when = when.replace(tzinfo=CHINA_STANDARD_TIME)
    except ValueError:
        raise FormError(field, f"{shown(text)} is not an ISO date or date-time") from None
    return int(when.timestamp() * 1000)


def parse_request_id(text: str, field: str = "request_id") -> bytes:
    """A request id (or, with ``field="correction_id"``, a correction id): 32 hex digits."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise FormError(field, f"{shown(text)} is not hex") from None
    if len(value) != 16:
        kind = field.removesuffix("_id")
        raise FormError(field, f"{shown(text)} is not a {kind} id (32 hex digits)")
    return value


def level_named(text: str) -> Level:
    level = LEVELS.get(text)
    if level is None:
        raise FormError("level", f"must be one of {', '.join(LEVELS)}, got {shown(text)}")
    return level


def node_name(value: object, field: str) -> str:
    """A node name the caller gave (a provider, a recipient): checked, else FormError."""
    if not isinstance(value, str) or not value:
        raise FormError(field, f"must be a node name, got {shown(value)}")
    try:
        NodeName.parse(value)
    except InvalidNameError as exc:
        raise FormError(field, f"is not a node name: {exc}") from None
    return value


# --- catalog entries -------------------------------------------------------------------


def _enum(kind: type[E], value: object, field: str) -> E:
    try:
        return kind(value)
    except (ValueError, TypeError):
        choices = ", ".join(str(member.value) for member in kind)
        raise FormError(field, f"must be one of {choices}, got {shown(value)}") from None


def _string(document: Mapping[str, Any], name: str, field: str, default: str | None) -> str:
    value = document.get(name, default)
    if value is None:
        raise FormError(field, "is required")
    if not isinstance(value, str):
        raise FormError(field, f"must be a string, got {shown(value)}")
    return value


def _strings(value: object, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormError(field, "must be a list of strings")
    return value


def field_key(key: str) -> str:
    """A key of the caller's object in a field path: itself if short, else only its length."""
    return key if len(key) <= 64 and key.isprintable() else f"<a key of {len(key)} characters>"


def _check_keys(document: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in document:
        if key not in allowed:
            raise FormError(f"{where}.{field_key(key)}", "unknown field (misspelt?)")


def entry_from_json(document: object, provider: str) -> CatalogEntry:
    """A catalog entry from its JSON form; ``provider`` (this node) is the default provider."""
    if not isinstance(document, dict):
        raise FormError("catalog", "an entry must be a JSON object")
    _check_keys(document, ENTRY_FIELDS, "catalog")
    for name in ENTRY_REQUIRED:
        if name not in document:
            raise FormError(f"catalog.{name}", "is required")
    code = _string(document, "code", "catalog.code", None)
    items_raw = document.get("data_items", [])
    if not isinstance(items_raw, list):
        raise FormError("catalog.data_items", "must be a list of {name, type, description}")
    items = []
    for i, raw in enumerate(items_raw):
        where = f"catalog.data_items[{i}]"
        if not isinstance(raw, dict):
            raise FormError(where, "must be an object {name, type, description}")
        _check_keys(raw, _ITEM_FIELDS, where)
        items.append(
            DataItem(
                _string(raw, "name", f"{where}.name", None),
                _enum(DataType, raw.get("type"), f"{where}.type"),
                _string(raw, "description", f"{where}.description", ""),
            )
        )
    methods = _strings(document.get("share_methods", []), "catalog.share_methods")
    related = _strings(document.get("related", []), "catalog.related")
    published = _string(document, "publish_date", "catalog.publish_date", None)
    try:
        publish_date = dt.date.fromisoformat(published)
    except ValueError:
        raise FormError(
            "catalog.publish_date", f"must be a date YYYY-MM-DD, got {shown(published)}"
        ) from None
    return CatalogEntry(
        provider=_string(document, "provider", "catalog.provider", provider),
        code=code,
        classification=_string(
            document, "classification", "catalog.classification", code.partition("/")[0]
        ),
        name=_string(document, "name", "catalog.name", None),
        provider_code=_string(document, "provider_code", "catalog.provider_code", None),
        summary=_string(document, "summary", "catalog.summary", None),
        format=_enum(ResourceFormat, document.get("format"), "catalog.format"),
        data_items=tuple(items),
        share_type=_enum(ShareType, document.get("share_type"), "catalog.share_type"),
        share_conditions=_string(document, "share_conditions", "catalog.share_conditions", ""),
        share_methods=frozenset(
            _enum(ShareMethod, m, f"catalog.share_methods[{i}]") for i, m in enumerate(methods)
        ),
        openness=_enum(Openness, document.get("openness", "not_open"), "catalog.openness"),
        open_conditions=_string(document, "open_conditions", "catalog.open_conditions", ""),
        update_cycle=_enum(UpdateCycle, document.get("update_cycle"), "catalog.update_cycle"),
        publish_date=publish_date,
        related=frozenset(related),
    )


def entry_json(entry: CatalogEntry) -> dict[str, Any]:
    return {
        "provider": entry.provider,
        "code": entry.code,
        "classification": entry.classification,
        "name": entry.name,
        "provider_code": entry.provider_code,
        "summary": entry.summary,
        "format": entry.format.value,
        "data_items": [
            {"name": item.name, "type": item.type.value, "description": item.description}
            for item in entry.data_items
        ],
        "share_type": entry.share_type.value,
        "share_conditions": entry.share_conditions,
        "share_methods": sorted(method.value for method in entry.share_methods),
        "openness": entry.openness.value,
        "open_conditions": entry.open_conditions,
        "update_cycle": entry.update_cycle.value,
        "publish_date": entry.publish_date.isoformat(),
        "related": sorted(entry.related),
    }


def record_json(record: CatalogRecord) -> dict[str, Any]:
    """A signed record as the node holds it: who, which version, and the entry or the reason."""
    return {
        "provider": record.provider,
        "code": record.code,
        "version": record.version,
        "status": record.status.value,
        "issued_ms": record.issued_ms,
        "issued": iso_ms(record.issued_ms),
        "reason": record.reason,
        "entry": None if record.entry is None else entry_json(record.entry),
    }


def status_named(text: str) -> Status | None:
    """A search status: ``published`` (default), ``withdrawn``, or ``all``."""
    if text == "all":
        return None
    if text not in (Status.PUBLISHED.value, Status.WITHDRAWN.value):
        raise FormError("status", f"must be published, withdrawn or all, got {shown(text)}")
    return Status(text)


# --- masks -----------------------------------------------------------------------------

_RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "keep": ("rule", "first", "last", "char"),
    "redact": ("rule", "replacement"),
    "hash": ("rule",),
    "year_only": ("rule",),
}


def _integer(raw: Mapping[str, Any], name: str, field: str, default: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormError(field, f"must be an integer, got {shown(value)}")
    return value


def masks_from_json(document: object) -> MaskSet:
    """``{"item": {"rule": "keep", "first": 6, "last": 4}, ...}`` into a :class:`MaskSet`."""
    if not isinstance(document, dict):
        raise FormError("masks", "must be an object of data item -> {rule, ...}")
    rules: dict[str, MaskRule] = {}
    for item, raw in document.items():
        where = f"masks.{field_key(item)}"
        if not isinstance(raw, dict):
            raise FormError(where, 'must be an object like {"rule": "keep", "first": 6}')
        name = raw.get("rule")
        if not isinstance(name, str) or name not in _RULE_FIELDS:
            raise FormError(f"{where}.rule", f"must be one of {', '.join(_RULE_FIELDS)}")
        _check_keys(raw, _RULE_FIELDS[name], where)
        rule: MaskRule
        if name == "keep":
            char = raw.get("char", "*")
            if not isinstance(char, str):
                raise FormError(f"{where}.char", "must be one character")
            rule = Keep(
                _integer(raw, "first", f"{where}.first", 6),
                _integer(raw, "last", f"{where}.last", 4),
                char,
            )
        elif name == "redact":
            replacement = raw.get("replacement", "***")
            if replacement is not None and not isinstance(replacement, str):
                raise FormError(f"{where}.replacement", "must be a text or null")
            rule = Redact(replacement)
        elif name == "hash":
            rule = Hash()
        else:
            rule = YearOnly()
        rules[item] = rule
    return MaskSet.of(rules)  # the library checks each rule's parameters


def masks_json(masks: MaskSet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item, rule in masks.rules:
        if isinstance(rule, Keep):
            out[item] = {"rule": "keep", "first": rule.first, "last": rule.last, "char": rule.char}
        elif isinstance(rule, Redact):
            out[item] = {"rule": "redact", "replacement": rule.replacement}
        else:
            out[item] = {"rule": rule.name}
    return out


# --- subscriptions ---------------------------------------------------------------------


def grant_json(grant: Grant) -> dict[str, Any]:
    return {
        "request_id": grant.request_id.hex(),
        "resource_code": grant.resource_code,
        "provider": grant.provider,
        "subscriber": grant.subscriber,
        "items": list(grant.items),
        "masks": masks_json(grant.masks),
        "granted_ms": grant.granted_ms,
        "granted": iso_ms(grant.granted_ms),
        "expires_ms": grant.expires_ms,
        "expires": iso_ms(grant.expires_ms),
    }


def request_json(
    request: SubscriptionRequest, state: RequestState | None, grant: Grant | None = None
) -> dict[str, Any]:
    """A request received as provider, with its state on this node."""
    return {
        "request_id": request.request_id.hex(),
        "requester": request.requester,
        "provider": request.provider,
        "resource_code": request.resource_code,
        "purpose": request.purpose,
        "scope": request.scope,
        "items": list(request.items),
        "at_ms": request.at_ms,
        "at": iso_ms(request.at_ms),
        "state": state.value if state is not None else "sent",
        "grant": None if grant is None else grant_json(grant),
    }


def escalation_json(case: Escalation) -> dict[str, Any]:
    return {
        "request_id": case.request_id.hex(),
        "requester": case.requester,
        "provider": case.provider,
        "authority": case.authority,
        "resource_code": case.resource_code,
        "round": case.round,
        "grounds": case.grounds.value,
        "reason": case.reason,
        "at_ms": case.at_ms,
        "at": iso_ms(case.at_ms),
    }


def correction_answer_json(answer: CorrectionAnswer | None) -> dict[str, Any] | None:
    if answer is None:
        return None
    return {
        "outcome": answer.outcome.value,
        "text": answer.text,
        "at_ms": answer.at_ms,
        "at": iso_ms(answer.at_ms),
    }


def correction_json(
    correction: Correction, state: CorrectionState | None, answer: CorrectionAnswer | None = None
) -> dict[str, Any]:
    """A correction report (校核), with its state on this node and the answer once given."""
    return {
        "correction_id": correction.correction_id.hex(),
        "subscriber": correction.subscriber,
        "provider": correction.provider,
        "resource_code": correction.resource_code,
        "seq": correction.seq,
        "items": list(correction.items),
        "text": correction.text,
        "at_ms": correction.at_ms,
        "at": iso_ms(correction.at_ms),
        "state": state.value if state is not None else "sent",
        "answer": correction_answer_json(answer),
    }


# --- records -----------------------------------------------------------------------------


def value_from_json(value: object, field: str) -> Any:
    """A record value: text, integer, number, true/false, null, or ``{"base64": "..."}``."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            raise FormError(field, "is not valid base64") from None
    raise FormError(field, 'must be a text, number, true/false, null or {"base64": "..."}')


def value_json(value: object) -> Any:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return value


def record_from_json(document: object, where: str) -> dict[str, Any]:
    """One record (data item -> value) from its JSON object."""
    if not isinstance(document, dict) or not document:
        raise FormError(where, "a record is a non-empty JSON object of data item -> value")
    return {
        item: value_from_json(value, f"{where}.{field_key(item)}")
        for item, value in document.items()
    }


def received_records_json(received: Any) -> dict[str, Any]:
    """A ``sub.records`` delivery as ``SharingService.read_records`` checked it."""
    return {
        "provider": received.provider,
        "resource_code": received.resource_code,
        "records": [
            {"seq": seq, "fields": {item: value_json(v) for item, v in fields.items()}}
            for seq, fields in received.records
        ],
        "repeated": list(received.repeated),
        "refused": list(received.refused),
        "missing": [list(gap) for gap in received.missing],
    }
