"""The link protocol's wire forms (custody transfer between neighbours)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchnode import errors
from exchnode.core import pack
from exchnode.federation import (
    Credit,
    Item,
    ItemResult,
    Status,
    TransferRequest,
    TransferResponse,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from exchnode.federation._link import fit_to_credit

REQUEST = TransferRequest(
    "520102",
    b"\x01" * 16,
    (
        Item(b"envelope-one", ("520100.fagai",)),
        Item(b"envelope-two", ("520302.shebao", "530102.gongan")),
    ),
)


def test_request_round_trip() -> None:
    assert decode_request(encode_request(REQUEST)) == REQUEST


def test_response_round_trip() -> None:
    response = TransferResponse(
        REQUEST.transfer_id,
        (ItemResult(Status.TAKEN), ItemResult(Status.REFUSED, "bad-signature", "seal")),
        Credit(100, 1 << 20),
    )
    assert decode_response(encode_response(response), REQUEST) == response


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda v: v.__setitem__(1, "not a name"), "transfer.sender"),
        (lambda v: v.__setitem__(2, b"short"), "transfer.transfer_id"),
        (lambda v: v.__setitem__(3, []), "transfer.items"),
        (lambda v: v[3][0].__setitem__(0, b""), "transfer.items[0].envelope"),
        (lambda v: v[3][1].__setitem__(1, []), "transfer.items[1].targets"),
        (lambda v: v[3][1][1].__setitem__(1, "Bad"), "transfer.items[1].targets[1]"),
    ],
)
def test_malformed_requests_name_the_field(mutate, field) -> None:
    value = [
        1,
        REQUEST.sender,
        REQUEST.transfer_id,
        [[i.envelope, list(i.targets)] for i in REQUEST.items],
    ]
    mutate(value)
    with pytest.raises(errors.MalformedError) as caught:
        decode_request(pack(value))
    assert caught.value.field == field


def test_unknown_version() -> None:
    with pytest.raises(errors.UnsupportedVersionError):
        decode_request(pack([2, "520102", b"\x01" * 16, [[b"e", ["520100"]]]]))


def test_a_response_must_answer_this_transfer_fully() -> None:
    good = [1, REQUEST.transfer_id, [[0, "", ""], [0, "", ""]], [1, 1]]
    decode_response(pack(good), REQUEST)
    for value, message in [
        ([1, b"\x02" * 16, good[2], good[3]], "another transfer"),
        ([1, REQUEST.transfer_id, good[2][:1], good[3]], "all 2 items"),
        ([1, REQUEST.transfer_id, [[1, "", ""], [0, "", ""]], good[3]], "must name its error"),
        ([1, REQUEST.transfer_id, [[3, "", ""], [0, "", ""]], good[3]], "status"),
        ([1, REQUEST.transfer_id, good[2], [1, -1]], "credit"),
    ]:
        with pytest.raises(errors.MalformedError, match=message):
            decode_response(pack(value), REQUEST)


def test_encoding_refuses_misuse() -> None:
    with pytest.raises(errors.UsageError):
        encode_request(REQUEST._replace(transfer_id=b"x"))
    with pytest.raises(errors.UsageError):
        encode_request(REQUEST._replace(items=()))


def test_fit_to_credit() -> None:
    sizes = [100, 100, 100, 5000]
    assert fit_to_credit(sizes, Credit(10, 1000)) == 3
    assert fit_to_credit(sizes, Credit(2, 1000)) == 2
    assert fit_to_credit(sizes, Credit(10, 150)) == 1
    assert fit_to_credit([5000], Credit(10, 100)) == 1  # an oversized envelope still moves
    assert fit_to_credit(sizes, Credit(0, 0)) == 1  # a probe, sent after the backoff
    assert fit_to_credit([], Credit(10, 1000)) == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_typed_errors(blob) -> None:
    with contextlib.suppress(errors.RejectedError):
        decode_request(blob)
    with contextlib.suppress(errors.RejectedError):
        decode_response(blob, REQUEST)
