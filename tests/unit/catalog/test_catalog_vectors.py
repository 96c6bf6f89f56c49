"""Catalog format 2's vectors (protocol/vectors/catalog.json) replayed from the JSON alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exchnode.catalog import (
    CatalogQuery,
    FeedRequest,
    LookupAnswer,
    LookupRequest,
    RecordPage,
    Wanted,
    decode_record,
)
from exchnode.core import pack
from exchnode.errors import RejectedError
from exchnode.federation import FeedPosition

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[3] / "protocol" / "vectors" / "catalog.json").read_text()
)
DECODERS: dict[str, Callable[[bytes], object]] = {
    "feed_request": FeedRequest.decode,
    "feed_page": RecordPage.decode,
    "lookup": LookupRequest.decode,
    "answer": LookupAnswer.decode,
}
FEED = bytes(range(16))


def message(name: str) -> bytes:
    return bytes.fromhex(VECTORS["messages"][name])


def test_the_valid_messages_decode_to_what_the_spec_says_and_back() -> None:
    published = bytes.fromhex(VECTORS["records"]["published"])
    withdrawn = bytes.fromhex(VECTORS["records"]["withdrawn"])
    assert decode_record(published).version == 1
    assert decode_record(withdrawn).withdrawn
    assert FeedRequest.decode(message("feed_request_first")) == FeedRequest(None, False, 100)
    assert FeedRequest.decode(message("feed_request")) == (FeedPosition(FEED, 7), False, 100)
    page = RecordPage.decode(message("feed_page"))
    assert page == RecordPage(False, FeedPosition(FEED, 9), False, (published, withdrawn))
    lookup = LookupRequest.decode(message("lookup"))
    assert lookup.keys == (
        Wanted("520102.gongan", "101001/000001", 0),
        Wanted("520102.gongan", "101001/000002", 2),
    )
    assert lookup.query == CatalogQuery(scope="52", classification="1", keyword="人口", limit=20)
    assert LookupAnswer.decode(message("answer")) == LookupAnswer(
        True, False, (published, withdrawn)
    )
    for name, decode in (
        ("feed_page", RecordPage.decode),
        ("lookup", LookupRequest.decode),
        ("answer", LookupAnswer.decode),
    ):
        value = decode(message(name))
        assert value.encode() == message(name)
    # The byte layout the spec shows (§18.12): the lookup's fields in order.
    assert message("feed_request_first") == pack([2, b"", 0, False, 100])


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_an_invalid_message_is_refused_with_its_code(vector: dict[str, Any]) -> None:
    with pytest.raises(RejectedError) as refused:
        DECODERS[vector["message"]](bytes.fromhex(vector["hex"]))
    assert refused.value.code == vector["error"]
