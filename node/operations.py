"""Every operation of the local API, declared once: parameters, body, answer.

Theory of operation
-------------------
:data:`OPERATIONS` is the one table of what the API takes and answers.  Two
things derive from it and nothing else:

* the operator API checks each request against its operation before the
  handler runs (:func:`validated`): every query and path parameter is parsed
  and bounded (``node.api.checked_params``), a JSON body is read
  (``node.api.parse_json_object``) and checked against the declared shape, and
  anything wrong is a 400 naming the field (``node.schema``);
* ``node.openapi`` writes the OpenAPI 3.1 document from the same values
  (served at ``GET /v1/openapi.json``, written by ``exchnode node openapi``).

The answers' shapes are declared here too; the handlers build them with
``node.forms`` and the other ``*_json`` functions, and the schemathesis run
of ``tests/integration/test_openapi.py`` holds the two together (every answer
of a live daemon conforms to its declaration).  A route the API registers that
has no operation here is a test failure, and so is an operation no route serves.

Names (nodes, providers, recipients) are declared as texts: the handler checks
them with the library's rules and answers ``invalid-name`` or
``invalid-request`` naming the field, which a pattern here could not explain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from exchnode.aio import ADMISSION_POLICIES, PEER_SOURCES
from exchnode.catalog import (
    MAX_SEARCH_LIMIT,
    DataType,
    Openness,
    ResourceFormat,
    ShareMethod,
    ShareType,
    UpdateCycle,
)
from exchnode.sharing import CorrectionState, RequestState

from .api import checked_request, json_body
from .console import MAX_CATALOG_SHOWN
from .forms import ENTRY_FIELDS, ENTRY_REQUIRED, LEVELS, FormError
from .operator_audit import DEFAULT_RECORDS as DEFAULT_AUDIT_RECORDS
from .operator_audit import MAX_RECORDS as MAX_AUDIT_RECORDS
from .operator_services import (
    MAX_CORRECTION_TEXT,
    MAX_OPERATOR_CHARS,
    MAX_PUBLISH,
    MAX_RECORDS,
)
from .schema import (
    AnyValue,
    Array,
    Boolean,
    Integer,
    MapOf,
    Nullable,
    Number,
    Object,
    OneOf,
    Ref,
    Schema,
    Text,
)

__all__ = [
    "ENTRY_EXAMPLE",
    "ERROR",
    "OPERATIONS",
    "Operation",
    "Param",
    "operation_for",
    "validated",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_RECEIVE = 1024  # deliveries one receive may lease
MAX_WAIT = 300.0  # seconds a long poll may wait


@dataclass(frozen=True)
class Param:
    """A query or path parameter; its text is parsed by ``schema`` (``Schema.parse``)."""

    name: str
    schema: Schema
    where: Literal["query", "path"] = "query"
    required: bool = False
    repeated: bool = False  # ?to=a&to=b: a list of values
    default: Any = None


@dataclass(frozen=True)
class Operation:
    """One method on one path: what it takes and what it answers (200)."""

    method: str
    path: str  # the aiohttp route template (``{code:.+}`` allowed)
    summary: str
    answer: Schema
    params: tuple[Param, ...] = ()
    body: Schema | None = None  # a JSON object, checked before the handler runs
    raw_body: bool = False  # the body is the payload itself (send)
    errors: tuple[int, ...] = (400,)  # the 4xx/5xx this operation may answer beyond the guard's
    description: str = ""
    headers: Mapping[str, Schema] = field(default_factory=dict)  # request headers it reads
    other_answers: Mapping[int, Schema] = field(default_factory=dict)  # a status with a body
    answer_type: str = "application/json"  # text/plain (metrics), text/html (a page): a text


# --- shared shapes -------------------------------------------------------------------------

ERROR = Ref(
    name="Error",
    target=Object(
        properties={
            "error": Text(min_length=1, description="what was wrong, in words; never a payload"),
            "code": Text(min_length=1, description="a stable code: not-found, forbidden, ..."),
        },
        required=("error", "code"),
        description="Every 4xx and 5xx answer of the API.",
    ),
)


def _fields(**properties: Schema) -> Object:
    """An object whose every field is always there (most answers are): each named once."""
    return Object(properties=properties, required=tuple(properties))


_INT = Integer()
_COUNT = Integer(minimum=0)
_TEXT = Text()
_MS = Integer(description="ms since 1970")
_NAME = Text(
    min_length=1,
    max_length=255,
    description="a node name (520102, 520102.gongan)",
    example="520102",
)
_HEX = Text(pattern="[0-9a-f]*", pattern_rule="lowercase hex")
_ISO = Nullable(inner=Text(description="ISO 8601 with offset"))
_ID32 = Text(
    pattern="[0-9a-fA-F]{32}",
    pattern_rule="hex of 32 digits",
    description="a request or correction id",
    example="0f" * 16,
)
_CODE = Text(min_length=1, max_length=64, description="a resource code", example="101001/000001")


def _person(description: str, example: str) -> Text:
    """Who acts, named on the audit record: one printable line of a bounded length."""
    return Text(
        min_length=1,
        max_length=MAX_OPERATOR_CHARS,
        printable=True,
        description=description,
        example=example,
    )


_OPERATOR = _person("the person acting, on the audit record (1..64 characters)", "张三")
_ADMINISTRATOR = _person("the administrator acting, on the audit record", "李四")
_REASON = Text(min_length=1, max_length=4096, description="why, for the record", example="核验")
_ITEMS = Array(items=Text(min_length=1), description="data item names", example=["姓名"])
_DEPTH = _fields(count=_COUNT, bytes=_COUNT)


def _values(kind: Any) -> tuple[str, ...]:
    return tuple(str(member.value) for member in kind)


def _needs(role: str) -> dict[str, str]:
    return {role: f"name the person acting: the body needs an {role!r} field"}


_CORRECTION_TEXT = Text(min_length=1, max_length=MAX_CORRECTION_TEXT)


def _decision(*extra: str, **properties: Schema) -> Object:
    """An operator's decision: who acts, and what else the step takes."""
    return Object(
        properties={"operator": _OPERATOR, **properties},
        required=("operator", *extra),
        missing=_needs("operator"),
    )


