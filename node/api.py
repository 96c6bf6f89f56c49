"""Shared pieces of the operator API's handlers: problems as HTTP answers, query and body readers.

A handler raises :class:`HTTPProblem` for what it refuses itself; the
operator API's guard turns it, and the library's errors, into
``{"error": ..., "code": ...}`` with a 4xx status (``node.operator``).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from exchnode.audit import Actor, Role
from exchnode.errors import InvalidAuditRecordError
from exchnode.store import PeerState

__all__ = [
    "HTTPProblem",
    "error_response",
    "flag",
    "integer",
    "json_body",
    "number",
    "peer_state_json",
    "person",
]


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str, code: str = "usage") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_response(status: int, message: str, code: str = "usage") -> web.Response:
    return web.json_response({"error": message, "code": code}, status=status)


def number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise HTTPProblem(400, f"{name} must be a number, got {text!r}") from None
    return _within(name, value, low, high)


def integer(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPProblem(400, f"{name} must be an integer, got {text!r}") from None
    return int(_within(name, value, low, high))


def _within(name: str, value: float, low: float, high: float) -> float:
    if not low <= value <= high:
        raise HTTPProblem(400, f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return value


def flag(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "0").lower()
    if text in {"1", "true", "yes"}:
        return True
    if text in {"0", "false", "no", ""}:
        return False
    raise HTTPProblem(400, f"{name} must be 0 or 1, got {text!r}")


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        document = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPProblem(400, f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise HTTPProblem(400, "the body must be a JSON object")
    return document


def person(document: dict[str, Any], role: Role) -> str:
    """The person acting, from the body field named after their role (``"administrator"``).

    1..64 characters, no control characters or surrounding spaces: what an audit
    record's actor may hold.  400 naming the field otherwise.
    """
    field = role.value
    value = document.get(field)
    if value is None:
        raise HTTPProblem(400, f"name the person acting: the body needs an {field!r} field")
    if not isinstance(value, str):
        raise HTTPProblem(400, f"{field} must be a text of 1..64 characters")
    try:
        return Actor(role, value).name
    except InvalidAuditRecordError as exc:
        raise HTTPProblem(400, f"{field}: {exc.problem}") from None


def peer_state_json(state: PeerState, now_ms: int) -> dict[str, Any]:
    """A link's state as health and the administrator see it: up, down or unknown."""
    return {
        "state": "down" if state.failures else "up" if state.last_ok_ms is not None else "unknown",
        "failures": state.failures,
        "retry_in_ms": max(state.next_attempt_ms - now_ms, 0) if state.failures else 0,
        "last_ok_ms": state.last_ok_ms,
    }
