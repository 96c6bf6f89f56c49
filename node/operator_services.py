"""The operator API's catalog and subscription endpoints (``/v1/catalog``, ``/v1/sub``).

Theory of operation
-------------------
Thin handlers over the node's :class:`~exchnode.aio.CatalogService`
and :class:`~exchnode.aio.SharingService`: JSON in, the library call,
JSON out (``node.forms`` does every translation).  The guard of
``node.operator`` has already checked the token and the phase, and turns
the library's errors into 4xx answers.

**Who decided.**  Every call that changes something -- publish, withdraw,
subscribe, escalate, approve, refuse, revoke, re-review, uphold, report or
answer a correction, fill gaps -- carries
the person acting as the field ``"operator"`` of its JSON body (1..64
characters, no control characters; 400 without it).  A body field rather
than a header because operators' names are often Chinese, which HTTP
headers do not carry.  The catalog and sharing services record it as the
``actor`` of the step's audit event (a catalog record is still signed by the
node: the operator acts for it).

**Records.**  ``POST /v1/sub/publish`` hands a provider's records to
``SharingService.publish_records`` (numbered, projected and masked per live
grant, pushed at once); at the subscriber, :meth:`ServicesApi.annotate`
reads each ``sub.records`` delivery once with ``read_records`` as it enters
the operator inbox, and every lease of it carries the result.

**Own requests.**  The sharing service answers ``state(request_id)`` but
cannot list the requests this node sent, so the daemon keeps that list (id,
provider, resource, purpose, scope, items, when, who) in the node's store
(``meta`` key ``node.sub.sent``) and asks the service for each one's state.

**Corrections** (校核).  A subscriber reports a record it believes wrong
(``report_correction``); the provider lists the open reports
(``corrections``) and answers each once (``answer_correction``).  As for
requests, the service keeps each correction's state and answer but cannot
list those this node reported, so the daemon keeps that list in the store
(``meta`` key ``node.sub.corrections``), bounded to the newest
:data:`MAX_REPORTED` (answered ones go first); an id that fell off the list is
still shown, from the service, by state and answer alone.

**Gaps.**  ``POST /v1/sub/fill-gaps`` asks a provider to resend what the
subscriber's gap tracker misses of a resource (``fill_gaps``); every lease of
a ``sub.records`` delivery already names the gaps still open (``missing``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from exchnode.aio import CatalogService, Delivery, SharingService
from exchnode.catalog import CatalogQuery, ShareType, check_code
from exchnode.errors import ExchnodeError, MalformedError, UsageError
from exchnode.sharing import Correction, CorrectionState, Grant, RecordBatch, RequestState

from .api import HTTPProblem, checked_params, json_body
from .forms import (
    FormError,
    correction_answer_json,
    correction_json,
    entry_from_json,
    escalation_json,
    grant_json,
    iso_ms,
    level_named,
    masks_from_json,
    node_name,
    parse_request_id,
    parse_time,
    received_records_json,
    record_from_json,
    record_json,
    request_json,
    status_named,
)

if TYPE_CHECKING:
    from exchnode.aio import Node

__all__ = ["MAX_OPERATOR_CHARS", "MAX_REPORTED", "ServicesApi", "operator_of"]

MAX_OPERATOR_CHARS = 64
MAX_PUBLISH = 500  # entries per call: one signature for them all
MAX_RECORDS = 100_000  # records per publish call
MAX_REPORTED = 1000  # corrections this node reported, kept in its list
MAX_CORRECTION_TEXT = 2048  # characters, the wire's limit
_SENT_KEY = "node.sub.sent"
_REPORTED_KEY = "node.sub.corrections"
_STATES = {state.value: state for state in RequestState}
_CORRECTION_STATES = (*(state.value for state in CorrectionState), "sent")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def operator_of(document: dict[str, Any]) -> str:
    """The ``operator`` field of a decision's body: who acts, for the audit event."""
    value = document.get("operator")
    if value is None:
        raise HTTPProblem(400, "name the person acting: the body needs an 'operator' field")
    if not isinstance(value, str) or not 0 < len(value.strip()) <= MAX_OPERATOR_CHARS:
        raise HTTPProblem(400, f"operator must be a text of 1..{MAX_OPERATOR_CHARS} characters")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in value):
        raise HTTPProblem(400, "operator must not contain control characters")
    return value.strip()


