"""The daemon's log configuration renders no secret an exception could carry.

structlog's JSON tracebacks render every frame's local variables by default;
a handler's frame held the caller's bearer token and the request's first
bytes.  Whatever path an exception takes to a log line -- ``log.exception``,
``exc_info=`` on a structlog or a standard logger (aiohttp's, asyncio's), an
uncaught one in a thread -- the line has the type and the frames, no locals,
and no message of an exception type that may quote request data.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from exchnode.errors import UsageError
from exchnode.node.logs import WITHHELD, configure_logging

SECRET = "Bearer-token-0123456789abcdef-SECRET"
PAYLOAD = "payload-bytes-PAYLOADMARKER"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = sys.excepthook, threading.excepthook
    try:
        yield
    finally:
        structlog.configure(**config)
        root.handlers, root.level = handlers, level
        sys.excepthook, threading.excepthook = hooks


def configured(fmt: str) -> io.StringIO:
    out = io.StringIO()
    configure_logging("info", fmt, stream=out)
    return out


def handler_that_fails(token: str, body: bytes) -> None:
    """Like an API handler: the token and the body are locals when it fails."""
    authorization = f"Bearer {token}"  # noqa: F841 -- a local, as in the guard
    first_bytes = body[:80]  # noqa: F841
    json.loads(b"[" * 100_000)  # RecursionError, as the hostile JSON of the review


def failing_with_message(secret: str) -> None:
    raise KeyError(secret)  # a KeyError's message is its key: here request data


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_structlog_exception_renders_no_local_and_no_withheld_message(
    restore_logging: None, fmt: str
) -> None:
    out = configured(fmt)
    log = structlog.get_logger("node.operator")
    try:
        handler_that_fails(SECRET, PAYLOAD.encode())
    except RecursionError:
        log.exception("operator request failed")
    try:
        failing_with_message(SECRET + PAYLOAD)
    except KeyError as exc:
        log.error("operator request failed", exc_info=exc)
    text = out.getvalue()
    assert SECRET not in text, text
    assert PAYLOAD not in text, text
    for kept in ("RecursionError", "handler_that_fails", "KeyError", "failing_with_message"):
        assert kept in text  # the types and the frames stay
    assert WITHHELD in text
    if fmt == "json":
        lines = [json.loads(line) for line in text.splitlines()]
        assert len(lines) == 2
        for line in lines:
            for item in line["exception"]:
                for frame in item["frames"]:
                    assert set(frame) == {"filename", "lineno", "name"}  # no "locals"
        recursion = lines[0]["exception"][0]
        assert recursion["exc_type"] == "RecursionError"
        assert "maximum recursion depth" in recursion["exc_value"]  # about the machine: shown


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_standard_loggers_with_exc_info_render_no_secret(restore_logging: None, fmt: str) -> None:
    """aiohttp's "Error handling request" and asyncio's "Task exception was never retrieved"."""
    out = configured(fmt)
    try:
        handler_that_fails(SECRET, PAYLOAD.encode())
    except RecursionError:
        logging.getLogger("aiohttp.server").error("Error handling request", exc_info=True)
    try:
        failing_with_message(PAYLOAD)
    except KeyError as exc:
        context: dict[str, Any] = {"exception": exc, "future": f"<Task exception={exc!r}>"}
        logging.getLogger("asyncio").error(
            "Task exception was never retrieved\nfuture: %s", context["future"], exc_info=exc
        )
    text = out.getvalue()
    assert SECRET not in text, text
    assert PAYLOAD not in text, text
    assert "Error handling request" in text
    assert "Task exception was never retrieved" in text
    if fmt == "json":
        for line in text.splitlines():
            event = json.loads(line)
            assert event["logger"] in {"aiohttp.server", "asyncio"}
            assert all("locals" not in frame for e in event["exception"] for frame in e["frames"])


def test_the_projects_own_errors_keep_their_message(restore_logging: None) -> None:
    out = configured("json")
    log = structlog.get_logger("node.daemon")
    try:
        raise UsageError("node.toml: peers[1].relation: must be one of parent, child")
    except UsageError:
        log.exception("start failed")
    event = json.loads(out.getvalue())
    assert event["exception"][0]["exc_type"] == "exchnode.errors.UsageError"
    assert event["exception"][0]["exc_value"].endswith("must be one of parent, child")


def test_a_chain_of_causes_is_rendered_without_locals(restore_logging: None) -> None:
    out = configured("json")
    try:
        try:
            failing_with_message(SECRET)
        except KeyError as exc:
            raise UsageError("the configuration is incomplete") from exc
    except UsageError:
        structlog.get_logger().exception("failed")
    text = out.getvalue()
    assert SECRET not in text
    chain = json.loads(text)["exception"]
    assert [item["exc_type"] for item in chain] == ["exchnode.errors.UsageError", "KeyError"]
    assert chain[1]["is_cause"]
    assert chain[1]["exc_value"] == WITHHELD


def test_uncaught_exceptions_in_threads_are_one_json_line_without_secrets(
    restore_logging: None,
) -> None:
    out = configured("json")

    def worker() -> None:
        authorization = SECRET  # noqa: F841
        failing_with_message(PAYLOAD)

    thread = threading.Thread(target=worker, name="store")
    thread.start()
    thread.join(10)
    try:
        failing_with_message(SECRET)
    except KeyError:
        sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
    text = out.getvalue()
    assert SECRET not in text, text
    assert PAYLOAD not in text, text
    events = [json.loads(line) for line in text.splitlines()]
    assert [e["event"] for e in events] == [
        "uncaught exception in thread store",
        "uncaught exception",
    ]
    for event in events:
        assert event["level"] == "critical"
        assert event["exception"][0]["exc_type"] == "KeyError"
