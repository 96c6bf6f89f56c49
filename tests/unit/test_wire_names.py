"""The names on the wire are the spec's, byte for byte, wherever the code keeps them.

A content type or a path is part of the protocol (SPEC §13: peers of another
version must keep understanding them), yet it lives in a Python string that a
refactoring can rewrite along with module names: the move into packages once
turned ``vnd.exchnode.receipts`` into ``vnd.exchnode.core``.  This pins each one to
its literal and to the spec's text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exchnode.aio import (
    _catalog_service,
    _directory_service,
    _link_stream,
    _transport,
    _witness_service,
)
from exchnode.core import _messages, _reports
from exchnode.sharing import _codecs

SPEC = (Path(__file__).resolve().parents[2] / "protocol" / "SPEC.md").read_text("utf-8")

WIRE_NAMES = [
    (_transport.CONTENT_TYPE, "application/vnd.exchnode.link+msgpack"),
    (_transport.TRANSFER_PATH, "/exchnode/v1/transfer"),
    (_transport.HELLO_PATH, "/exchnode/v1/hello"),
    (_link_stream.STREAM_PATH, "/exchnode/v1/link"),
    (_link_stream.STREAM_PROTOCOL, "exchnode.link.1"),
    (_directory_service.DIRECTORY_CONTENT_TYPE, "application/vnd.exchnode.directory+msgpack"),
    (_directory_service.DIRECTORY_PATH, "/exchnode/v1/directory"),
    (_directory_service.DIRECTORY_CHANGED_PATH, "/exchnode/v1/directory/changed"),
    (_directory_service.DIRECTORY_CHANGES_PATH, "/exchnode/v1/directory/changes"),
    (_directory_service.DIRECTORY_LOOKUP_PATH, "/exchnode/v1/directory/lookup"),
    (_messages.RECEIPT_CONTENT_TYPE, "application/vnd.exchnode.receipts+msgpack"),
    (_reports.NDR_CONTENT_TYPE, "application/vnd.exchnode.ndr+msgpack"),
    (_codecs.CONTENT_TYPE, "application/vnd.exchnode.subscription+msgpack"),
    (_catalog_service.CATALOG_SUMMARY_PATH, "/exchnode/v1/catalog/summary"),
    (_catalog_service.CATALOG_VERSIONS_PATH, "/exchnode/v1/catalog/versions"),
    (_catalog_service.CATALOG_RECORDS_PATH, "/exchnode/v1/catalog/records"),
    (_catalog_service.CATALOG_CHANGED_PATH, "/exchnode/v1/catalog/changed"),
    (_catalog_service.CATALOG_FEED_PATH, "/exchnode/v1/catalog/feed"),
    (_catalog_service.CATALOG_LOOKUP_PATH, "/exchnode/v1/catalog/lookup"),
    (_catalog_service._CONTENT_TYPE, "application/vnd.exchnode.catalog+msgpack"),
    (_witness_service.AUDIT_HEAD_PATH, "/exchnode/v1/audit/head"),
    (_witness_service._CONTENT_TYPE, "application/vnd.exchnode.audit+msgpack"),
]


@pytest.mark.parametrize(("value", "literal"), WIRE_NAMES, ids=[w[1] for w in WIRE_NAMES])
def test_each_wire_name_is_its_literal_and_in_the_spec(value: str, literal: str) -> None:
    assert value == literal
    assert literal in SPEC, f"SPEC.md does not state {literal}"