_RELATION = Text(enum=("parent", "child", "link"))
_PEER_SOURCE = Text(enum=PEER_SOURCES, description="config, admitted (by policy) or added")


def _admin_action(**properties: Schema) -> Object:
    return Object(
        properties={"administrator": _ADMINISTRATOR, **properties},
        required=("administrator",),
        missing=_needs("administrator"),
    )


def _list_of(key: str, items: Schema) -> Object:
    """An answer that is one list under one key (``{"requests": [...]}``)."""
    return Object(properties={key: Array(items=items)}, required=(key,))


def _admin_step(
    path: str, summary: str, answer: Schema, *, errors: tuple[int, ...], **more: Any
) -> Operation:
    """A POST of the administrator's that takes no more than who acts (on the audit record)."""
    return Operation("POST", path, summary, answer, body=_admin_action(), errors=errors, **more)


#: a valid catalog entry: the document's example, and the tests' (copy it before changing it)
ENTRY_EXAMPLE = {
    "code": "101001/000001",
    "name": "人口基本信息",
    "provider_code": "11520102MB1234567X",
    "summary": "户籍人口的基本信息",
    "format": "database",
    "data_items": [{"name": "姓名", "type": "C", "description": "姓名"}],
    "share_type": "conditional",
    "share_conditions": "仅限政务部门依法履职使用",
    "share_methods": ["subscription_push"],
    "update_cycle": "daily",
    "publish_date": "2026-01-05",
}
_DATA_ITEM = Object(
    properties={
        "name": Text(min_length=1),
        "type": Text(enum=_values(DataType)),
        "description": _TEXT,
    },
    required=("name", "type"),
    closed=True,
)
ENTRY = Ref(
    name="CatalogEntry",
    target=Object(
        properties={
            "provider": _NAME,
            "code": _CODE,
            "classification": _TEXT,
            "name": _TEXT,
            "provider_code": _TEXT,
            "summary": _TEXT,
            "format": Text(enum=_values(ResourceFormat)),
            "data_items": Array(items=_DATA_ITEM),
            "share_type": Text(enum=_values(ShareType)),
            "share_conditions": _TEXT,
            "share_methods": Array(items=Text(enum=_values(ShareMethod))),
            "openness": Text(enum=_values(Openness)),
            "open_conditions": _TEXT,
            "update_cycle": Text(enum=_values(UpdateCycle)),
            "publish_date": Text(
                pattern="[0-9]{4}-[0-9]{2}-[0-9]{2}", pattern_rule="a date YYYY-MM-DD"
            ),
            "related": Array(items=_TEXT),
        },
        required=ENTRY_REQUIRED,
        closed=True,
        path="catalog",
        description="A resource catalog entry (政务信息资源目录).",
        example=ENTRY_EXAMPLE,
    ),
)
assert set(ENTRY.target.properties) == set(ENTRY_FIELDS)  # type: ignore[attr-defined]

CATALOG_RECORD = Ref(
    name="CatalogRecord",
    target=Object(
        properties={
            "provider": _NAME,
            "code": _CODE,
            "version": _COUNT,
            "status": Text(enum=("published", "withdrawn")),
            "issued_ms": _MS,
            "issued": _ISO,
            "reason": _TEXT,
            "entry": Nullable(inner=ENTRY),
        },
        required=("provider", "code", "version", "status", "issued_ms", "entry"),
    ),
)
_RECORDS = _list_of("records", CATALOG_RECORD)

