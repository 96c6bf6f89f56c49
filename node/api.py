"""Shared pieces of the operator API's handlers: problems as HTTP answers, query and body readers.

A handler raises :class:`HTTPProblem` for what it refuses itself; the
operator API's guard turns it, and the library's errors, into
``{"error": ..., "code": ...}`` with a 4xx status (``node.operator``).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = ["HTTPProblem", "error_response", "flag", "integer", "json_body", "number"]


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
