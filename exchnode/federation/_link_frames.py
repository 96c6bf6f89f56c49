"""The link stream's frames (SPEC §15.8): transfers over one long-lived connection (pure).

Why a module of its own: a transfer carried by its own HTTP request costs
the receiver a request to parse and a response to build, and a neighbour
quieter than the HTTP keep-alive a TLS handshake per message.  The link
stream carries the same transfers (§15.1, byte for byte) over one WebSocket
per neighbour that stays open; each transfer is one binary message with a
small fixed header, so that several can be in flight and answered in any
order.  Only the framing is here; the connection is ``exchnode.aio``'s.

    request frame  = id: uint64 BE ‖ transfer request (§15.1)
    response frame = id: uint64 BE ‖ status: uint16 BE ‖ body

``status`` is what the HTTP transfer would have answered: 200 with the
transfer response as body, or 400, 403, 413, 429 or 503 with a UTF-8 reason
(for 429 and 503 the sender waits at least a second, as ``Retry-After: 1``).
"""

from __future__ import annotations

import struct

from exchnode.errors import MalformedError

__all__ = [
    "STREAM_STATUSES",
    "StreamAnswer",
    "parse_request_frame",
    "parse_response_frame",
    "request_frame",
    "response_frame",
]

_ID = struct.Struct(">Q")
_ANSWER = struct.Struct(">QH")

#: The statuses a response frame may carry (those of §15.1's HTTP transfer).
STREAM_STATUSES = frozenset({200, 400, 403, 413, 429, 503})

#: A response frame: the transfer it answers, its status and body.
StreamAnswer = tuple[int, int, bytes]


def request_frame(frame_id: int, body: bytes) -> bytes:
    """One transfer request (``body``: its §15.1 encoding) as the frame numbered ``frame_id``."""
    return _ID.pack(frame_id) + body


def parse_request_frame(data: bytes) -> tuple[int, bytes]:
    """``(id, transfer request bytes)`` of a request frame; ``MalformedError`` if too short."""
    if len(data) < _ID.size:
        raise MalformedError("link stream frame", f"shorter than its {_ID.size}-byte id")
    (frame_id,) = _ID.unpack_from(data)
    return frame_id, data[_ID.size :]


def response_frame(frame_id: int, status: int, body: bytes) -> bytes:
    """The answer to request frame ``frame_id``: ``status`` and the response or reason."""
    if status not in STREAM_STATUSES:
        raise ValueError(f"status {status} is not one a link stream answers")
    return _ANSWER.pack(frame_id, status) + body


def parse_response_frame(data: bytes) -> StreamAnswer:
    """``(id, status, body)`` of a response frame; ``MalformedError`` if it is not one."""
    if len(data) < _ANSWER.size:
        raise MalformedError("link stream frame", f"shorter than its {_ANSWER.size}-byte header")
    frame_id, status = _ANSWER.unpack_from(data)
    if status not in STREAM_STATUSES:
        raise MalformedError("link stream frame", f"status {status} is not a transfer's")
    return frame_id, status, data[_ANSWER.size :]