_MASK = Object(
    properties={
        "rule": Text(enum=("keep", "redact", "hash", "year_only")),
        "first": Integer(minimum=0, maximum=64),
        "last": Integer(minimum=0, maximum=64),
        "char": Text(min_length=1, max_length=1),
        "replacement": Nullable(inner=Text(max_length=64)),
    },
    required=("rule",),
    description="keep (first, last, char), redact (replacement), hash or year_only",
)
MASKS = Ref(
    name="Masks",
    target=MapOf(
        values=_MASK,
        description="data item -> rule",
        example={"姓名": {"rule": "keep", "first": 1, "last": 0, "char": "*"}},
    ),
)
GRANT = Ref(
    name="Grant",
    target=Object(
        properties={
            "request_id": _HEX,
            "resource_code": _CODE,
            "provider": _NAME,
            "subscriber": _NAME,
            "items": _ITEMS,
            "masks": MASKS,
            "granted_ms": _MS,
            "granted": _ISO,
            "expires_ms": Nullable(inner=_MS),
            "expires": _ISO,
        },
        required=("request_id", "resource_code", "provider", "subscriber", "items", "masks"),
    ),
)
_STATE = Text(enum=(*_values(RequestState), "sent"))
#: what a subscription request asks, as its subscriber and its provider see it
_ASKED: dict[str, Schema] = {
    "provider": _NAME,
    "resource_code": _CODE,
    "purpose": _TEXT,
    "scope": _TEXT,
    "items": _ITEMS,
    "at_ms": _MS,
    "at": _ISO,
}
SENT_REQUEST = Ref(
    name="SentRequest",
    target=Object(
        properties={
            "request_id": _HEX,
            **_ASKED,
            "operator": _TEXT,
            "state": _STATE,
            "reason": _TEXT,
            "grant": Nullable(inner=GRANT),
        },
        required=("request_id", "provider", "resource_code", "state"),
    ),
)
INCOMING_REQUEST = Ref(
    name="IncomingRequest",
    target=Object(
        properties={
            "request_id": _HEX,
            "requester": _NAME,
            **_ASKED,
            "state": _STATE,
            "grant": Nullable(inner=GRANT),
        },
        required=("request_id", "requester", "provider", "resource_code", "state"),
    ),
)
_ANSWER = Nullable(
    inner=Object(
        properties={
            "outcome": Text(enum=("accepted", "rejected")),
            "text": _TEXT,
            "at_ms": _MS,
            "at": _ISO,
        },
        required=("outcome", "text"),
    )
)
CORRECTION = Ref(
    name="Correction",
    target=Object(
        properties={
            "correction_id": _HEX,
            "subscriber": _NAME,
            "provider": _NAME,
            "resource_code": _CODE,
            "seq": _INT,
            "items": _ITEMS,
            "text": _TEXT,
            "at_ms": _MS,
            "at": _ISO,
            "operator": _TEXT,
            "state": Text(enum=(*_values(CorrectionState), "sent")),
            "answer": _ANSWER,
        },
        required=("correction_id", "state", "answer"),
    ),
)
_RECORD_VALUE = OneOf(
    choices=(
        Nullable(inner=OneOf(choices=(Text(), Number(), Boolean()))),
        Object(properties={"base64": Text()}, required=("base64",), closed=True),
    ),
    rule='a text, number, true/false, null or {"base64": "..."}',
    description="a record value; bytes as {base64}",
)
RECORD = Ref(
    name="Record",
    target=MapOf(
        values=_RECORD_VALUE,
        min_properties=1,
        description="data item -> value",
        example={"姓名": "张三"},
    ),
)
SENT = Ref(
    name="Sent",
    target=_fields(
        message_id=_HEX,
        digest=_HEX,
        recipients=Array(items=_NAME),
        expires_ms=_MS,
        repeated=Boolean(description="true: an earlier send with this idempotency key"),
    ),
)
_REFUSAL = Object(
    properties={
        "peer": Nullable(inner=_NAME),
        "address": Nullable(inner=_TEXT),
        "refused_by": _TEXT,
        "reason": _TEXT,
        "kind": _TEXT,
        "first_ms": _MS,
        "last_ms": _MS,
        "count": _COUNT,
    },
    required=("peer", "refused_by", "reason", "kind", "count"),
)
PEER_STATE = Ref(
    name="PeerState",
    target=Object(
        properties={
            "state": Text(enum=("up", "down", "unknown", "refused")),
            "failures": _COUNT,
            "retry_in_ms": _COUNT,
            "last_ok_ms": Nullable(inner=_MS),
            "refused": _REFUSAL,
        },
        required=("state", "failures", "retry_in_ms", "last_ok_ms"),
    ),
)
_CRL = Object(
    properties={
        "issuer": _TEXT,
        "number": Nullable(inner=_INT),
        "this_update": _ISO,
        "next_update": _ISO,
        "seconds_left": Nullable(inner=_INT),
        "revoked": _COUNT,
        "state": _TEXT,
        "sha256": _HEX,
    },
    required=("issuer", "state", "sha256"),
)
CRL_HEALTH = Ref(
    name="CrlHealth",
    target=Object(
        properties={
            "crl_warning_hours": Number(),
            "crls": Array(items=_CRL),
            "warnings": Array(
                items=Object(
                    properties={
                        "issuer": _TEXT,
                        "state": _TEXT,
                        "next_update": _ISO,
                        "problem": _TEXT,
                    },
                    required=("issuer", "state", "problem"),
                )
            ),
        },
        required=("crls", "warnings"),
    ),
)
_REFUSED_CRLS = Array(items=_fields(position=_COUNT, code=_TEXT, reason=_TEXT))
AUDIT_RECORD = Ref(
    name="AuditRecord",
    target=Object(
        properties={
            "seq": _COUNT,
            "time_ms": _MS,
            "time": _TEXT,
            "node": _TEXT,
            "category": _TEXT,
            "action": _TEXT,
            "actor": Object(properties={"role": _TEXT, "name": _TEXT}),
            "subject": Object(properties={"kind": _TEXT, "value": AnyValue()}),
            "outcome": Object(properties={"status": _TEXT, "code": _TEXT}),
            "detail": MapOf(),
            "error": _TEXT,
            "code": _TEXT,
        },
        required=("seq",),
        description="a decoded record; one that no longer decodes is {seq, error, code}",
    ),
)
_PAGE_NEXT = Nullable(inner=_COUNT, description="the 'from' of the next page, or null")


