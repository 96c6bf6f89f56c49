"""The OpenAPI 3.1 document of the local API, written from ``node.operations`` and ``node.roles``.

Theory of operation
-------------------
Nothing here is written by hand about an endpoint: each path, its
parameters, body and answer come from the operation the API validates
requests with (``node.operations.OPERATIONS``), and its security from the
role table the guard admits requests by (``node.roles.AREAS``).  So the
document cannot describe an API other than the one served.

Every operation lists the error answers it can give, each the one error
shape ``{"error": ..., "code": ...}`` (``components/schemas/Error``): its
own (400, 404, 409, 422...), and the guard's -- 401 and 403 where a role is
needed, 413 where a body is read, 503 while the node starts or drains, 500
for the unexpected.  A path the API does not have answers the same shape,
404 ``not-found`` (401 first without a valid token).

The document is served at ``GET /v1/openapi.json`` (the operator's token,
like every ``/v1`` path) and written offline by ``exchnode node openapi``;
both are :func:`document`, byte for byte.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from exchnode.audit import Role

from .operations import ERROR, OPERATIONS, Operation
from .roles import area_of, token_key
from .schema import Array, Ref, Schema

__all__ = ["document", "openapi_path", "register", "security_scheme"]

_TEMPLATE = re.compile(r"\{(\w+):[^}]+\}")
_REASONS = {
    400: "Bad request: the message names the field and the rule it broke",
    401: "No token, or one that is no role's",
    403: "Another role's token: the message names the role needed",
    404: "Not found: the entry, request, case or peer is unknown here",
    409: "The state does not allow this step",
    413: "The body is larger than [operator] max_body_bytes",
    422: "Rejected, with the exchnode code",
    500: "Unexpected: nothing was carried out; the node's log says where",
    503: "The node is starting or draining",
}
_DESCRIPTION = """\
The local API of an exchnode node: how a department's systems send and receive messages, publish
catalog entries and work subscriptions, and how its administrator and auditor run it.

Plain HTTP on a loopback address, with `Authorization: Bearer <token>`: one token per role
(administrator, operator, auditor), each in a 0600 file written by `exchnode node init`. Every
path but `/health` and the web console's page needs the token of one role (see each operation's
security); monitoring (`/metrics`) and the console's data admit a second role to GETs.