def _text(document: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = document.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise HTTPProblem(400, f"'{name}' must be a non-empty text")
    return value


def _code(document: dict[str, Any]) -> str:
    """The ``code`` field: a resource code (``101001/000001``; 400 naming the rule otherwise)."""
    value = _text(document, "code")
    try:
        return check_code(value, "code")
    except MalformedError as exc:
        raise FormError("code", exc.problem) from None


def _provider(document: dict[str, Any]) -> str:
    """The ``provider`` field: a node's name (400 naming the field otherwise)."""
    _text(document, "provider")
    return node_name(document["provider"], "provider")


def _names(document: dict[str, Any], name: str) -> list[str] | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HTTPProblem(400, f"'{name}' must be a list of data item names")
    return value


def _state_query(request: web.Request) -> RequestState | None:
    """The ``state`` asked for (checked against the states: ``node.operations``); all: None."""
    text = checked_params()["state"]
    return None if text == "all" else _STATES[text]


class ServicesApi:
    """The catalog and sharing endpoints of one node's operator API."""

    def __init__(self, node: Node, catalog: CatalogService, sharing: SharingService) -> None:
        self.node = node
        self.catalog = catalog
        self.sharing = sharing
        self.log: Any = structlog.get_logger("node.operator").bind(node=node.name)
        self._sent: dict[str, dict[str, Any]] | None = None  # request id hex -> what we sent
        self._reported: dict[str, dict[str, Any]] | None = None  # correction id hex -> report

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v1/catalog", self._search),
            ("POST", "/v1/catalog/publish", self._publish),
            ("POST", "/v1/catalog/withdraw", self._withdraw),
            ("GET", "/v1/catalog/{provider}/{code:.+}", self._show),
            ("POST", "/v1/sub/requests", self._subscribe),
            ("GET", "/v1/sub/requests", self._sent_list),
            ("GET", "/v1/sub/requests/{request_id}", self._sent_one),
            ("POST", "/v1/sub/requests/{request_id}/escalate", self._escalate),
            ("GET", "/v1/sub/incoming", self._incoming),
            ("POST", "/v1/sub/incoming/{request_id}/approve", self._approve),
            ("POST", "/v1/sub/incoming/{request_id}/refuse", self._refuse),
            ("POST", "/v1/sub/incoming/{request_id}/revoke", self._revoke),
            ("GET", "/v1/sub/cases", self._cases),
            ("POST", "/v1/sub/cases/{request_id}/re-review", self._re_review),
            ("POST", "/v1/sub/cases/{request_id}/uphold", self._uphold),
            ("POST", "/v1/sub/publish", self._publish_records),
            ("POST", "/v1/sub/fill-gaps", self._fill_gaps),
            ("GET", "/v1/sub/parked", self._parked),
            ("POST", "/v1/sub/parked/retry", self._retry_parked),
            ("POST", "/v1/sub/parked/drop", self._drop_parked),
            ("POST", "/v1/sub/corrections", self._report_correction),
            ("GET", "/v1/sub/corrections", self._reported_list),
            ("GET", "/v1/sub/corrections/{correction_id}", self._reported_one),
            ("GET", "/v1/sub/incoming-corrections", self._incoming_corrections),
            ("POST", "/v1/sub/incoming-corrections/{correction_id}/answer", self._answer),
        ]

    async def annotate(self, delivery: Delivery) -> dict[str, Any] | None:
        """For the inbox: a ``sub.records`` delivery read once, as the sharing service checks it."""
        if delivery.kind != RecordBatch.KIND:
            return None
        try:
            received = await self.sharing.read_records(delivery)
        except ExchnodeError as exc:
            self.log.warning(
                "records not readable", sender=delivery.sender, code=exc.code, reason=str(exc)
            )
            return {"records_error": {"error": str(exc), "code": exc.code}}
        return {"records": received_records_json(received)}

    # --- the catalog ---------------------------------------------------------------------

    async def _search(self, request: web.Request) -> web.Response:
        query = checked_params()  # checked: enumerations and bounds (node.operations)
        criteria: dict[str, Any] = {
            name: query[name]
            for name in ("code", "provider", "classification", "keyword")
            if query[name] is not None
        }
        if query["share_type"] is not None:
            criteria["share_type"] = ShareType(query["share_type"])
        if query["level"] is not None:
            criteria["level"] = level_named(query["level"])
        criteria["status"] = status_named(query["status"])
        if query["beyond"] != "1":
            records = self.catalog.search(**criteria)
            return web.json_response({"records": [record_json(r) for r in records]})
        # A catalog at every level: the hubs up the tree answer what this node does not hold.
        try:
            found = await self.catalog.search_beyond(
                CatalogQuery(scope=query["scope"], limit=query["limit"], **criteria)
            )
        except MalformedError as exc:
            raise FormError(exc.field, exc.problem) from None
        return web.json_response(
            {
                "records": [record_json(r) for r in found.records],
                "complete": found.complete,
                "more": found.more,
            }
        )

    async def _show(self, request: web.Request) -> web.Response:
        provider, code = request.match_info["provider"], request.match_info["code"]
        record = await self.catalog.lookup(provider, code)  # held here, or asked up the tree
        if record is None:
            raise HTTPProblem(
                404, f"{self.node.name} holds no catalog entry {code} of {provider}", "not-found"
            )
        return web.json_response(record_json(record))

    async def _publish(self, request: web.Request) -> web.Response:
        document = await json_body(request)
        operator = operator_of(document)
        if "entry" in document and "entries" in document:
            raise HTTPProblem(400, "give 'entry' or 'entries', not both")
        if "entry" in document:
            raw = [document["entry"]]
        elif isinstance(document.get("entries"), list) and document["entries"]:
            raw = document["entries"]
        else:
            raise HTTPProblem(400, "the body needs 'entry' (an object) or 'entries' (a list)")
        entries = []
        for index, item in enumerate(raw):
            try:
                entries.append(entry_from_json(item, self.node.name))
            except FormError as exc:
                if len(raw) == 1:
                    raise
                raise FormError(f"entries[{index}].{exc.field}", str(exc)) from None
        records = await self.catalog.publish(entries, operator=operator)
        return web.json_response({"records": [record_json(r) for r in records]})

    async def _withdraw(self, request: web.Request) -> web.Response:
        document = await json_body(request)
        operator = operator_of(document)
        code = _code(document)
        record = await self.catalog.withdraw(code, _text(document, "reason"), operator=operator)
        return web.json_response(record_json(record))

    # --- the requester ---------------------------------------------------------------------

    async def _ledger(self) -> dict[str, dict[str, Any]]:
        if self._sent is None:
            self._sent = await self._load_list(_SENT_KEY, "request_id", "sent requests")
        return self._sent

    async def _load_list(self, key: str, id_field: str, what: str) -> dict[str, dict[str, Any]]:
        """One of the daemon's own lists in the store's meta: id hex -> item."""
        stored = await self.node.get_meta(key)
        if stored is None:
            return {}
        try:
            return {item[id_field]: item for item in json.loads(stored)}
        except (ValueError, TypeError, KeyError):
            self.log.error(f"stored list of {what} not used")
            return {}

    async def _store_list(self, key: str, items: dict[str, dict[str, Any]]) -> None:
        await self.node.set_meta(key, json.dumps(list(items.values()), ensure_ascii=False).encode())

    def _sent_json(self, item: dict[str, Any]) -> dict[str, Any]:
        request_id = bytes.fromhex(item["request_id"])
        state = self.sharing.state(request_id)
        grant = self._held_grant(request_id) if state is RequestState.GRANTED else None
        out = dict(item)
        out["at"] = iso_ms(item["at_ms"])
        out["state"] = state.value if state is not None else "sent"
        out["reason"] = self.sharing.reason(request_id) if state is not None else ""
        out["grant"] = None if grant is None else grant_json(grant)
        return out

    def _held_grant(self, request_id: bytes) -> Grant | None:
        for grant in self.sharing.held():
            if grant.request_id == request_id:
                return grant
        return None

    async def _subscribe(self, request: web.Request) -> web.Response:
        document = await json_body(request)
        operator = operator_of(document)
        provider, code = _provider(document), _code(document)
        purpose, scope = _text(document, "purpose"), _text(document, "scope")
        items = _names(document, "items")
        if not items:
            raise HTTPProblem(400, "'items' must name at least one data item")
        ledger = await self._ledger()
        request_id = await self.sharing.subscribe(
            provider, code, purpose=purpose, scope=scope, items=items, operator=operator
        )
        item: dict[str, Any] = {
            "request_id": request_id.hex(),
            "provider": provider,
            "resource_code": code,
            "purpose": purpose,
            "scope": scope,
            "items": sorted(set(items)),
            "at_ms": int(time.time() * 1000),
            "operator": operator,
        }
        ledger[item["request_id"]] = item
        await self._store_list(_SENT_KEY, ledger)
        return web.json_response(self._sent_json(item))

    async def _sent_list(self, request: web.Request) -> web.Response:
        wanted = _state_query(request)
        ledger = await self._ledger()
        items = [self._sent_json(item) for item in ledger.values()]
        if wanted is not None:
            items = [item for item in items if item["state"] == wanted.value]
        items.sort(key=lambda item: (item["at_ms"], item["request_id"]))
        return web.json_response({"requests": items})

    async def _sent_item(self, request: web.Request) -> dict[str, Any]:
        request_id = parse_request_id(request.match_info["request_id"])
        item = (await self._ledger()).get(request_id.hex())
        if item is None:
            raise HTTPProblem(
                404, f"{self.node.name} sent no request {request_id.hex()}", "not-found"
            )
        return item

    async def _sent_one(self, request: web.Request) -> web.Response:
        return web.json_response(self._sent_json(await self._sent_item(request)))

    async def _escalate(self, request: web.Request) -> web.Response:
        item = await self._sent_item(request)
        document = await json_body(request)
        operator = operator_of(document)
        await self.sharing.escalate(
            bytes.fromhex(item["request_id"]), operator=operator, reason=_text(document, "reason")
        )
        return web.json_response(self._sent_json(item))

    # --- the provider ----------------------------------------------------------------------

    def _incoming_json(self, request_id: bytes) -> dict[str, Any]:
        for received in self.sharing.requests():
            if received.request_id == request_id:
                state = self.sharing.state(request_id)
                return request_json(received, state)
        raise HTTPProblem(
            404, f"{self.node.name} received no request {request_id.hex()}", "not-found"
        )

    async def _incoming(self, request: web.Request) -> web.Response:
        wanted = _state_query(request)
        received = self.sharing.requests(state=wanted)
        return web.json_response(
            {"requests": [request_json(r, self.sharing.state(r.request_id)) for r in received]}
        )

    async def _decision(self, request: web.Request) -> tuple[bytes, dict[str, Any], str]:
        request_id = parse_request_id(request.match_info["request_id"])
        self._incoming_json(request_id)  # 404 unless this node received it
        document = await json_body(request)
        return request_id, document, operator_of(document)

    async def _approve(self, request: web.Request) -> web.Response:
        request_id, document, operator = await self._decision(request)
        masks = masks_from_json(document["masks"]) if document.get("masks") else None
        expires = document.get("expires")
        grant = await self.sharing.approve(
            request_id,
            operator=operator,
            items=_names(document, "items"),
            masks=masks,
            expires_ms=None if expires is None else parse_time(expires, "expires"),
        )
        answer = self._incoming_json(request_id)
        answer["grant"] = grant_json(grant)
        return web.json_response(answer)

    async def _refuse(self, request: web.Request) -> web.Response:
        request_id, document, operator = await self._decision(request)
        await self.sharing.refuse(request_id, operator=operator, reason=_text(document, "reason"))
        return web.json_response(self._incoming_json(request_id))

    async def _revoke(self, request: web.Request) -> web.Response:
        request_id, document, operator = await self._decision(request)
        await self.sharing.revoke(request_id, operator=operator, reason=_text(document, "reason"))
        return web.json_response(self._incoming_json(request_id))

    # --- the sharing authority ---------------------------------------------------------------

    async def _cases(self, request: web.Request) -> web.Response:
        return web.json_response({"cases": [escalation_json(c) for c in self.sharing.cases()]})

    async def _case(self, request: web.Request) -> tuple[bytes, dict[str, Any], str]:
        request_id = parse_request_id(request.match_info["request_id"])
        if all(case.request_id != request_id for case in self.sharing.cases()):
            raise HTTPProblem(
                404,
                f"{self.node.name} has no open case for request {request_id.hex()}",
                "not-found",
            )
        document = await json_body(request)
        return request_id, document, operator_of(document)

    async def _re_review(self, request: web.Request) -> web.Response:
        request_id, document, operator = await self._case(request)
        await self.sharing.re_review(
            request_id, operator=operator, reason=_text(document, "reason")
        )
        return web.json_response({"request_id": request_id.hex(), "outcome": "re-review"})

    async def _uphold(self, request: web.Request) -> web.Response:
        request_id, document, operator = await self._case(request)
        await self.sharing.uphold(request_id, operator=operator, reason=_text(document, "reason"))
        return web.json_response({"request_id": request_id.hex(), "outcome": "uphold"})

    # --- records -------------------------------------------------------------------------------

    async def _publish_records(self, request: web.Request) -> web.Response:
        document = await json_body(request)
        operator = operator_of(document)
        code = _code(document)
        raw = document["records"]  # checked: 1..MAX_RECORDS objects (node.operations)
        records = [record_from_json(item, f"records[{i}]") for i, item in enumerate(raw)]
        published = await self.sharing.publish_records(code, records, operator=operator)
        self.log.info(
            "records published",
            operator=operator,
            code=code,
            first_seq=published.first_seq,
            last_seq=published.last_seq,
            subscribers=published.subscribers,
        )
        return web.json_response(
            {
                "code": code,
                "first_seq": published.first_seq,
                "last_seq": published.last_seq,
                "subscribers": published.subscribers,
                "envelopes": published.envelopes,
            }
        )

    async def _fill_gaps(self, request: web.Request) -> web.Response:
        document = await json_body(request)
        operator = operator_of(document)
        provider, code = _provider(document), _code(document)
        asked = await self.sharing.fill_gaps(provider, code)
        self.log.info(
            "records asked again", operator=operator, provider=provider, code=code, ranges=asked
        )
        return web.json_response(
            {"provider": provider, "resource_code": code, "asked": [list(gap) for gap in asked]}
        )

    # --- messages the node refused for good (parked) -----------------------------------------

    async def _parked(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "parked": [
                    {
                        "number": p.number,
                        "kind": p.kind,
                        "recipients": list(p.recipients),
                        "code": p.code,
                        "reason": p.reason,
                        "at_ms": p.at_ms,
                        "size": p.size,
                    }
                    for p in self.sharing.parked()
                ]
            }
        )

    async def _retry_parked(self, request: web.Request) -> web.Response:
        document = await json_body(request)
        operator = operator_of(document)
        numbers = document.get("numbers")  # checked: absent (all), or parked numbers
        sent = await self.sharing.retry_parked(numbers)
        self.log.info("parked sharing messages retried", operator=operator, sent=sent)
        return web.json_response({"sent": sent, "parked": len(self.sharing.parked())})

    async def _drop_parked(self, request: web.Request) -> web.Response:
        document = await json_body(request)
        operator = operator_of(document)
        numbers = document["numbers"]  # checked: required, parked numbers
        await self.sharing.drop_parked(numbers, operator=operator)
        return web.json_response({"dropped": numbers, "parked": len(self.sharing.parked())})

    # --- corrections (校核): the subscriber ---------------------------------------------------

    async def _reported_ledger(self) -> dict[str, dict[str, Any]]:
        if self._reported is None:
            self._reported = await self._load_list(
                _REPORTED_KEY, "correction_id", "reported corrections"
            )
        return self._reported

    def _correction_now(self, correction_id: bytes) -> tuple[str, dict[str, Any] | None] | None:
        """(state, answer) of a correction this node reported, from the service; None if unknown."""
        try:
            answer = self.sharing.correction_answer(correction_id)  # the tracker's, or UsageError
            state = self.sharing.correction_state(correction_id)
        except UsageError:
            return None
        return state.value, correction_answer_json(answer)

    def _reported_json(self, item: dict[str, Any]) -> dict[str, Any]:
        out = dict(item)
        out["at"] = iso_ms(item["at_ms"])
        now = self._correction_now(bytes.fromhex(item["correction_id"]))
        out["state"], out["answer"] = now if now is not None else ("sent", None)
        return out

    def _keep_bounded(self, ledger: dict[str, dict[str, Any]]) -> None:
        """At most :data:`MAX_REPORTED`: the oldest answered go first, then the oldest."""
        excess = len(ledger) - MAX_REPORTED
        if excess <= 0:
            return
        oldest = sorted(ledger.values(), key=lambda item: (item["at_ms"], item["correction_id"]))
        ids = [item["correction_id"] for item in oldest]
        answered = [
            cid for cid, item in zip(ids, oldest, strict=True)
            if self._reported_json(item)["state"] in ("accepted", "rejected")
        ]  # fmt: skip
        rest = [cid for cid in ids if cid not in set(answered)]
        for cid in [*answered, *rest][:excess]:
            del ledger[cid]

    async def _report_correction(self, request: web.Request) -> web.Response:
        document = await json_body(request)
        operator = operator_of(document)
        provider, code = _provider(document), _code(document)
        # checked (node.operations): seq from 1, items not empty, text 1..MAX_CORRECTION_TEXT
        seq, items, text = document["seq"], document["items"], _text(document, "text")
        record = await self.catalog.lookup(provider, code)
        if record is None or record.entry is None:
            raise HTTPProblem(
                404,
                f"{code} of {provider} is not in {self.node.name}'s catalog "
                "(withdrawn, or not synchronised yet)",
                "not-found",
            )
        known = {item.name for item in record.entry.data_items}
        unknown = sorted(set(items) - known)
        if unknown:
            raise FormError("items", f"{code} has no data item {', '.join(unknown)}")
        ledger = await self._reported_ledger()
        correction_id = await self.sharing.report_correction(
            provider, code, seq, items=items, text=text, operator=operator
        )
        item: dict[str, Any] = {
            "correction_id": correction_id.hex(),
            "subscriber": self.node.name,
            "provider": provider,
            "resource_code": code,
            "seq": seq,
            "items": sorted(set(items)),
            "text": text,
            "at_ms": int(time.time() * 1000),
            "operator": operator,
        }
        ledger[item["correction_id"]] = item
        self._keep_bounded(ledger)
        await self._store_list(_REPORTED_KEY, ledger)
        return web.json_response(self._reported_json(item))

    async def _reported_list(self, request: web.Request) -> web.Response:
        wanted = checked_params()["state"]  # checked: a correction state or all
        items = [self._reported_json(item) for item in (await self._reported_ledger()).values()]
        if wanted != "all":
            items = [item for item in items if item["state"] == wanted]
        items.sort(key=lambda item: (item["at_ms"], item["correction_id"]))
        return web.json_response({"corrections": items})

    async def _reported_one(self, request: web.Request) -> web.Response:
        correction_id = parse_request_id(request.match_info["correction_id"], "correction_id")
        item = (await self._reported_ledger()).get(correction_id.hex())
        if item is not None:
            return web.json_response(self._reported_json(item))
        now = self._correction_now(correction_id)  # no longer listed: what the service knows
        if now is None:
            raise HTTPProblem(
                404,
                f"{self.node.name} reported no correction {correction_id.hex()}",
                "not-found",
            )
        state, answer = now
        return web.json_response(
            {"correction_id": correction_id.hex(), "state": state, "answer": answer}
        )

    # --- corrections (校核): the provider -----------------------------------------------------

    def _open_corrections(self) -> list[Correction]:
        return sorted(self.sharing.corrections(), key=lambda c: (c.at_ms, c.correction_id))

    async def _incoming_corrections(self, request: web.Request) -> web.Response:
        found = self._open_corrections()
        return web.json_response(
            {"corrections": [correction_json(c, CorrectionState.OPEN) for c in found]}
        )

    async def _answer(self, request: web.Request) -> web.Response:
        correction_id = parse_request_id(request.match_info["correction_id"], "correction_id")
        held = next((c for c in self._open_corrections() if c.correction_id == correction_id), None)
        if held is None:
            try:
                state = self.sharing.correction_state(correction_id)
            except UsageError:
                raise HTTPProblem(
                    404,
                    f"{self.node.name} received no correction {correction_id.hex()}",
                    "not-found",
                ) from None
            raise HTTPProblem(
                409,
                f"correction {correction_id.hex()} is {state.value}: cannot answer",
                "invalid-transition",
            )
        document = await json_body(request)
        operator = operator_of(document)
        accepted = document["accepted"]  # checked: true or false; text 1..MAX_CORRECTION_TEXT
        text = _text(document, "text")
        await self.sharing.answer_correction(
            correction_id, accepted=accepted, text=text, operator=operator
        )
        answer = correction_json(held, self.sharing.correction_state(correction_id))
        answer["answer"] = {"outcome": answer["state"], "text": text}
        return web.json_response(answer)
