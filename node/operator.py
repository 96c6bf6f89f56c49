"""The local operator API: how a department's systems, its people and the shell talk to the node.

Theory of operation
-------------------
Plain HTTP on a loopback address (``[operator] listen``), guarded by bearer
tokens: every request but ``/health`` must carry ``Authorization: Bearer
<token>``, and the token says which of the three roles calls (``node.roles``:
administrator, operator, auditor; ``init`` writes one random 0600 token file
per role).  Loopback keeps the API off the network; the tokens keep other
local users from acting as this department, and keep each role to its own
part of the API.  TLS is not used here: the bytes never leave the machine.

The guard decides in this order: no token or an unknown one, 401; not
serving, 503; a role the path's area (``node.roles.AREAS``, the one table)
does not admit, 403 ``{"error": "POST /v1/sub/... needs the operator role;
this credential is the auditor's", "code": "forbidden"}``, and that refusal
is itself an audit record (``administration``, ``api.forbidden``, the role
that tried and the person the body named).  Every route is checked against
the table when the API starts: a route in no area is a bug, refused there.

Endpoints (JSON answers; errors are ``{"error": ..., "code": ...}``):

* ``GET /health`` -- 200 with name, queue depths, peer states and counters
  while serving; 503 with ``status`` "starting" or "draining" otherwise.
* ``POST /v1/send?to=NAME&to=...&kind=&content_type=&ttl=&receipt=1`` --
  the body is the payload; answers once the node holds the message durably.
* ``POST /v1/send-many`` -- ``{"messages": [{"to": [...], "payload": base64,
  "kind", "content_type", "ttl", "receipt"}]}``: one signature and one commit.
* ``GET /v1/receive?max=N&wait=SECONDS&ack=0|1`` -- long poll; leases up to N
  deliveries (``inbox``), payloads base64; a ``sub.records`` delivery also
  carries ``records``, its records as checked against the grants held.  Acknowledge with
  ``POST /v1/ack {"ids": [...]}`` after storing them, or pass ``ack=1`` to
  acknowledge before answering (at-most-once).
* ``GET /v1/status/<message id hex>?wait=SECONDS&recipient=NAME...`` --
  receipts and non-delivery reports for a message this node sent; with
  ``wait``, returns when every named recipient (any one, if none named) has
  settled, or at the deadline.

* ``/v1/catalog...`` and ``/v1/sub/...`` -- the resource catalog and
  subscriptions (``node.operator_services``; node/README.md lists them).
* ``GET /v1/audit/verify`` and ``GET /v1/audit/records?from=&limit=`` -- the
  node's audit log checked end to end, and its records decoded
  (``node.operator_audit``); the auditor's.
* ``/v1/admin/...`` -- the administrator's: the effective configuration, the
  node's certificate and keys, link states, "retry this link now", reloading
  the role tokens (``node.admin``).
* ``/console`` and ``GET /v1/console/...`` -- the web console, read-only, for
  the administrator and the auditor (``node.console``).

Errors: 400 for a bad request (the message names the field; a body that is
not a JSON object of sane depth, numbers and text is ``invalid-json``, a name
that is no node name ``invalid-name``, a body that cannot be decoded
``invalid-body``), 401 without a known token, 403 for
the wrong role, 404 for an unknown entry, request or case, and for a path the
API does not have (``not-found``), 405 for a method a path does not take
(``method-not-allowed``, with ``Allow``), 409 for a step the request's state
does not allow, 413 for a body over ``max_body_bytes`` (``too-large``), 422
for a rejection with its exchnode code, 503 while starting or draining.
While the daemon drains, everything but ``/health`` answers 503.  Anything
unexpected answers 500 ``{"error": "internal error: ...", "code":
"internal"}`` with nothing of the request in it, and logs the route, the
exception's type and its frames, never their variables (``node.logs``).
Every error is JSON: the guard answers for aiohttp too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from aiohttp import web

from exchnode.aio import CatalogService, Delivery, DeliveryStatus, Message, Node
from exchnode.audit import Actor, AuditEntry, Category, Outcome, Role, details
from exchnode.core import NodeName
from exchnode.errors import (
    ExchnodeError,
    InvalidAuditRecordError,
    InvalidNameError,
    InvalidTransitionError,
    RejectedError,
    StoreError,
    UsageError,
)

from .api import CALLER_ROLE, checked_params
from .api import HTTPProblem as _HTTPProblem
from .api import error_response as _error
from .api import json_body as _json_body
from .api import peer_state_json as _peer_state_json
from .console import console_headers
from .http_errors import answer_in_json
from .inbox import Inbox, delivery_id
from .openapi import document_bytes
from .operations import operation_for, validated
from .operator_audit import AuditApi
from .operator_services import ServicesApi
from .peer_health import refusal_json, refusals_by_peer, with_refusal
from .roles import PEOPLE, Area, Credentials, area_of

if TYPE_CHECKING:
    from exchnode.aio import AuditService, SharingService, WitnessService

__all__ = ["OperatorApi", "RouteGroup"]

MAX_NAMED_BODY = 64 * 1024  # a refused request's body is read for the person's name up to this
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_OPENAPI = document_bytes()  # the same for every request: built once


class RouteGroup(Protocol):
    """A set of endpoints the API serves (catalog and sharing, audit, administration)."""

    def routes(self) -> list[tuple[str, str, Handler]]: ...


def _status_json(status: DeliveryStatus, recipients: list[str] | None) -> dict[str, Any]:
    return {
        "message_id": status.message_id.hex(),
        "settled": status.settled(recipients),
        "delivered_to": sorted(status.delivered_to),
        "failed_for": sorted(status.failed_for),
        "receipts": [
            {
                "recipient": r.recipient,
                "envelope_digest": r.envelope_digest.hex(),
                "opened_ms": r.opened_ms,
            }
            for r in status.receipts
        ],
        "reports": [
            {
                "targets": list(r.targets),
                "code": r.code,
                "reason": r.reason,
                "reporter": r.reporter,
                "at_ms": r.at_ms,
            }
            for r in status.reports
        ],
    }


def _delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery_id(delivery),
        "sender": delivery.sender,
        "message_id": delivery.message_id.hex(),
        "kind": delivery.kind,
        "content_type": delivery.content_type,
        "created_ms": delivery.created_ms,
        "expires_ms": delivery.expires_ms,
        "receipt_requested": delivery.receipt_requested,
        "payload": base64.b64encode(delivery.payload).decode("ascii"),
    }


def _sent_json(sent: Any) -> dict[str, Any]:
    return {
        "message_id": sent.message_id.hex(),
        "digest": sent.digest.hex(),
        "recipients": list(sent.recipients),
        "expires_ms": sent.expires_ms,
        "repeated": sent.repeated,
    }


class OperatorApi:
    """The aiohttp application around one node; the daemon drives its phases."""

    def __init__(
        self,
        node: Node,
        *,
        host: str,
        port: int,
        lease_seconds: float,
        max_body_bytes: int,
        capacity: int,
        token: str | None = None,
        credentials: Credentials | None = None,
        catalog: CatalogService | None = None,
        sharing: SharingService | None = None,
        audit: AuditService | None = None,
        witness: WitnessService | None = None,
        admin: RouteGroup | None = None,
        metrics: RouteGroup | None = None,
        console: RouteGroup | None = None,
        trust_health: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """``credentials``: each role's token; ``token`` alone is the operator's (tests).

        ``trust_health``: the CRLs the node holds and their warnings, for ``/health``.
        """
        self.node = node
        self.trust_health = trust_health
        self.audit_log = audit
        self.audit = AuditApi(node, audit, witness) if audit is not None else None
        self.admin = admin
        self.metrics = metrics
        self.console = console
        self.services = (
            ServicesApi(node, catalog, sharing)
            if catalog is not None and sharing is not None
            else None
        )
        self.host, self.port = host, port
        if credentials is None:
            if token is None:
                raise UsageError("the operator API needs credentials (or an operator token)")
            credentials = Credentials({Role.OPERATOR: token})
        self.credentials = credentials
        self.inbox = Inbox(
            node,
            capacity=capacity,
            lease_seconds=lease_seconds,
            annotate=self.services.annotate if self.services is not None else None,
        )
        self.phase = "starting"
        self.started = time.monotonic()
        self._max_body = max_body_bytes
        self._runner: web.AppRunner | None = None
        self._inbox_task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.log = structlog.get_logger("node.operator")
        self._endpoints: list[tuple[str, str]] = []
        self.address: tuple[str, int] | None = None

    # --- phases --------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        app = web.Application(client_max_size=self._max_body, middlewares=[self._guard])
        app.on_response_prepare.append(console_headers)
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/health", self._health),
            ("GET", "/v1/openapi.json", self._openapi),
            ("POST", "/v1/send", self._send),
            ("POST", "/v1/send-many", self._send_many),
            ("GET", "/v1/receive", self._receive),
            ("POST", "/v1/ack", self._ack),
            ("GET", "/v1/status/{message_id}", self._status),
        ]
        groups = (self.services, self.audit, self.admin, self.metrics, self.console)
        for group in groups:
            if group is not None:
                routes += group.routes()
        for method, path, handler in routes:
            # each request is checked against its declared operation (node.operations)
            operation = operation_for(method, path)
            checked = validated(operation, handler) if operation is not None else handler
            app.router.add_route(method, path, checked)
        for route in app.router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            area = area_of(path)
            if area is None:  # fail closed: every route has its role
                raise UsageError(f"route {path} is in no area of node.roles.AREAS")
            if area.readers and route.method not in ("GET", "HEAD"):  # readers only read
                raise UsageError(f"route {route.method} {path}: its area's readers only read")
        self._endpoints = sorted(
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        answer_in_json(self._runner)  # even a request aiohttp cannot parse: node.http_errors
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.address = (str(host), int(port))
        return self.address

    def endpoints(self) -> list[tuple[str, str]]:
        """(method, path) of every route, once started: what the role table is checked against."""
        return list(self._endpoints)

    def serving(self) -> None:
        """The node is up: start handing deliveries to clients."""
        self._inbox_task = asyncio.get_running_loop().create_task(
            self.inbox.run(), name="operator-inbox"
        )
        self.phase = "serving"

    async def drain(self, timeout: float) -> bool:
        """Refuse new requests, wake long polls, wait for requests under way.

        True if every request finished within ``timeout``.
        """
        self.phase = "draining"
        await self.inbox.close()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            if self._inbox_task is not None:
                self._inbox_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._inbox_task
        return True

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- the guard: auth, phases, errors --------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every answer of the API passes here: a JSON error for anything that went wrong.

        Nothing escapes to aiohttp (which would answer in plain text and log the
        exception its own way): refusals get their 4xx, unknown paths and
        methods 404 and 405, and anything unexpected a generic 500 that says
        nothing of the request, logged by type and frames only (``node.logs``).
        """
        try:
            return await self._admit(request, handler)
        except _HTTPProblem as exc:
            return _error(exc.status, str(exc), exc.code)
        except RejectedError as exc:
            return _error(422, str(exc), exc.code)
        except InvalidTransitionError as exc:
            return _error(409, str(exc), exc.code)
        except UsageError as exc:
            return _error(400, str(exc), exc.code)
        except InvalidNameError as exc:  # a recipient, provider or peer that is no node name
            return _error(400, str(exc), exc.code)
        except StoreError as exc:
            self._failed(request, exc)
            return _error(500, "the node's store failed; its log says how", exc.code)
        except web.HTTPException as exc:  # aiohttp's own: no route, wrong method, too large
            return self._http_error(request, exc)
        except web.RequestPayloadError:  # a body whose chunking or content encoding is broken
            problem = "the body could not be read: its transfer or content encoding is invalid"
            return _error(400, problem, "invalid-body")
        except Exception as exc:
            self._failed(request, exc)
            problem = "internal error: the request was not carried out; the node's log says where"
            return _error(500, problem, "internal")

    async def _admit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        area = area_of(request.path)
        if area is not None and area.role is None:
            return await handler(request)
        supplied = request.headers.get("Authorization", "")
        scheme, _, token = supplied.partition(" ")
        role = (
            self.credentials.role_of(token)
            if scheme.lower() == "bearer" and token.isascii()
            else None
        )
        if role is None:
            self.log.warning("unauthorized", method=request.method, path=request.path)
            return _error(401, "missing or unknown token", "unauthorized")
        if self.phase != "serving":
            return _error(503, f"node {self.node.name} is {self.phase}", "unavailable")
        if area is not None and not area.admits(role):
            return await self._forbidden(request, area, role)
        request[CALLER_ROLE] = role  # the console says who is signed in
        self._in_flight += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def _http_error(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        """aiohttp's refusals in the API's JSON form, with their headers (``Allow``)."""
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            message = f"{request.method} is not allowed here; this path takes {allowed}"
            code = "method-not-allowed"
        elif isinstance(exc, web.HTTPNotFound):
            message, code = f"no endpoint {request.method} {request.path}", "not-found"
        elif isinstance(exc, web.HTTPRequestEntityTooLarge):
            message = (
                f"the body is larger than the {self._max_body} bytes this API takes "
                "([operator] max_body_bytes)"
            )
            code = "too-large"
        else:
            message, code = f"{exc.status} {exc.reason}", "http"
        response = _error(exc.status, message, code)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response

    def _failed(self, request: web.Request, exc: BaseException) -> None:
        """An unexpected failure on the log: the route, the type and the frames; no request data."""
        resource = request.match_info.route.resource
        self.log.error(
            "operator request failed",
            method=request.method,
            route=resource.canonical if resource is not None else None,
            error_type=type(exc).__name__,
            exc_info=exc,
        )

    async def _forbidden(self, request: web.Request, area: Area, role: Role) -> web.Response:
        """403 naming the role needed; on the record with the role and person that tried."""
        assert area.role is not None
        needed = area.needs
        person = await _person_named(request, role)
        self.log.warning(
            "forbidden",
            method=request.method,
            path=request.path,
            role=role.value,
            person=person,
            needs=needed,
        )
        if self.audit_log is not None:
            self.audit_log.append_entry(
                AuditEntry(
                    time_ms=int(time.time() * 1000),
                    category=Category.ADMINISTRATION,
                    action="api.forbidden",
                    actor=Actor(role, person),
                    outcome=Outcome.refused("forbidden"),
                    detail=details(kind=area.name, reason=f"needs-{area.role.value}"),
                )
            )
        return _error(
            403,
            f"{request.method} {request.path} needs the {needed} role; this credential is "
            f"the {role.value}'s",
            "forbidden",
        )

    # --- endpoints ---------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "name": self.node.name,
            "status": self.phase,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }
        if self.phase != "serving":
            return web.json_response(body, status=503)
        try:
            stats = await self.node.stats()
        except ExchnodeError:  # stopping between the phase check and the store call
            body["status"] = "draining"
            return web.json_response(body, status=503)
        now_ms = int(time.time() * 1000)
        refused = refusals_by_peer(stats.refusals)
        body.update(
            {
                "link_url": self.node.url if self.node.address else None,
                "queued": {"count": stats.queued.count, "bytes": stats.queued.bytes},
                "inbox": {"count": stats.inbox.count, "bytes": stats.inbox.bytes},
                "outbound": {
                    hop: {"count": depth.count, "bytes": depth.bytes}
                    for hop, depth in sorted(stats.outbound.items())
                },
                "peers": {
                    name: with_refusal(_peer_state_json(state, now_ms), refused.get(name))
                    for name, state in sorted(stats.peers.items())
                },
                # every refusal between this node and a peer not ended since (strangers too)
                "refusals": [refusal_json(r) for r in stats.refusals],
                "counters": dict(stats.counters),
                "directory": self._directory_summary(),
                "operator": {"held": self.inbox.held, "leased": self.inbox.leased},
            }
        )
        if self.trust_health is not None:
            body["trust"] = self.trust_health()
        return web.json_response(body)

    def _directory_summary(self) -> dict[str, Any]:
        signed = self.node.node_directory
        if signed is not None:
            return {"mode": "signed", "known": len(signed.names(time.time()))}
        names = getattr(self.node.directory, "names", None)
        return {"mode": "static", "known": len(names()) if callable(names) else None}

    async def _openapi(self, request: web.Request) -> web.Response:
        """The API's OpenAPI document, as ``exchnode node openapi`` writes it."""
        return web.Response(body=_OPENAPI, content_type="application/json", charset="utf-8")

    async def _send(self, request: web.Request) -> web.Response:
        params = checked_params()
        recipients = params["to"]
        for recipient in recipients:
            _recipient(recipient, "to")
        payload = await request.read()
        sent = await self.node.send(
            recipients,
            payload,
            kind=params["kind"],
            content_type=params["content_type"],
            ttl=params["ttl"],
            receipt=params["receipt"],
            idempotency_key=params["Idempotency-Key"],
        )
        return web.json_response(_sent_json(sent))

    async def _send_many(self, request: web.Request) -> web.Response:
        document = await _json_body(request)  # checked: a non-empty list of objects
        messages = [_message(index, item) for index, item in enumerate(document["messages"])]
        sent = await self.node.send_many(messages)
        return web.json_response({"sent": [_sent_json(s) for s in sent]})

    async def _receive(self, request: web.Request) -> web.Response:
        params = checked_params()
        deliveries = await self.inbox.take(params["max"], params["wait"])
        answer = [_delivery_json(d) | (self.inbox.annotation(d) or {}) for d in deliveries]
        if params["ack"] and deliveries:
            await self.inbox.ack(delivery_id(d) for d in deliveries)
        return web.json_response({"deliveries": answer})

    async def _ack(self, request: web.Request) -> web.Response:
        document = await _json_body(request)  # checked: a list of texts
        acked, unknown = await self.inbox.ack(document["ids"])
        return web.json_response({"acked": acked, "unknown": unknown})

    async def _status(self, request: web.Request) -> web.Response:
        params = checked_params()  # checked: 1..64 bytes of hex
        message_id = bytes.fromhex(params["message_id"])
        recipients = params["recipient"] or None
        wait = params["wait"]
        if wait:
            try:
                status = await self.node.wait_status(message_id, recipients, timeout=wait)
            except TimeoutError:
                status = await self.node.status(message_id)
        else:
            status = await self.node.status(message_id)
        return web.json_response(_status_json(status, recipients))