# --- parameters ----------------------------------------------------------------------------

_WAIT = Param(
    "wait",
    Number(minimum=0, maximum=MAX_WAIT, description="seconds to wait (long poll)"),
    default=0.0,
)


# a node name in a path or query, checked by the handler with the library's naming rules
_NODE_TEXT = Text(min_length=1, max_length=255)


def _in_path(name: str, schema: Schema) -> Param:
    """A parameter that is a segment of the path (always required)."""
    return Param(name, schema, where="path", required=True)


def _state_query(*states: str) -> Param:
    """``?state=``: one of ``states`` or ``all`` (the default) to list what is in any."""
    return Param("state", Text(enum=(*states, "all")), default="all")


_REQUEST_ID = _in_path("request_id", _ID32)
_CORRECTION_ID = _in_path("correction_id", _ID32)
_STATE_QUERY = _state_query(*_values(RequestState))
_FROM = Param("from", Integer(minimum=0, maximum=2**62), default=0)


def _limit(default: int) -> Param:
    return Param("limit", Integer(minimum=1, maximum=MAX_AUDIT_RECORDS), default=default)


_ANSWER_DECISION = _decision("reason", reason=_REASON)
# what a step of an operator's may answer beyond 200: bad input, nothing such, not now, refused
_DECISION_ERRORS = (400, 404, 409, 422)


def _request_step(path: str, summary: str, answer: Schema) -> Operation:
    """A step on one subscription request, taken by an operator who says why."""
    return Operation(
        "POST",
        path,
        summary,
        answer,
        params=(_REQUEST_ID,),
        body=_ANSWER_DECISION,
        errors=_DECISION_ERRORS,
    )


