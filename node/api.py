"""Shared pieces of the operator API's handlers: problems as HTTP answers, query and body readers.

A handler raises :class:`HTTPProblem` for what it refuses itself; the
operator API's guard turns it, and the library's errors, into
``{"error": ..., "code": ...}`` with a 4xx status (``node.operator``).

**Bodies are hostile until read.**  :func:`parse_json_object` is the one
reader of a JSON body, and it answers every way a body can be wrong with an
:class:`HTTPProblem` (400, code ``invalid-json``) naming what was wrong and
never quoting the body: bytes that are not UTF-8 (RFC 8259 §8.1; no other
encoding is guessed), text that is not JSON (the parser's reason, line and
column), nesting deeper than :data:`MAX_JSON_DEPTH`, ``NaN``/``Infinity``, a
number that is no finite float or an integer outside 64 bits (what msgpack
and the store can hold), a text with a lone surrogate (no UTF-8 form: it
would fail later, deep in an encoder), and a top level that is not an object.
So a handler only ever sees plain dicts, lists, texts, finite numbers,
booleans and nulls, none deeper than the limit.

**Errors quote no body.**  An error names the field and the rule it broke;
what it may quote back is a short identifier the caller gave (a name, a code,
an enumerated value: :func:`shown`), never a payload, a record value, a free
text or anything long.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from aiohttp import web

from exchnode.audit import NO_SUBJECT, Actor, Role, Subject, SubjectKind
from exchnode.errors import ExchnodeError, InvalidAuditRecordError
from exchnode.store import PeerState

__all__ = [
    "CALLER_ROLE",
    "MAX_JSON_DEPTH",
    "HTTPProblem",
    "checked_params",
    "checked_request",
    "error_response",
    "flag",
    "integer",
    "json_body",
    "json_kind",
    "node_subject",
    "number",
    "parse_json_object",
    "peer_state_json",
    "person",
    "shown",
]

#: How deep a request body may nest (the API's own forms need 5).
MAX_JSON_DEPTH = 32
_MAX_INT = 2**64 - 1  # msgpack's widest unsigned integer
_MIN_INT = -(2**63)  # and its widest signed one
_MAX_INT_DIGITS = 21  # no integer in range has more: refused before converting
_MAX_SHOWN = 64  # characters of a caller's identifier an error may quote
#: The role the guard admitted a request as (``request[CALLER_ROLE]``), for handlers that say it.
CALLER_ROLE = web.RequestKey("caller_role", Role)


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
        raise HTTPProblem(400, f"{name} must be a number, got {shown(text)}") from None
    return _within(name, value, low, high)


def integer(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPProblem(400, f"{name} must be an integer, got {shown(text)}") from None
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
    raise HTTPProblem(400, f"{name} must be 0 or 1, got {shown(text)}")


def shown(value: object) -> str:
    """A caller's value for an error message: a short identifier quoted, else only its kind.

    Texts of up to 64 characters without control characters are quoted
    (``'databse'``); anything else is described (``a list``, ``a text of 300
    characters``), so an error never carries a payload or a long text back.
    """
    if isinstance(value, str):
        if len(value) <= _MAX_SHOWN and value.isprintable():
            return repr(value)
        return f"a text of {len(value)} characters"
    return json_kind(value)


def json_kind(value: object) -> str:
    """What kind of JSON value this is, for an error: ``an object``, ``a number``, ``null``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class _NumberRefused(ValueError):
    pass


def _integer(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) <= _MAX_INT_DIGITS:
        value = int(text)
        if _MIN_INT <= value <= _MAX_INT:
            return value
    raise _NumberRefused(f"an integer in the body is out of range ({_MIN_INT} to {_MAX_INT})")


def _float(text: str) -> float:
    value = float(text)
    if math.isfinite(value):
        return value
    raise _NumberRefused("a number in the body is too large to be a finite number")


def _constant(text: str) -> Any:
    raise _NumberRefused(f"{text} is not a JSON number: the body must be standard JSON")


