"""Hostile and wrong requests: clear JSON errors, and no secret or payload in any answer or log.

A department node runs as a real process (its parent hub is configured, not
started).  Every route of the operator, admin and audit APIs -- read from the
API itself, so a route added later is driven too -- is called with
failure-inducing input: JSON nested 100 000 deep, huge numbers, NaN, invalid
UTF-8, lone surrogates, non-object bodies, every known field with every wrong
type, missing fields, bad ids and names, with each role's token, a wrong
token and none; then wrong methods and unknown paths.  A payload marker rides
inside the bodies.  No answer is a 5xx, every refusal is the documented
``{"error", "code"}`` JSON, and neither the daemon's whole log nor any answer
holds a role's token, the wrong token, the masking secret or the marker (raw,
base64 or hex).

In process, an API whose handler fails unexpectedly -- with the token and the
body in its locals and the body in the exception's message -- answers a
generic 500 JSON error and logs the route, the type and the frames only.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import logging
import re
import secrets
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import pytest
import structlog
from aiohttp import web

from exchnode.aio import AuditService, Node
from exchnode.audit import Role
from exchnode.errors import StoreError
from exchnode.node.admin import AdminApi
from exchnode.node.config import DaemonConfig
from exchnode.node.console import ConsoleApi
from exchnode.node.logs import configure_logging
from exchnode.node.metrics import MetricsApi
from exchnode.node.operator import Handler, OperatorApi
from exchnode.node.roles import PEOPLE, Credentials, area_of
from tests.integration.daemons import TOKEN_FILES, DaemonFederation

pytestmark = pytest.mark.timeout(300)

HUB = "520102"
NODE = "520102.gongan"
MAX_BODY = 1024 * 1024
MARKER = "PAYLOAD-MARKER-" + secrets.token_hex(8)
WRONG_TOKEN = secrets.token_urlsafe(24)
PARAM = re.compile(r"\{(\w+)(?::[^}]+)?\}")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
DEEP = 100_000


class FakeNode:
    name = NODE
    address = None


def api_in_process(**changes: Any) -> OperatorApi:
    """The daemon's API as ``daemon.py`` builds it, around a node that is never started."""
    audit = AuditService()
    arguments: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "credentials": Credentials({r: r.value * 4 for r in PEOPLE}),
        "lease_seconds": 60,
        "max_body_bytes": 1024,
        "capacity": 8,
        "catalog": cast(Any, object()),
        "sharing": cast(Any, object()),
        "audit": audit,
        "admin": AdminApi(
            cast(Node, FakeNode()), cast(DaemonConfig, None), Credentials({}), audit, lambda: None
        ),
        "metrics": MetricsApi(cast(Node, FakeNode())),
        "console": ConsoleApi(
            cast(Node, FakeNode()),
            cast(DaemonConfig, None),
            catalog=cast(Any, object()),
            sharing=cast(Any, object()),
            witness=None,
        ),
    }
    return OperatorApi(cast(Node, FakeNode()), **(arguments | changes))


async def served_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the daemon's API serves."""
    api = api_in_process()
    await api.start()
    try:
        return [(m, p) for m, p in api.endpoints() if m != "HEAD"]
    finally:
        await api.close()


def filled(template: str) -> list[str]:
    """Concrete paths for a template: each parameter an unknown id, bad hex, a bad name, ..."""
    if not PARAM.search(template):
        return [template]
    values = [
        "00" * 16,  # well formed, unknown
        "zz",  # not hex
        "bad..name",  # no node name
        "%FF%FE%00",  # not UTF-8, a NUL
        "7" * 300,  # too long for anything
        HUB,  # a real name: the parent
    ]
    return [PARAM.sub(value, template) for value in values]


# --- failure-inducing bodies, with the marker ------------------------------------------------