_CASE_ANSWER = _fields(request_id=_HEX, outcome=_TEXT)
_SEND_QUERY = (
    Param("to", Text(min_length=1, max_length=255, example="520102"), required=True, repeated=True),
    Param("kind", Text(min_length=1, max_length=64), default="data"),
    Param("content_type", Text(min_length=1, max_length=255), default="application/octet-stream"),
    Param("ttl", Number(minimum=0.001, maximum=1e9, description="seconds")),
    Param("receipt", Boolean(description="ask the recipients for a signed receipt"), default=False),
)
_IDEMPOTENCY = Text(
    min_length=1,
    max_length=255,
    pattern="[!-~]+",
    pattern_rule="1 to 255 visible ASCII characters",
    quoted=False,
    description="a retry with the same key answers the first message (repeated: true)",
)
_MESSAGE = Object(
    properties={
        "to": Array(items=Text(), min_items=1, description="recipients' node names"),
        "payload": Text(description="base64"),
        "kind": Text(),
        "content_type": Text(),
        "ttl": Number(minimum=0.001, maximum=1e9),
        "receipt": Boolean(),
        "idempotency_key": _IDEMPOTENCY,
    },
    required=("to",),
)
_DELIVERY = Object(
    properties={
        "id": _TEXT,
        "sender": _NAME,
        "message_id": _HEX,
        "kind": _TEXT,
        "content_type": _TEXT,
        "created_ms": _MS,
        "expires_ms": _MS,
        "receipt_requested": Boolean(),
        "payload": Text(description="base64"),
        "records": AnyValue(description="a sub.records delivery's records, as checked"),
        "records_error": ERROR,
    },
    required=("id", "sender", "message_id", "kind", "content_type", "payload"),
)
_STATUS = _fields(
    message_id=_HEX,
    settled=Boolean(),
    delivered_to=Array(items=_NAME),
    failed_for=Array(items=_NAME),
    receipts=Array(items=_fields(recipient=_NAME, envelope_digest=_HEX, opened_ms=_MS)),
    reports=Array(
        items=_fields(
            targets=Array(items=_NAME), code=_TEXT, reason=_TEXT, reporter=_NAME, at_ms=_MS
        )
    ),
)
_HEALTH = Object(
    properties={
        "name": _NAME,
        "status": Text(enum=("starting", "serving", "draining")),
        "uptime_s": Number(),
        "link_url": Nullable(inner=_TEXT),
        "queued": _DEPTH,
        "inbox": _DEPTH,
        "outbound": MapOf(values=_DEPTH),
        "peers": MapOf(values=PEER_STATE),
        "refusals": Array(items=_REFUSAL),
        "counters": MapOf(values=_INT),
        "directory": Object(properties={"mode": _TEXT, "known": Nullable(inner=_COUNT)}),
        "operator": Object(properties={"held": _COUNT, "leased": _COUNT}),
        "trust": CRL_HEALTH,
    },
    required=("name", "status", "uptime_s"),
)


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/health",
        "The node's health: 200 while serving, 503 starting or draining (no token needed)",
        _HEALTH,
        errors=(),
        other_answers={503: _HEALTH},  # starting or draining: the same object, its status says
    ),
    Operation(
        "GET",
        "/v1/openapi.json",
        "This document",
        _fields(openapi=Text(), info=MapOf(), paths=MapOf()),
        errors=(),
    ),
    # --- messages
    Operation(
        "POST",
        "/v1/send",
        "Send the body to one or more nodes; answers once the node holds it durably",
        SENT,
        params=_SEND_QUERY,
        raw_body=True,
        headers={"Idempotency-Key": _IDEMPOTENCY},
        errors=(400, 413, 422),
    ),
    Operation(
        "POST",
        "/v1/send-many",
        "Send several messages: one signature and one commit",
        _list_of("sent", SENT),
        body=_fields(messages=Array(items=_MESSAGE, min_items=1)),
        errors=(400, 413, 422),
    ),
    Operation(
        "GET",
        "/v1/receive",
        "Lease up to max deliveries (long poll); acknowledge them with /v1/ack",
        _list_of("deliveries", _DELIVERY),
        params=(
            Param("max", Integer(minimum=1, maximum=MAX_RECEIVE), default=1),
            _WAIT,
            Param("ack", Boolean(description="acknowledge before answering"), default=False),
        ),
    ),
    Operation(
        "POST",
        "/v1/ack",
        "Acknowledge leased deliveries by id: they are gone from the node",
        _fields(acked=_COUNT, unknown=Array(items=_TEXT)),
        body=_fields(ids=Array(items=Text(max_length=255), max_items=MAX_RECEIVE)),
    ),
    Operation(
        "GET",
        "/v1/status/{message_id}",
        "Receipts and non-delivery reports of a message this node sent",
        _STATUS,
        params=(
            _in_path(
                "message_id",
                Text(pattern="(?:[0-9a-fA-F]{2}){1,64}", pattern_rule="a hex message id"),
            ),
            Param("recipient", _NODE_TEXT, repeated=True),
            _WAIT,
        ),
    ),
    # --- the catalog
    Operation(
        "GET",
        "/v1/catalog",
        "Search the catalog this node holds (beyond=1: ask the hubs up the tree)",
        Object(
            properties={
                "records": Array(items=CATALOG_RECORD),
                "complete": Boolean(),
                "more": Boolean(),
            },
            required=("records",),
        ),
        params=(
            Param("code", Text(max_length=64)),
            Param("provider", Text(max_length=255)),
            Param("classification", Text(max_length=64)),
            Param("keyword", Text(max_length=255)),
            Param("share_type", Text(enum=_values(ShareType))),
            Param("level", Text(enum=tuple(LEVELS))),
            Param("status", Text(enum=("published", "withdrawn", "all")), default="published"),
            Param("beyond", Text(enum=("0", "1")), default="0"),
            Param("scope", Text(max_length=64), default=""),
            Param("limit", Integer(minimum=1, maximum=MAX_SEARCH_LIMIT), default=100),
        ),
        errors=(400, 422),
    ),
    Operation(
        "POST",
        "/v1/catalog/publish",
        "Publish (or update) catalog entries of this node, signed by the node",
        _RECORDS,
        body=Object(
            properties={
                "operator": _OPERATOR,
                "entry": ENTRY,
                "entries": Array(items=ENTRY, min_items=1, max_items=MAX_PUBLISH),
            },
            required=("operator",),
            missing=_needs("operator"),
            example={"operator": "张三", "entry": ENTRY_EXAMPLE},
        ),
        errors=(400, 409, 422),
    ),
    Operation(
        "POST",
        "/v1/catalog/withdraw",
        "Withdraw one of this node's entries",
        CATALOG_RECORD,
        body=_decision("code", "reason", code=_CODE, reason=_REASON),
        errors=_DECISION_ERRORS,
    ),
    Operation(
        "GET",
        "/v1/catalog/{provider}/{code:.+}",
        "One catalog entry, held here or asked up the tree",
        CATALOG_RECORD,
        params=(
            _in_path("provider", _NODE_TEXT),
            _in_path("code", Text(min_length=1, max_length=64)),
        ),
        errors=(400, 404, 422),
    ),
    # --- subscriptions: the requester
    Operation(
        "POST",
        "/v1/sub/requests",
        "Ask a provider for a resource's data items",
        SENT_REQUEST,
        body=_decision(
            "provider",
            "code",
            "purpose",
            "scope",
            "items",
            provider=_NAME,
            code=_CODE,
            purpose=_REASON,
            scope=_REASON,
            items=Array(items=Text(min_length=1), min_items=1),
        ),
        errors=_DECISION_ERRORS,
    ),
    Operation(
        "GET",
        "/v1/sub/requests",
        "The requests this node sent, with their states",
        _list_of("requests", SENT_REQUEST),
        params=(_STATE_QUERY,),
    ),
    Operation(
        "GET",
        "/v1/sub/requests/{request_id}",
        "One request this node sent",
        SENT_REQUEST,
        params=(_REQUEST_ID,),
        errors=(400, 404),
    ),
    _request_step(
        "/v1/sub/requests/{request_id}/escalate",
        "Escalate a refused or expired request to the provider's sharing authority",
        SENT_REQUEST,
    ),
    # --- subscriptions: the provider
    Operation(
        "GET",
        "/v1/sub/incoming",
        "Requests this node received as provider, oldest first",
        _list_of("requests", INCOMING_REQUEST),
        params=(_STATE_QUERY,),
    ),
    Operation(
        "POST",
        "/v1/sub/incoming/{request_id}/approve",
        "Grant a request (items, masks and an end date optional)",
        INCOMING_REQUEST,
        params=(_REQUEST_ID,),
        body=_decision(
            items=_ITEMS,
            masks=MASKS,
            expires=Text(min_length=1, max_length=64, description="ISO date or date-time (CST)"),
        ),
        errors=_DECISION_ERRORS,
    ),
    _request_step(
        "/v1/sub/incoming/{request_id}/refuse", "Refuse a pending request", INCOMING_REQUEST
    ),
    _request_step(
        "/v1/sub/incoming/{request_id}/revoke",
        "End a grant from the next record on",
        INCOMING_REQUEST,
    ),
    # --- the sharing authority
    Operation(
        "GET",
        "/v1/sub/cases",
        "Open escalations against providers of this hub's division",
        _fields(
            cases=Array(
                items=Object(
                    properties={
                        "request_id": _HEX,
                        "requester": _NAME,
                        "provider": _NAME,
                        "authority": _NAME,
                        "resource_code": _CODE,
                        "round": _INT,
                        "grounds": _TEXT,
                        "reason": _TEXT,
                        "at_ms": _MS,
                        "at": _ISO,
                    },
                    required=("request_id", "requester", "provider", "resource_code"),
                )
            )
        ),
    ),
    _request_step(
        "/v1/sub/cases/{request_id}/re-review",
        "Send a case back to its provider with a fresh deadline",
        _CASE_ANSWER,
    ),
    _request_step("/v1/sub/cases/{request_id}/uphold", "Close a case", _CASE_ANSWER),
    # --- records
    Operation(
        "POST",
        "/v1/sub/publish",
        "Publish records of a resource to every live grant, masked",
        _fields(code=_CODE, first_seq=_INT, last_seq=_INT, subscribers=_COUNT, envelopes=_COUNT),
        body=_decision(
            "code",
            "records",
            code=_CODE,
            records=Array(items=RECORD, min_items=1, max_items=MAX_RECORDS),
        ),
        errors=_DECISION_ERRORS,
    ),
    Operation(
        "POST",
        "/v1/sub/fill-gaps",
        "Ask a provider to resend the records this node misses",
        _fields(provider=_NAME, resource_code=_CODE, asked=Array(items=Array(items=_INT))),
        body=_decision("provider", "code", provider=_NAME, code=_CODE),
        errors=_DECISION_ERRORS,
    ),
    Operation(
        "GET",
        "/v1/sub/parked",
        "Sharing messages the node could not send and holds",
        _fields(
            parked=Array(
                items=Object(
                    properties={
                        "number": _INT,
                        "kind": _TEXT,
                        "recipients": Array(items=_NAME),
                        "code": _TEXT,
                        "reason": _TEXT,
                        "at_ms": _MS,
                        "size": _COUNT,
                    },
                    required=("number", "kind", "recipients", "code", "reason"),
                )
            )
        ),
    ),
    Operation(
        "POST",
        "/v1/sub/parked/retry",
        "Send parked messages again (all without numbers)",
        _fields(sent=Array(items=_INT), parked=_COUNT),
        body=_decision(numbers=Array(items=Integer(minimum=1), min_items=1)),
        errors=_DECISION_ERRORS,
    ),
    Operation(
        "POST",
        "/v1/sub/parked/drop",
        "Drop parked messages for good",
        _fields(dropped=Array(items=_INT), parked=_COUNT),
        body=_decision("numbers", numbers=Array(items=Integer(minimum=1), min_items=1)),
        errors=_DECISION_ERRORS,
    ),
    # --- corrections
    Operation(
        "POST",
        "/v1/sub/corrections",
        "Report a received record as wrong in some data items (校核)",
        CORRECTION,
        body=_decision(
            "provider",
            "code",
            "seq",
            "items",
            "text",
            provider=_NAME,
            code=_CODE,
            seq=Integer(minimum=1, maximum=2**63 - 1),
            items=Array(items=Text(min_length=1), min_items=1),
            text=_CORRECTION_TEXT,
        ),
        errors=_DECISION_ERRORS,
    ),
    Operation(
        "GET",
        "/v1/sub/corrections",
        "The corrections this node reported",
        _list_of("corrections", CORRECTION),
        params=(_state_query(*_values(CorrectionState), "sent"),),
    ),
    Operation(
        "GET",
        "/v1/sub/corrections/{correction_id}",
        "One correction this node reported: state and answer",
        CORRECTION,
        params=(_CORRECTION_ID,),
        errors=(400, 404),
    ),
    Operation(
        "GET",
        "/v1/sub/incoming-corrections",
        "Open corrections received as provider, oldest first",
        _list_of("corrections", CORRECTION),
    ),
    Operation(
        "POST",
        "/v1/sub/incoming-corrections/{correction_id}/answer",
        "Answer a correction once, accepted or rejected",
        CORRECTION,
        params=(_CORRECTION_ID,),
        body=_decision(
            "accepted",
            "text",
            accepted=Boolean(),
            text=_CORRECTION_TEXT,
        ),
        errors=_DECISION_ERRORS,
    ),
    # --- the auditor
    Operation(
        "GET",
        "/v1/audit/verify",
        "Sign a head over what is pending, then check the stored log end to end",
        Object(
            properties={
                "node": _NAME,
                "ok": Boolean(),
                "size": _COUNT,
                "first_seq": _COUNT,
                "records": _COUNT,
                "heads": _COUNT,
                "verified_size": _COUNT,
                "last_head": Nullable(inner=MapOf()),
                "findings": Array(items=_fields(kind=_TEXT, message=_TEXT)),
            },
            required=("node", "ok", "size", "verified_size", "findings", "last_head"),
        ),
        params=(
            Param(
                "witnessed",
                Text(max_length=4096, description="a head the parent keeps, base64url"),
                repeated=True,
            ),
        ),
    ),
    Operation(
        "GET",
        "/v1/audit/records",
        "A page of the stored audit records, decoded",
        _fields(size=_COUNT, records=Array(items=AUDIT_RECORD), next=_PAGE_NEXT),
        params=(_FROM, _limit(DEFAULT_AUDIT_RECORDS)),
    ),
    Operation(
        "GET",
        "/v1/audit/export",
        "A page of the stored audit records as stored: [seq, base64]",
        _fields(
            size=_COUNT,
            records=Array(items=Array(items=OneOf(choices=(_INT, _TEXT)))),
            next=_PAGE_NEXT,
        ),
        params=(_FROM, _limit(MAX_AUDIT_RECORDS)),
    ),
    Operation(
        "GET",
        "/v1/audit/catalog",
        "The catalog this node holds, tombstones included",
        _RECORDS,
    ),
    Operation(
        "GET",
        "/v1/audit/witnessed",
        "Per child: the head this hub keeps and its last verdict",
        _fields(children=Array(items=MapOf())),
    ),
    # --- the administrator
    Operation(
        "GET",
        "/v1/admin/config",
        "The configuration the daemon runs with (no secret), and whether node.toml changed",
        Object(
            properties={
                "path": _TEXT,
                "node": MapOf(),
                "digest": Nullable(inner=_HEX),
                "file_digest": Nullable(inner=_HEX),
                "file_changed": Boolean(),
                "credentials": Array(items=_TEXT),
            },
            required=("path", "node", "file_changed", "credentials"),
        ),
    ),
    Operation(
        "GET",
        "/v1/admin/identity",
        "The node's certificate, chain and key ids",
        _fields(
            name=_NAME,
            signing_key_id=_HEX,
            encryption_key_id=_HEX,
            certificate=Nullable(inner=MapOf()),
            chain=Array(items=_TEXT),
        ),
    ),
    Operation(
        "GET",
        "/v1/admin/peers",
        "Every configured link: state, failures, queue",
        Object(
            properties={
                "name": _NAME,
                "peers": Array(
                    items=Object(
                        properties={
                            "name": _NAME,
                            "relation": _RELATION,
                            "url": _TEXT,
                            "state": _TEXT,
                            "queued": _DEPTH,
                            "handed_over": _DEPTH,
                            "source": _PEER_SOURCE,
                        },
                        required=("name", "relation", "url", "state", "queued"),
                    )
                ),
                "admission": Text(enum=ADMISSION_POLICIES),
            },
            required=("name", "peers"),
        ),
        errors=(503,),
    ),
    Operation(
        "POST",
        "/v1/admin/peers",
        "Take a neighbour now, without a restart (kept in the store until removed)",
        _fields(name=_NAME, relation=_RELATION, url=_TEXT, source=_PEER_SOURCE),
        body=_admin_action(name=_NAME, relation=_RELATION, url=Text(min_length=1)),
        errors=(400, 409),
    ),
    _admin_step(
        "/v1/admin/peers/reload",
        "Read node.toml's [[peers]] again, as SIGHUP does; a file that does not load changes "
        "nothing",
        Object(
            properties={
                key: Array(items=_TEXT) for key in ("added", "removed", "changed", "next_start")
            },
            required=("added", "removed", "changed", "next_start"),
        ),
        errors=(400, 409),
    ),
    _admin_step(
        "/v1/admin/peers/{name}/remove",
        "Stop taking a neighbour added or admitted while running (a configured one: edit the file)",
        _fields(name=_NAME, removed=Boolean(), was=_PEER_SOURCE),
        params=(_in_path("name", Text(min_length=1, max_length=255)),),
        errors=(400, 404, 409),
    ),
    _admin_step(
        "/v1/admin/peers/{name}/retry",
        "Try that link now (its backoff reset)",
        _fields(peer=_TEXT, retrying=Boolean()),
        params=(_in_path("name", _NODE_TEXT),),
        errors=(400, 404),
    ),
    _admin_step(
        "/v1/admin/credentials/reload",
        "Re-read every role's token file",
        _fields(roles=MapOf(values=_TEXT)),
        errors=(400, 409),
    ),
    _admin_step(
        "/v1/admin/witnessed/{child}/reset",
        "Forget the head kept for a child: its next head is a first head",
        _fields(child=_TEXT, reset=Boolean()),
        params=(_in_path("child", _NODE_TEXT),),
        errors=(400, 404),
    ),
    Operation(
        "GET",
        "/v1/admin/crls",
        "The CRLs the node checks peers against, and their warnings",
        CRL_HEALTH,
    ),
    Operation(
        "POST",
        "/v1/admin/crls",
        "Give the running node fresh CRLs (PEM): checked, kept, passed on to every node",
        _list_of("taken", _CRL),
        body=_admin_action(
            pem=Text(min_length=1, description="one or more PEM CRLs (-----BEGIN X509 CRL-----)")
        ),
        errors=(400, 422),
    ),
    _admin_step(
        "/v1/admin/crls/reload",
        "Read [trust] crls again, as SIGHUP does",
        _fields(current=Array(items=_CRL), refused=_REFUSED_CRLS),
        errors=(400, 409),
    ),
    _admin_step(
        "/v1/admin/backup",
        "An online backup of this node's state as one tar: manifest, store, config, CRLs, "
        "signature (no keys, tokens or secrets)",
        Text(description="the tar file (application/x-tar), streamed"),
        errors=(400, 409),
        answer_type="application/x-tar",
    ),
    # --- monitoring and the console (read-only; two roles read them: node.roles)
    Operation(
        "GET",
        "/metrics",
        "Prometheus metrics (text exposition format 0.0.4): queues, links, refusals, custody "
        "times, directory, catalog, audit head, certificate and CRL expiry",
        Text(),
        errors=(),
        answer_type="text/plain",
    ),
    *(
        Operation(
            "GET",
            path,
            f"The web console's {what} (no token: it holds no data)",
            Text(),
            errors=(),
            answer_type=media,
        )
        for path, what, media in (
            ("/console", "page", "text/html"),
            ("/console/", "page", "text/html"),
            ("/console/console.js", "script", "text/javascript"),
            ("/console/console.css", "style sheet", "text/css"),
        )
    ),
    Operation(
        "GET",
        "/v1/console/overview",
        "Every panel of the console in one answer: node, queues, neighbours, refusals, "
        "subscription requests waiting with their deadlines, audit, certificates, CRLs",
        MapOf(),
        errors=(),
    ),
    Operation(
        "GET",
        "/v1/console/catalog",
        "The catalog records this node holds whose texts hold every word of q",
        _fields(query=_TEXT, found=_COUNT, held=_COUNT, records=Array(items=CATALOG_RECORD)),
        params=(
            Param("q", Text(max_length=200), default=""),
            Param("status", Text(enum=("published", "withdrawn", "all")), default="published"),
            Param(
                "limit", Integer(minimum=1, maximum=MAX_CATALOG_SHOWN), default=MAX_CATALOG_SHOWN
            ),
        ),
    ),
)