Every 4xx and 5xx answer is the JSON object `{"error": "...", "code": "..."}` (`Error`), including
a path the API does not have (404 `not-found`; 401 first without a valid token) and a method a
path does not take (405 `method-not-allowed`, with `Allow`)."""


def openapi_path(template: str) -> str:
    """An aiohttp route template as an OpenAPI path: ``{code:.+}`` -> ``{code}``."""
    return _TEMPLATE.sub(r"{\1}", template)


def security_scheme(role: Role) -> str:
    return f"{role.value}Token"


def _collect(schema: object, found: dict[str, Schema]) -> None:
    """Every named schema (``Ref``) reachable from ``schema``, for ``components/schemas``."""
    if isinstance(schema, Ref):
        if schema.name in found:
            return
        found[schema.name] = schema.target
    if not is_dataclass(schema):
        return
    for item in fields(schema):
        value = getattr(schema, item.name)
        if isinstance(value, Schema):
            _collect(value, found)
        elif isinstance(value, tuple):
            for child in value:
                _collect(child, found)
        elif isinstance(value, Mapping):
            for child in value.values():
                _collect(child, found)


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _REASONS.get(status, "Refused"),
        "content": {"application/json": {"schema": ERROR.json_schema()}},
    }


def _parameter(param: Any) -> dict[str, Any]:
    schema = param.schema.json_schema()
    if param.repeated:
        schema = Array(items=param.schema).json_schema()
    elif param.default is not None and param.where == "query":
        schema["default"] = param.default
    out: dict[str, Any] = {
        "name": param.name,
        "in": param.where,
        "required": param.required or param.where == "path",
        "schema": schema,
    }
    if param.repeated:
        out["style"], out["explode"] = "form", True
    return out


def _operation(operation: Operation) -> dict[str, Any]:
    area = area_of(operation.path)
    role = area.role if area is not None else None
    statuses = set(operation.errors) | {500}
    if role is not None:
        statuses |= {401, 403, 503}
    parameters = [_parameter(p) for p in operation.params]
    parameters += [
        {"name": name, "in": "header", "required": False, "schema": schema.json_schema()}
        for name, schema in operation.headers.items()
    ]
    out: dict[str, Any] = {
        "operationId": _operation_id(operation),
        "summary": operation.summary,
        "tags": [area.name if area is not None else "other"],
        # alternatives: the area's role, or any of its readers (metrics, the console's data)
        "security": [{security_scheme(r): []} for r in (role, *area.readers) if r is not None]
        if area is not None and role is not None
        else [],
        "responses": {
            "200": {
                "description": "OK",
                "content": {operation.answer_type: {"schema": operation.answer.json_schema()}},
            },
            **{str(status): _error(status) for status in sorted(statuses)},
            **{
                str(status): {
                    "description": _REASONS.get(status, "Answered"),
                    "content": {"application/json": {"schema": schema.json_schema()}},
                }
                for status, schema in operation.other_answers.items()
            },
        },
    }
    if operation.description:
        out["description"] = operation.description
    if parameters:
        out["parameters"] = parameters
    if operation.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": operation.body.json_schema()}},
        }
    elif operation.raw_body:
        out["requestBody"] = {
            "required": False,
            "description": "the payload, as is",
            "content": {"application/octet-stream": {"schema": {}}},
        }
    if operation.body is not None or operation.raw_body:
        out["responses"]["413"] = _error(413)
    return out


def _operation_id(operation: Operation) -> str:
    words = re.findall(r"[a-z0-9]+", openapi_path(operation.path).replace("{", "by-"))
    return operation.method.lower() + "".join(word.capitalize() for word in words)


def _version() -> str:
    try:
        return importlib.metadata.version("exchnode")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the local API."""
    paths: dict[str, dict[str, Any]] = {}
    named: dict[str, Schema] = {"Error": ERROR.target}
    for operation in OPERATIONS:
        paths.setdefault(openapi_path(operation.path), {})[operation.method.lower()] = _operation(
            operation
        )
        for schema in (operation.answer, operation.body, *(p.schema for p in operation.params)):
            if schema is not None:
                _collect(schema, named)
    schemes = {
        security_scheme(role): {
            "type": "http",
            "scheme": "bearer",
            "description": (
                f"The {role.value}'s token: the contents of the file [operator] "
                f"{token_key(role)} names (written by 'exchnode node init')."
            ),
        }
        for role in (Role.OPERATOR, Role.ADMINISTRATOR, Role.AUDITOR)
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "exchnode node local API",
            "version": _version(),
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": {name: schema.json_schema() for name, schema in sorted(named.items())},
            "securitySchemes": schemes,
        },
    }


def document_bytes() -> bytes:
    """The document as served and written: UTF-8 JSON, keys in declaration order, indented."""
    return json.dumps(document(), ensure_ascii=False, indent=2).encode() + b"\n"


def _write(args: argparse.Namespace) -> int:
    sys.stdout.buffer.write(document_bytes())
    sys.stdout.flush()
    return 0


def register(verbs: Any, prog: str) -> None:
    """``openapi``: print the document (no node needed)."""
    parser = verbs.add_parser(
        "openapi",
        help="print the local API's OpenAPI 3.1 document (no running node needed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            f"  {prog} openapi > openapi.json\n"
            '  curl -H "Authorization: Bearer $(cat operator.token)" \\\n'
            "      http://127.0.0.1:7480/v1/openapi.json    # the same, from a running node"
        ),
    )
    parser.set_defaults(handler=_write)
