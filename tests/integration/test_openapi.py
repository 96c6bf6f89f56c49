"""The OpenAPI document of the local API: complete, served as written, and true of a live daemon.

* every route the API registers is an operation of the document, and every
  operation a route (read from the API itself, so a route added without its
  declaration in ``node.operations`` fails here);
* ``GET /v1/openapi.json`` answers exactly what ``exchnode node openapi``
  writes, for the operator's token only (fail closed: 401 without, 403 for
  another role);
* unknown paths and methods answer the documented error object;
* schemathesis drives every operation of a throwaway daemon (a department
  whose hub is configured but not started: sends, acks, approvals and
  administration land nowhere that matters) with generated requests, valid
  and invalid ones, each with its role's token, and checks no answer is a 5xx
  and every answer's status, content type and body conform to the document
  (a bad request must be a documented 4xx, in the error shape).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from exchnode.audit import Role
from exchnode.node.openapi import document, openapi_path, security_scheme
from exchnode.node.operations import OPERATIONS
from exchnode.node.roles import area_of
from tests.integration.daemons import TOKEN_FILES, DaemonFederation, node_cli
from tests.integration.test_daemon_errors import served_routes

pytestmark = pytest.mark.timeout(180)

HUB = "520102"
NODE = "520102.gongan"
#: Generated requests per operation, valid and invalid: 46 operations take about 20 s on a
#: busy core (more with EXCHNODE_SCHEMATHESIS_EXAMPLES for a deeper run by hand).
EXAMPLES = int(os.environ.get("EXCHNODE_SCHEMATHESIS_EXAMPLES", "8"))
#: A long poll the generator picks (up to 300 s) is cut to this: the test is bounded in time.
LONGEST_WAIT = 0.05
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    """A department node of its own, for this module alone: what the generated calls change."""
    federation = DaemonFederation(tmp_path_factory.mktemp("openapi"), [HUB, NODE])
    with federation.serving(NODE):
        yield federation


def tokens(fed: DaemonFederation) -> dict[Role, str]:
    return {role: fed.token(NODE, role) for role in TOKEN_FILES}


def get(fed: DaemonFederation, path: str, role: Role | None) -> tuple[int, str, bytes]:
    secret = None if role is None else fed.token(NODE, role)
    status, headers, body = fed.http(NODE, path, secret=secret, timeout=10)
    return status, headers["Content-Type"], body


@pytest.mark.asyncio
async def test_every_route_is_an_operation_and_every_operation_a_route() -> None:
    routes = {(method, openapi_path(path)) for method, path in await served_routes()}
    declared = {
        (method.upper(), path)
        for path, methods in document()["paths"].items()
        for method in methods
    }
    assert routes - declared == set(), "routes the document does not describe"
    assert declared - routes == set(), "operations no route serves"
    assert len(routes) >= 46


def test_every_error_answer_is_the_error_object_and_every_role_a_bearer_scheme() -> None:
    spec = document()
    assert spec["openapi"].startswith("3.1")
    schemes = spec["components"]["securitySchemes"]
    assert set(schemes) == {security_scheme(role) for role in TOKEN_FILES}
    assert all(s == schemes[k] | {"type": "http", "scheme": "bearer"} for k, s in schemes.items())
    error = {"$ref": "#/components/schemas/Error"}
    assert spec["components"]["schemas"]["Error"]["required"] == ["error", "code"]
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            statuses = {int(s) for s in operation["responses"]}
            assert {200, 500} <= statuses, (method, path)
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and (path, status) != ("/health", "503"):  # its own object
                    assert answer["content"]["application/json"]["schema"] == error
            area = area_of(path)
            assert area is not None, path
            if area.role is not None:  # all but /health and the console's page and files
                # the area's role, or one of its readers (/metrics, the console's data)
                assert len(operation["security"]) == 1 + len(area.readers), (method, path)
                assert {401, 403, 503} <= statuses, (method, path)
            else:
                assert operation["security"] == [], (method, path)


def test_the_served_document_is_the_written_one_and_needs_the_operator(
    fed: DaemonFederation,
) -> None:
    written = node_cli("openapi")
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout) == document()
    status, content_type, body = get(fed, "/v1/openapi.json", Role.OPERATOR)
    assert (status, content_type) == (200, "application/json; charset=utf-8")
    assert body == written.stdout
    assert get(fed, "/v1/openapi.json", None)[0] == 401
    status, _, refused = get(fed, "/v1/openapi.json", Role.AUDITOR)
    assert status == 403
    assert json.loads(refused)["code"] == "forbidden"


@pytest.mark.parametrize(
    ("path", "role", "status", "code"),
    [
        ("/v1/nope", Role.OPERATOR, 404, "not-found"),
        ("/", Role.AUDITOR, 404, "not-found"),
        ("/v1/send/extra", Role.OPERATOR, 404, "not-found"),
        ("/health/extra", None, 404, "not-found"),
        ("/v1/nope", None, 401, "unauthorized"),
        ("/favicon.ico", None, 401, "unauthorized"),
        ("/v1/send", Role.OPERATOR, 405, "method-not-allowed"),
    ],
)
def test_unknown_paths_answer_the_documented_error(
    fed: DaemonFederation, path: str, role: Role | None, status: int, code: str
) -> None:
    answer = get(fed, path, role)
    assert answer[:2] == (status, "application/json; charset=utf-8")
    body = json.loads(answer[2])
    assert set(body) == {"error", "code"}
    assert body["code"] == code
    assert isinstance(body["error"], str)
    assert body["error"]


@pytest.mark.parametrize(
    ("request_bytes", "problem"),
    [
        (b"GET /v1/receive?x=" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", "too long"),
        (
            b"GET /v1/receive HTTP/1.1\r\nAuthorization: Bearer " + b"s" * 9000 + b"\r\n\r\n",
            "too long",
        ),
        (b"GET /v1/receive HTTP/1.1\r\nBad Header\r\n\r\n", "not well-formed"),
        (b"G\x01T / HTTP/1.1\r\n\r\n", "not an HTTP method"),
    ],
)
def test_a_request_that_is_no_http_answers_the_documented_error(
    fed: DaemonFederation, request_bytes: bytes, problem: str
) -> None:
    """aiohttp refuses these before the API sees them: still the JSON error, quoting nothing."""
    with socket.create_connection(("127.0.0.1", fed.operator_ports[NODE]), timeout=10) as sock:
        sock.sendall(request_bytes)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"400", head
    assert b"Content-Type: application/json" in head, head
    document = json.loads(body)
    assert document["code"] == "invalid-http"
    assert problem in document["error"]
    assert b"aaaa" not in body
    assert b"ssss" not in body


def _bounded(case: Any) -> None:
    """Long polls cut short: the generator may ask a 300 s wait, the test has seconds."""
    query = case.query
    if isinstance(query, dict) and "wait" in query:
        try:
            if float(query["wait"]) > LONGEST_WAIT:
                query["wait"] = LONGEST_WAIT
        except (TypeError, ValueError):
            pass


def drive(operation: Any, base_url: str, headers: dict[str, str], failures: list[str]) -> int:
    """Requests against one operation, every check on each answer; how many were sent.

    First the document's own examples (``node.operations`` declares one for the
    common fields), then generated ones, valid and invalid.  A failure is
    recorded in ``failures`` (hypothesis has shrunk it to a small example) and
    the next operation is driven: one run reports them all.
    """
    label = f"{operation.method.upper()} {operation.path}"
    sent = 0

    def run(strategy: Any, examples: int) -> None:
        @hypothesis.settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
        )
        @hypothesis.given(case=strategy)
        def call(case: Any) -> None:
            nonlocal sent
            _bounded(case)
            sent += 1
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

        call()

    try:
        for example in operation.get_strategies_from_examples():
            run(example, 1)
        run(
            operation.as_strategy(GenerationMode.POSITIVE)
            | operation.as_strategy(GenerationMode.NEGATIVE),
            EXAMPLES,
        )
    except (Exception, BaseExceptionGroup) as exc:  # a failure, or anything else: listed
        failures.append(f"{label}: {type(exc).__name__}: {' '.join(str(exc).split())}"[:1500])
    return sent


def test_schemathesis_finds_every_answer_conforming(fed: DaemonFederation) -> None:
    schema = schemathesis.openapi.from_dict(document())
    role_tokens = {security_scheme(role): token for role, token in tokens(fed).items()}
    failures: list[str] = []
    called: dict[str, int] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        schemes = [s for r in operation.definition.raw.get("security", []) for s in r]
        headers = {"Authorization": f"Bearer {role_tokens[schemes[0]]}"} if schemes else {}
        label = f"{operation.method.upper()} {operation.path}"
        called[label] = drive(operation, fed.operator_url(NODE), headers, failures)
    took = time.monotonic() - started
    print(f"schemathesis: {sum(called.values())} calls over {len(called)} operations, {took:.1f} s")
    assert not failures, "\n".join(failures)
    assert len(called) == len(OPERATIONS), sorted(called)  # every operation was driven
    assert all(called.values()), called
