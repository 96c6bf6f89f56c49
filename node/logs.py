"""Logging for the daemon: one JSON object per line on stderr, via structlog.

The library only ever calls ``structlog.get_logger``; the program decides where
the lines go, so this configuration lives here and not in ``exchnode``.  The
standard library's loggers (asyncio, aiohttp) are routed through the same
renderer, so every line of a daemon's stderr parses as JSON; so are uncaught
exceptions, in the main thread and in any other (``sys.excepthook``,
``threading.excepthook``).

Nothing logged here carries a secret: the operator token, passphrases and
payloads are never passed to a logger.  And an exception cannot smuggle one
in: every exception, on every path (``log.exception``, ``exc_info=`` on a
structlog or a standard logger, aiohttp's and asyncio's own error lines, an
uncaught one), is rendered by :func:`exception_summary` alone:

* its type and its chain of causes, and each frame's file, line and function
  -- **never a frame's local variables** (structlog's default JSON traceback
  renders them, and there they held the caller's bearer token and the first
  bytes of the request body);
* the message only of exceptions whose text this program writes itself,
  that describe the machine, or that describe the code (:data:`SHOWN_MESSAGES`):
  :class:`~exchnode.errors.ExchnodeError` (the project's errors carry no
  secret or payload byte by rule), ``OSError`` (errno, strerror, file name),
  ``RecursionError``, ``MemoryError``, and a bug's ``TypeError``,
  ``AttributeError``, ``NameError``, ``ImportError``, ``IndexError``,
  ``NotImplementedError``, ``ArithmeticError`` (types, attributes and names,
  not values).  Any other type's message -- a ``KeyError`` is its key, a
  ``ValueError`` (``UnicodeDecodeError`` too) often the value or byte it
  refused, and any of them may come from a request -- is withheld; the type
  and the frames say where to look;
* a standard logger's line that carries an exception keeps only its message's
  first line (asyncio appends the task's repr, which quotes the exception's
  message).
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime
from types import TracebackType
from typing import Any, TextIO

import structlog

from exchnode.errors import ExchnodeError
from exchnode.sharing import CHINA_STANDARD_TIME

__all__ = ["configure_logging", "exception_summary", "format_exception_summary"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
#: Exceptions whose message is shown: written by this program, about the machine, or about
#: the program's own code (types, attributes, names: a bug's message, not a value).
SHOWN_MESSAGES: tuple[type[BaseException], ...] = (
    ExchnodeError,
    OSError,
    RecursionError,
    MemoryError,
    TypeError,
    AttributeError,
    NameError,
    ImportError,
    IndexError,
    NotImplementedError,
    ArithmeticError,
)
WITHHELD = "(message withheld: it may quote request data)"
MAX_FRAMES = 50  # per exception, the innermost kept
MAX_CHAIN = 8  # causes followed

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _exc_info(value: object) -> ExcInfo | None:
    """What ``exc_info`` means, as structlog and the standard library accept it."""
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value[0], value[1], value[2]
    if value is True or (value and not isinstance(value, tuple)):
        current = sys.exc_info()
        if current[1] is not None:
            return current[0], current[1], current[2]
    return None


def _type_name(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _message(error: BaseException) -> str:
    if isinstance(error, SHOWN_MESSAGES):
        return str(error)
    return WITHHELD if str(error) else ""


def exception_summary(error: BaseException) -> list[dict[str, Any]]:
    """An exception and its causes, outermost first, as dicts: type, message (if shown), frames.

    The frames are (file, line, function) only: no locals, no source text.
    """
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < MAX_CHAIN:
        chain.append(current)
        if current.__cause__ is not None:
            current = current.__cause__
        elif current.__suppress_context__:
            current = None
        else:
            current = current.__context__
    summary = []
    for index, item in enumerate(chain):
        frames = traceback.extract_tb(item.__traceback__)[-MAX_FRAMES:]
        summary.append(
            {
                "exc_type": _type_name(type(item)),
                "exc_value": _message(item),
                "is_cause": index > 0,
                "frames": [
                    {"filename": f.filename, "lineno": f.lineno, "name": f.name} for f in frames
                ],
            }
        )
    return summary


def format_exception_summary(error: BaseException) -> str:
    """:func:`exception_summary` as the text of a traceback (for the console format)."""
    lines: list[str] = []
    for item in reversed(exception_summary(error)):  # innermost cause first, as Python prints
        if lines:
            lines.append("\nThe above exception led to the following exception:\n")
        lines.append("Traceback (most recent call last):")
        for frame in item["frames"]:
            lines.append(
                f'  File "{frame["filename"]}", line {frame["lineno"]}, in {frame["name"]}'
            )
        value = item["exc_value"]
        lines.append(f"{item['exc_type']}: {value}" if value else item["exc_type"])
    return "\n".join(lines)


def _render_exceptions(
    render: Callable[[BaseException], Any],
) -> Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]:
    """A processor that replaces ``exc_info`` with ``exception``, rendered by ``render``."""

    def processor(
        _: Any, __: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        info = _exc_info(event_dict.pop("exc_info", None))
        if info is not None:
            event_dict["exception"] = render(info[1])
        return event_dict

    return processor


def _first_line_with_exception(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A standard logger's message with an exception: its first line (asyncio adds reprs)."""
    if event_dict.get("exc_info") and isinstance(event_dict.get("event"), str):
        event_dict["event"] = event_dict["event"].split("\n", 1)[0]
    return event_dict


def _with_fields(fields: dict[str, Any]) -> Any:
    def processor(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
        return event_dict

    return processor


def _timestamp(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """ISO 8601 with the offset, China Standard Time: the one time convention of every output."""
    event_dict["timestamp"] = datetime.now(CHINA_STANDARD_TIME).isoformat(timespec="microseconds")
    return event_dict


def configure_logging(
    level: str = "info",
    fmt: str = "json",
    stream: TextIO | None = None,
    *,
    fields: Mapping[str, Any] | None = None,
) -> None:
    """Log lines on ``stream`` (stderr); ``fields``: on every line (a hub's ``worker``)."""
    out = stream if stream is not None else sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,
    ]
    if fields:
        shared.insert(0, _with_fields(dict(fields)))
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        exceptions = _render_exceptions(exception_summary)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        exceptions = _render_exceptions(format_exception_summary)
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                exceptions,
                renderer,
            ],
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                _first_line_with_exception,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(_LEVELS[level], logging.WARNING))
    _route_uncaught()


def _route_uncaught() -> None:
    """Uncaught exceptions, in any thread, as one log line through the same renderer."""
    log = logging.getLogger("exchnode.node")

    def main_thread(
        kind: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> None:
        log.critical("uncaught exception", exc_info=(kind, error, tb))

    def other_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or isinstance(args.exc_value, SystemExit):
            return
        thread = args.thread.name if args.thread is not None else "?"
        log.critical(
            "uncaught exception in thread %s",
            thread,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = main_thread
    threading.excepthook = other_thread
