"""SPEC §15.8: the link stream's frames, byte for byte, and what is not one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchnode.errors import MalformedError
from exchnode.federation import (
    STREAM_STATUSES,
    parse_request_frame,
    parse_response_frame,
    request_frame,
    response_frame,
)


def test_the_frames_are_a_big_endian_header_then_the_body() -> None:
    assert request_frame(1, b"transfer") == b"\x00" * 7 + b"\x01" + b"transfer"
    assert response_frame(258, 429, b"busy") == b"\x00" * 6 + b"\x01\x02" + b"\x01\xad" + b"busy"


@given(st.integers(0, 2**64 - 1), st.binary(max_size=64), st.sampled_from(sorted(STREAM_STATUSES)))
def test_frames_round_trip(frame_id: int, body: bytes, status: int) -> None:
    assert parse_request_frame(request_frame(frame_id, body)) == (frame_id, body)
    assert parse_response_frame(response_frame(frame_id, status, body)) == (frame_id, status, body)


def test_what_is_not_a_frame_is_refused_by_name() -> None:
    with pytest.raises(MalformedError, match="link stream frame"):
        parse_request_frame(b"\x00" * 7)
    with pytest.raises(MalformedError, match="link stream frame"):
        parse_response_frame(b"\x00" * 9)
    with pytest.raises(MalformedError, match="status 302 is not a transfer's"):
        parse_response_frame(b"\x00" * 8 + b"\x01\x2e")
    with pytest.raises(ValueError, match="status 302"):
        response_frame(1, 302, b"")
