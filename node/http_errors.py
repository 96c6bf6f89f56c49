"""Requests aiohttp cannot parse as HTTP, answered in the API's JSON error shape too.

Theory of operation
-------------------
The operator API's guard (``node.operator``) answers every refusal as
``{"error": ..., "code": ...}``, but it only sees requests aiohttp could
parse.  A request line or header longer than aiohttp reads (8190 bytes), a
malformed header or chunked body, is refused by aiohttp's connection handler
before any middleware runs, in plain text -- and that text quotes the bytes
it choked on, which may be a header, a token among them.  The API documents
one error shape for every 4xx and 5xx (``node.openapi``), so
:func:`answer_in_json` makes the connection handler of a runner's server
answer those in it as well, naming the rule the request broke and quoting
nothing of it.

aiohttp offers no hook for this answer: its ``RequestHandler.handle_error``
is overridden in a subclass that the server builds for each connection.
``tests/integration/test_openapi.py`` sends such requests to a live daemon,
so an aiohttp that changes this fails there, loudly.
"""

from __future__ import annotations

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

__all__ = ["answer_in_json"]


def _problem(status: int, exc: BaseException | None) -> tuple[str, str]:
    """What the request broke, in words that quote none of it; and the code."""
    if isinstance(exc, http_exceptions.LineTooLong):
        return "the request line or a header is too long (at most 8190 bytes)", "invalid-http"
    if isinstance(exc, http_exceptions.BadHttpMethod):
        return "the request's method is not an HTTP method", "invalid-http"
    if isinstance(exc, http_exceptions.HttpProcessingError) or 400 <= status < 500:
        return "the request is not well-formed HTTP/1.1", "invalid-http"
    return "internal error: the request was not carried out; the node's log says where", "internal"


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, whose own error answers are the API's JSON."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)  # logs it; checks the state
        problem, code = _problem(plain.status, exc)
        answer = web.json_response({"error": problem, "code": code}, status=plain.status)
        answer.force_close()
        return answer


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = _JsonErrorHandler  # the same slots: only handle_error differs
        return handler


def answer_in_json(runner: web.BaseRunner) -> None:
    """Make ``runner``'s server (set up) answer unparsable requests as the API's JSON error."""
    server = runner.server
    if server is None:
        raise RuntimeError("the runner is not set up")
    server.__class__ = _JsonErrorServer