async def _person_named(request: web.Request, role: Role) -> str:
    """The person a refused request's JSON body names (its role's field first), else the role."""
    length = request.content_length
    if request.content_type == "application/json" and length and length <= MAX_NAMED_BODY:
        with contextlib.suppress(_HTTPProblem, web.HTTPException):
            document = await _json_body(request)
            for key in (role.value, *(r.value for r in PEOPLE if r is not role)):
                value = document.get(key)
                if isinstance(value, str):
                    try:
                        return Actor(role, value).name
                    except InvalidAuditRecordError:
                        break
    return role.value


def _recipient(name: str, field: str) -> None:
    """400 ``invalid-name`` naming the field for a recipient that is no node name."""
    try:
        NodeName.parse(name)
    except InvalidNameError as exc:
        raise _HTTPProblem(400, f"{field}: {exc}", exc.code) from None


def _message(index: int, item: dict[str, Any]) -> Message:
    """One message of ``send-many``, its shape checked (``node.operations``): names, base64."""
    where = f"messages[{index}]"
    recipients = item["to"]
    for number, recipient in enumerate(recipients):
        _recipient(recipient, f"{where}.to[{number}]")
    try:
        payload = base64.b64decode(item.get("payload") or "", validate=True)
    except (binascii.Error, ValueError):
        raise _HTTPProblem(400, f"{where}.payload must be base64") from None
    ttl = item.get("ttl")
    try:
        return Message(
            recipients=recipients,
            payload=payload,
            kind=item.get("kind") or "data",
            content_type=item.get("content_type") or "application/octet-stream",
            ttl=None if ttl is None else float(ttl),
            receipt=bool(item.get("receipt")),
            idempotency_key=item.get("idempotency_key"),
        )
    except ExchnodeError as exc:
        raise _HTTPProblem(400, f"{where}: {exc}") from None