_BY_ROUTE = {(op.method, op.path): op for op in OPERATIONS}
assert len(_BY_ROUTE) == len(OPERATIONS), "an operation is declared twice"


def operation_for(method: str, path: str) -> Operation | None:
    """The operation declared for a route (its aiohttp template), or None."""
    return _BY_ROUTE.get((method, path))


def _parameters(operation: Operation, request: web.Request) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for param in operation.params:
        if param.where == "path":
            values[param.name] = param.schema.parse(request.match_info[param.name], param.name)
            continue
        texts = request.query.getall(param.name, [])
        if param.repeated:
            values[param.name] = [
                param.schema.parse(text, f"{param.name}[{i}]") for i, text in enumerate(texts)
            ]
            if param.required and not texts:
                raise FormError(param.name, f"is required: ?{param.name}=...")
        elif texts:
            values[param.name] = param.schema.parse(texts[0], param.name)
        elif param.required:
            raise FormError(param.name, f"is required: ?{param.name}=...")
        else:
            values[param.name] = param.default
    for name, schema in operation.headers.items():
        text = request.headers.get(name)
        values[name] = None if text is None else schema.check(text, name)
    return values


def validated(operation: Operation, handler: Handler) -> Handler:
    """``handler`` behind its operation's checks: parameters parsed, the JSON body checked.

    A JSON body is read (and refused when it is no sane JSON object) and then
    checked against ``operation.body`` before the handler runs; the handler
    reads the checked document with ``node.api.json_body`` and the parsed
    parameters with ``node.api.checked_params``.
    """

    async def checked(request: web.Request) -> web.StreamResponse:
        params = _parameters(operation, request)
        body = None
        if operation.body is not None:
            body = operation.body.check(await json_body(request), "")
        with checked_request(params, body):
            return await handler(request)

    checked.__name__ = getattr(handler, "__name__", "handler")
    return checked