def _json(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def _around(inner: bytes, opening: bytes, closing: bytes, depth: int) -> bytes:
    return b'{"operator": "x", "m": ' + opening * depth + inner + closing * depth + b"}"


def hostile_bodies() -> list[tuple[str, bytes]]:
    """Bodies no handler may take: not JSON, not sane JSON, or not an object."""
    marker = _json(MARKER)
    tail = b', "m": ' + marker + b"}"
    return [
        ("deep arrays", _around(marker, b"[", b"]", DEEP)),
        ("deep objects", b'{"m":' * DEEP + marker + b"}" * DEEP),
        ("deep and small", _around(marker, b"[", b"]", 30_000)),  # read on the 403 path too
        ("200 levels", _around(marker, b'{"m":', b"}", 200)),
        ("40 levels", _around(marker, b"[", b"]", 40)),
        ("huge float", b'{"operator": "x", "seq": 1e999999, "ttl": 1e400' + tail),
        ("huge integer", b'{"operator": "x", "seq": ' + b"9" * 5000 + tail),
        ("integer over 64 bits", b'{"operator": "x", "seq": ' + b"9" * 25 + tail),
        ("nan", b'{"operator": "x", "seq": NaN, "ttl": Infinity' + tail),
        ("invalid utf-8", b'{"operator": "\xff\xfe", "m": "' + MARKER.encode() + b'\xc3"}'),
        ("utf-16", json.dumps({"operator": "x", "m": MARKER}).encode("utf-16")),
        ("lone surrogate", b'{"operator": "\\ud800", "text": "\\udfff' + MARKER.encode() + b'"}'),
        ("surrogate in a key", b'{"\\ud800x": 1' + tail),
        ("array", _json([MARKER])),
        ("string", marker),
        ("number", b"42"),
        ("null", b"null"),
        ("empty", b""),
        ("not json", MARKER.encode() + b" {not json"),
        ("trailing data", b'{"m": ' + marker + b"} " + MARKER.encode()),
        ("control character", b'{"m": "' + MARKER.encode() + b'\x01"}'),
        ("bad escape", b'{"m": "\\q' + MARKER.encode() + b'"}'),
        ("raw payload", MARKER.encode() * 50),
    ]


#: Every field a handler reads, valid-looking: a base that one wrong field at a time spoils.
BASE: dict[str, Any] = {
    "operator": "张三",
    "administrator": "张三",
    "messages": [{"to": ["520102.nobody"], "payload": base64.b64encode(MARKER.encode()).decode()}],
    "ids": [f"{HUB}:{'00' * 16}"],
    "entry": {  # complete but for its format: refused, after every other field is read
        "code": "101001/000001",
        "name": "人口基本信息",
        "provider_code": "11520102MB1234567X",
        "summary": MARKER,
        "format": "nope",
        "data_items": [{"name": "姓名", "type": "C", "description": MARKER}],
        "share_type": "conditional",
        "share_conditions": MARKER,
        "share_methods": ["subscription_push"],
        "update_cycle": "daily",
        "publish_date": "2026-01-05",
    },
    "provider": "522300.minzheng",
    "code": "101001/000001",
    "purpose": MARKER,
    "scope": MARKER,
    "items": ["姓名"],
    "reason": MARKER,
    "text": MARKER,
    "seq": 1,
    "accepted": True,
    "records": [{"姓名": MARKER}],
    "masks": {"姓名": {"rule": "redact", "replacement": MARKER}},
    "expires": "2020-01-01",
    "m": MARKER,
}
WRONG: list[Any] = [
    None,
    True,
    0,
    -1,
    2**64 - 1,
    1.5e300,
    "",
    "bad..name",
    "\x00",
    MARKER * 300,  # a long text
    [MARKER],
    {"m": MARKER},
    [[[[{"m": [MARKER]}]]]],
]
NESTED: dict[str, list[Any]] = {
    "messages": [
        [{"to": w, "payload": ""} for w in WRONG[:3]],
        *[[{"to": ["bad..name"], "payload": w}] for w in WRONG],
        *[
            [{"to": ["520102.nobody"], field: w}]
            for field in ("ttl", "receipt", "kind")
            for w in WRONG
        ],
        [w for w in WRONG],
    ],
    "entry": [BASE["entry"] | {field: w} for field in (*BASE["entry"], "related") for w in WRONG],
    "masks": [{"姓名": w} for w in WRONG] + [{"姓名": {"rule": w}} for w in WRONG],
    "records": [[w] for w in WRONG] + [[{"姓名": w}] for w in WRONG],
}


def mutated_bodies() -> list[tuple[str, bytes]]:
    """The base with one field wrong: every field, every wrong type, and a few inside."""
    bodies = [("base", _json(BASE)), ("only the marker", _json({"m": MARKER}))]
    for field in BASE:
        bodies.append((f"no {field}", _json({k: v for k, v in BASE.items() if k != field})))
        for number, value in enumerate(WRONG):
            bodies.append((f"{field} wrong #{number}", _json(BASE | {field: value})))
    for field, values in NESTED.items():
        for number, value in enumerate(values):
            bodies.append((f"{field} inner #{number}", _json(BASE | {field: value})))
    return bodies


# --- calls ---------------------------------------------------------------------------------


@dataclass
class Answer:
    method: str
    path: str
    credential: str
    body: str
    status: int
    content_type: str
    data: bytes
    allow: str | None


class Caller:
    """Requests on one keep-alive connection (reopened whenever the server closes it)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = self._connect()
        self.answers: list[Answer] = []

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        label: str,
        body: tuple[str, bytes] = ("none", b""),
        content_type: str = "application/json",
        template: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        headers = {"Content-Type": content_type} | (headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(2):
            try:
                self.connection.request(method, path, body=body[1], headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.connection.close()
                self.connection = self._connect()
                if attempt:
                    raise
        if response.will_close:
            self.connection.close()
            self.connection = self._connect()
        answer = Answer(
            method,
            template or path,
            label,
            body[0],
            response.status,
            response.getheader("Content-Type", ""),
            data,
            response.getheader("Allow"),
        )
        self.answers.append(answer)
        return answer

    def close(self) -> None:
        self.connection.close()


def problems_in(answer: Answer, forms: dict[str, str]) -> list[str]:
    """What is wrong with one answer: a 5xx, a refusal not in the documented form, a leak."""
    where = f"{answer.credential} {answer.method} {answer.path} [{answer.body}] -> {answer.status}"
    found = []
    if answer.status >= 500:
        found.append(f"{where}: {answer.data[:300]!r}")
    if answer.status >= 400:
        try:
            document = json.loads(answer.data)
        except ValueError:
            document = None
        if not (
            answer.content_type.startswith("application/json")
            and isinstance(document, dict)
            and isinstance(document.get("error"), str)
            and document["error"]
            and isinstance(document.get("code"), str)
        ):
            found.append(f"{where}: not the documented JSON error: {answer.data[:200]!r}")
    text = answer.data.decode("utf-8", "replace")
    for what, secret in forms.items():
        # A call that succeeded may show what it was given (a catalog entry published); a
        # refusal may not, and no answer ever holds a token or the masking secret.
        if secret in text and (answer.status >= 400 or "marker" not in what):
            found.append(f"{where}: the answer holds the {what}")
    return found


# --- the daemon ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(tmp_path_factory.mktemp("errors"), [HUB, NODE])
    config = federation.config_path(NODE)
    text = config.read_text()
    assert "# max_body_bytes = " in text
    config.write_text(re.sub(r"# max_body_bytes = \d+", f"max_body_bytes = {MAX_BODY}", text))
    with federation.serving(NODE):
        yield federation


def tokens(fed: DaemonFederation) -> dict[Role, str]:
    return {role: fed.token(NODE, role) for role in TOKEN_FILES}


def secret_forms(fed: DaemonFederation) -> dict[str, str]:
    """Every secret and payload form that must appear in no refusal and no log line."""
    found = {f"{role.value} token": token for role, token in tokens(fed).items()}
    found["wrong token"] = WRONG_TOKEN
    found["payload marker"] = MARKER
    found["payload marker (base64)"] = base64.b64encode(MARKER.encode()).decode()
    found["payload marker (hex)"] = MARKER.encode().hex()
    masking = (fed.folder(NODE) / "masking.secret").read_bytes()
    found["masking secret (hex)"] = masking.hex()
    found["masking secret (base64)"] = base64.b64encode(masking).decode()
    return found


def call(
    fed: DaemonFederation, role: Role | None, method: str, path: str, body: bytes = b"", **kw: Any
) -> Answer:
    caller = Caller(fed.operator_ports[NODE])
    try:
        token = tokens(fed)[role] if role is not None else None
        return caller.call(method, path, token=token, label="one", body=("one", body), **kw)
    finally:
        caller.close()


def error_of(answer: Answer) -> tuple[int, str, str]:
    assert answer.content_type.startswith("application/json"), answer
    document = json.loads(answer.data)
    assert set(document) == {"error", "code"}, document
    return answer.status, document["code"], document["error"]


def test_hostile_json_is_a_400_naming_what_is_wrong(fed: DaemonFederation) -> None:
    expected = {
        "deep arrays": "the body nests deeper than 32 levels",
        "deep objects": "the body nests deeper than 32 levels",
        "huge float": "a number in the body is too large to be a finite number",
        "huge integer": "an integer in the body is out of range",
        "nan": "NaN is not a JSON number",
        "invalid utf-8": "the body is not UTF-8 (an invalid byte at offset 14)",
        "utf-16": "the body is not UTF-8",
        "lone surrogate": "a text in the body has a lone surrogate",
        "array": "the body must be a JSON object, not a list",
        "empty": "the body is empty: send a JSON object",
        "not json": "the body is not JSON: Expecting value at line 1 column 1",
    }
    bodies = dict(hostile_bodies())
    for route in ("/v1/send-many", "/v1/sub/requests", "/v1/ack"):
        for name, says in expected.items():
            status, code, message = error_of(call(fed, Role.OPERATOR, "POST", route, bodies[name]))
            assert (status, code) == (400, "invalid-json"), (route, name, message)
            assert message.startswith(says), (route, name, message)
    retry = f"/v1/admin/peers/{HUB}/retry"
    status, code, _ = error_of(call(fed, Role.ADMINISTRATOR, "POST", retry, bodies["deep arrays"]))
    assert (status, code) == (400, "invalid-json")


def test_an_invalid_recipient_name_is_a_400_not_a_500(fed: DaemonFederation) -> None:
    status, code, message = error_of(
        call(fed, Role.OPERATOR, "POST", "/v1/send?to=bad..name", MARKER.encode())
    )
    assert (status, code) == (400, "invalid-name")
    assert message.startswith("to: division code must be exactly 6 digits")
    many = {"messages": [{"to": [HUB], "payload": ""}, {"to": [HUB, "5201"], "payload": ""}]}
    status, code, message = error_of(call(fed, Role.OPERATOR, "POST", "/v1/send-many", _json(many)))
    assert (status, code) == (400, "invalid-name")
    assert message.startswith("messages[1].to[1]: division code must be exactly 6 digits")
    subscribe = BASE | {"provider": "Bad Name"}
    status, code, message = error_of(
        call(fed, Role.OPERATOR, "POST", "/v1/sub/requests", _json(subscribe))
    )
    assert (status, code) == (400, "invalid-request")
    assert message.startswith("provider: is not a node name")


def test_unknown_paths_and_methods_answer_the_json_error(fed: DaemonFederation) -> None:
    answer = call(fed, Role.OPERATOR, "GET", "/v1/nope")
    assert error_of(answer) == (404, "not-found", "no endpoint GET /v1/nope")
    answer = call(fed, Role.OPERATOR, "DELETE", "/v1/send")
    assert error_of(answer) == (
        405,
        "method-not-allowed",
        "DELETE is not allowed here; this path takes POST",
    )
    assert answer.allow == "POST"
    answer = call(fed, None, "POST", "/health")
    assert error_of(answer)[:2] == (405, "method-not-allowed")
    assert error_of(call(fed, None, "GET", "/v1/nope"))[:2] == (401, "unauthorized")
    answer = call(fed, Role.OPERATOR, "POST", "/v1/ack", b'{"ids": []}' + b" " * MAX_BODY)
    status, code, message = error_of(answer)
    assert (status, code) == (413, "too-large")
    assert f"larger than the {MAX_BODY} bytes" in message


def test_a_token_that_is_not_ascii_is_a_401(fed: DaemonFederation) -> None:
    caller = Caller(fed.operator_ports[NODE])
    try:
        caller.connection.putrequest("GET", "/v1/receive")
        caller.connection.putheader("Authorization", b"Bearer \xff\xfe" + WRONG_TOKEN.encode())
        caller.connection.endheaders()
        response = caller.connection.getresponse()
        assert response.status == 401
        assert json.loads(response.read())["code"] == "unauthorized"
    finally:
        caller.close()


def drive_every_route(fed: DaemonFederation, caller: Caller, routes: list[tuple[str, str]]) -> None:
    held = tokens(fed)
    credentials = [(r.value, t) for r, t in held.items()]
    hostile, mutated = hostile_bodies(), mutated_bodies()
    junk_query = (
        "?max=1e999&wait=nan&from=-1&limit=99999999999999999999&state=bogus&status=bogus"
        "&level=bogus&share_type=bogus&ack=maybe&to=bad..name&recipient=bad..name&ttl=inf"
        "&receipt=2&kind=&content_type="
    )
    for method, template in routes:
        area = area_of(template)
        assert area is not None, template
        paths = filled(template)
        for path in paths:
            for label, token in credentials:
                for body in hostile:
                    caller.call(
                        method, path, token=token, label=label, body=body, template=template
                    )
                caller.call(
                    method,
                    path + junk_query,
                    token=token,
                    label=label,
                    body=hostile[0],
                    template=template + "?junk",
                )
                caller.call(
                    method,
                    path,
                    token=token,
                    label=label,
                    body=hostile[-1],
                    content_type="text/plain",
                    template=template,
                )
            for label, token in (("wrong token", WRONG_TOKEN), ("no token", None)):
                caller.call(
                    method, path, token=token, label=label, body=hostile[0], template=template
                )
        # Every field wrong in turn, by the role the route admits, on a well-formed path.
        own = held[area.role] if area.role is not None else None
        for body in mutated:
            caller.call(method, paths[0], token=own, label="own role", body=body, template=template)
            if paths[-1] != paths[0]:
                caller.call(
                    method, paths[-1], token=own, label="own role", body=body, template=template
                )
    # Wrong methods on every path, and paths in no route.
    allowed: dict[str, set[str]] = {}
    for method, template in routes:
        allowed.setdefault(template, set()).add(method)
    for template, methods in allowed.items():
        area = area_of(template)
        assert area is not None
        token = held[area.role] if area.role is not None else None
        for method in sorted(set(METHODS) - methods):
            path = filled(template)[0]
            answer = caller.call(method, path, token=token, label="own role", body=hostile[0])
            assert answer.status == 405, (method, path, answer.data)
    # A body the server cannot even decode: a broken gzip stream, on every route taking a body.
    broken = ("broken gzip", b"\x1f\x8b\x08\x00" + MARKER.encode())
    gzip = {"Content-Encoding": "gzip"}
    for method, template in routes:
        area = area_of(template)
        assert area is not None
        token = held[area.role] if area.role is not None else None
        path = filled(template)[0]
        caller.call(method, path, token=token, label="own role", body=broken, headers=gzip)
    unknown = [
        "/v1/nope",
        "/nope",
        "/v1/admin/nope",
        "/v1/audit/nope",
        "/v1/sub/nope/x",
        "/v1/sendx",
    ]
    for path in unknown:
        for label, token in credentials:
            for method in METHODS:
                caller.call(method, path, token=token, label=label, body=hostile[0])


def malformed_http(fed: DaemonFederation) -> list[bytes]:
    """Requests aiohttp refuses before any route (its own error path and logger), with secrets."""
    operator = tokens(fed)[Role.OPERATOR]
    requests = [
        f"{MARKER} /v1/send HTTP/1.1\r\nAuthorization: Bearer {operator}\r\n\r\n".encode(),
        (
            f"POST /v1/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {operator}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n{MARKER}\r\nabc\r\n0\r\n\r\n"
        ).encode(),
        f"GET /v1/receive HTTP/1.1\r\nX-{MARKER}: {'x' * 20_000}\r\n\r\n".encode(),
    ]
    answers = []
    for request in requests:
        with socket.create_connection(("127.0.0.1", fed.operator_ports[NODE]), timeout=10) as link:
            link.sendall(request)  # aiohttp answers 400 and closes
            answer = b""
            while chunk := link.recv(65536):
                answer += chunk
        answers.append(answer)
    return answers


def test_every_route_refuses_hostile_input_cleanly_and_leaks_nothing(
    fed: DaemonFederation,
) -> None:
    """Last in this module: it stops the daemon to read its whole log."""
    routes = asyncio.run(served_routes())
    assert len(routes) >= 30, routes  # send, receive, catalog, sub, audit, admin
    caller = Caller(fed.operator_ports[NODE])
    try:
        drive_every_route(fed, caller, routes)
        for answer in malformed_http(fed):
            assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer
        assert caller.call("GET", "/health", token=None, label="none").status == 200
    finally:
        caller.close()
    forms = secret_forms(fed)
    problems = sorted({p for answer in caller.answers for p in problems_in(answer, forms)})
    statuses = {answer.status for answer in caller.answers}
    assert fed.stop(NODE) == 0
    log = fed.log_path(NODE).read_text()
    leaked = [what for what, secret in forms.items() if secret in log]
    if '"locals"' in log:
        leaked.append("local variables of a frame")
    if "PRIVATE KEY" in log:
        leaked.append("a private key")
    assert (problems, leaked) == ([], []), (
        f"the daemon's log holds: {', '.join(leaked) or 'nothing it should not'}\n"
        f"{len(problems)} problems in {len(caller.answers)} answers, the first 60:\n"
        + "\n".join(problems[:60])
    )
    assert {400, 401, 403, 404, 405} <= statuses  # each refusal was reached
    events = [json.loads(line) for line in log.splitlines()]  # every line is JSON
    assert not [e for e in events if e["event"] == "operator request failed"]  # none internal
    # aiohttp's own error lines: HTTP it could not parse, and a broken gzip body it drained after
    # the answer.  Each with the exception's types and frames, no message, nothing of the request.
    aiohttp_lines = [e for e in events if e.get("logger") == "aiohttp.server"]
    kinds = {e["event"] for e in aiohttp_lines}
    assert "Error handling request from 127.0.0.1" in kinds
    assert kinds <= {"Error handling request from 127.0.0.1", "Unhandled exception"}
    for event in aiohttp_lines:
        for item in event["exception"]:
            assert item["exc_value"].startswith("(message withheld"), event


# --- an unexpected failure, in process --------------------------------------------------------


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = sys.excepthook, threading.excepthook
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        yield out
    finally:
        structlog.configure(**config)
        root.handlers, root.level = handlers, level
        sys.excepthook, threading.excepthook = hooks


class Failing:
    """Admin routes that fail in ways no handler meant to, with secrets in their frames."""

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/v1/admin/explode", self._explode),
            ("POST", "/v1/admin/store", self._store),
        ]

    async def _explode(self, request: web.Request) -> web.Response:
        authorization = request.headers["Authorization"]  # noqa: F841 -- in the frame
        body = await request.read()
        raise KeyError(body.decode())  # its message is request data

    async def _store(self, request: web.Request) -> web.Response:
        raise StoreError("database disk image is malformed: /var/lib/exchnode/store.db")


@pytest.mark.asyncio
async def test_an_unexpected_error_is_a_generic_500_logged_without_request_data(
    captured_log: io.StringIO,
) -> None:
    token = "administrator" * 4
    api = api_in_process(admin=Failing())
    host, port = await api.start()
    api.phase = "serving"  # no node to serve: the routes under test need none
    try:
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {token}"}
            url = f"http://{host}:{port}/v1/admin"
            async with session.post(f"{url}/explode", data=MARKER, headers=headers) as response:
                assert response.status == 500
                assert response.content_type == "application/json"
                answer = await response.json()
            async with session.post(f"{url}/store", data=MARKER, headers=headers) as response:
                assert response.status == 500
                store_answer = await response.json()
    finally:
        await api.close()
    assert answer == {
        "error": "internal error: the request was not carried out; the node's log says where",
        "code": "internal",
    }
    assert store_answer == {"error": "the node's store failed; its log says how", "code": "store"}
    log = captured_log.getvalue()
    assert token not in log
    assert MARKER not in log
    events = [json.loads(line) for line in log.splitlines()]
    failed = [e for e in events if e["event"] == "operator request failed"]
    assert [(e["route"], e["error_type"]) for e in failed] == [
        ("/v1/admin/explode", "KeyError"),
        ("/v1/admin/store", "StoreError"),
    ]
    explode, store = (e["exception"][0] for e in failed)
    assert explode["exc_type"] == "KeyError"
    assert explode["exc_value"].startswith("(message withheld")
    assert explode["frames"][-1]["name"] == "_explode"
    assert all(set(frame) == {"filename", "lineno", "name"} for frame in explode["frames"])
    assert store["exc_value"].startswith("database disk image is malformed")  # the node's own
    assert not [e for e in events if e.get("logger") == "aiohttp.server"]  # nothing escaped