def _invalid(problem: str) -> HTTPProblem:
    return HTTPProblem(400, problem, "invalid-json")


_DELIMITERS = ("Expecting ':' delimiter", "Expecting ',' delimiter")


def _parser_reason(exc: json.JSONDecodeError) -> str:
    """The parser's reason without anything it quoted from the body."""
    if exc.msg in _DELIMITERS:
        reason = exc.msg
    else:  # "Invalid \\escape: 'q'" (the pure-Python parser's) quotes the body: cut it
        reason = exc.msg.split(":")[0].strip().removesuffix(" at")
        if not reason or "'" in reason or '"' in reason:
            reason = "invalid JSON"
    return f"{reason} at line {exc.lineno} column {exc.colno}"


def _check_tree(document: object) -> None:
    """Depth at most :data:`MAX_JSON_DEPTH`, and every text (keys too) encodable as UTF-8."""
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, list | dict):
            if depth > MAX_JSON_DEPTH:
                raise _invalid(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key)
                    pending.append((item, depth + 1))
            else:
                pending.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(
            "a text in the body has a lone surrogate (\\ud800-\\udfff without its pair): "
            "it is not Unicode"
        ) from None


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or :class:`HTTPProblem` 400 naming what is wrong."""
    if not raw.strip():
        raise _invalid("the body is empty: send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"the body is not UTF-8 (an invalid byte at offset {exc.start})") from None
    try:
        document = json.loads(
            text, parse_int=_integer, parse_float=_float, parse_constant=_constant
        )
    except RecursionError:
        raise _invalid(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except _NumberRefused as exc:
        raise _invalid(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise _invalid(f"the body is not JSON: {_parser_reason(exc)}") from None
    except ValueError:  # anything else the parser refuses: say so without its words
        raise _invalid("the body is not JSON") from None
    _check_tree(document)
    if not isinstance(document, dict):
        raise _invalid(f"the body must be a JSON object, not {json_kind(document)}")
    return document


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object (:func:`parse_json_object`).

    Once its operation has checked it (``node.operations.validated``), the
    checked document.
    """
    checked = _BODY.get()
    if checked is not None:
        return checked
    return parse_json_object(await request.read())


#: What the request being handled was checked into by its operation (``node.operations``):
#: set around the handler only, and reset after it (a keep-alive connection's next request
#: runs in the same task).
_PARAMS: ContextVar[dict[str, Any] | None] = ContextVar("exchnode_params", default=None)
_BODY: ContextVar[dict[str, Any] | None] = ContextVar("exchnode_body", default=None)


@contextlib.contextmanager
def checked_request(params: dict[str, Any], body: dict[str, Any] | None) -> Iterator[None]:
    """Within: :func:`checked_params` and :func:`json_body` answer the checked values."""
    params_token, body_token = _PARAMS.set(params), _BODY.set(body)
    try:
        yield
    finally:
        _PARAMS.reset(params_token)
        _BODY.reset(body_token)


def checked_params() -> dict[str, Any]:
    """The handled request's query, path and header parameters, parsed and checked."""
    params = _PARAMS.get()
    if params is None:  # a handler without an operation: a bug, not the caller's fault
        raise RuntimeError("no operation checked this request's parameters")
    return params


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


def node_subject(name: str) -> Subject:
    """The node a request names (in its path), as the subject of its audit record; none
    where the text is no node name: the refusal of a malformed name is recorded too."""
    try:
        return Subject(SubjectKind.NODE, name)
    except ExchnodeError:
        return NO_SUBJECT


def peer_state_json(state: PeerState, now_ms: int) -> dict[str, Any]:
    """A link's state as health and the administrator see it: up, down or unknown."""
    return {
        "state": "down" if state.failures else "up" if state.last_ok_ms is not None else "unknown",
        "failures": state.failures,
        "retry_in_ms": max(state.next_attempt_ms - now_ms, 0) if state.failures else 0,
        "last_ok_ms": state.last_ok_ms,
    }
