"""The link protocol: moving custody of envelopes between neighbours (pure; federation layer).

Theory of operation
-------------------
Between two neighbouring nodes (parent and child, or a configured link)
envelopes move in **transfers**. A transfer is one request carrying a batch of
items, each an envelope's exact bytes plus the *targets* this copy is for
(``routing.Route``). The response answers every item, in order, with one of:

* ``TAKEN``: the receiver holds the item durably (``store.accept`` has
  returned: accepted or duplicate). The sender may now forget it
  (``store.forwarded``). This is custody transfer; nothing else releases an
  item.
* ``REFUSED``, with an error code (SPEC §12) and a reason: the item is
  wrong for good (bad signature, expired, not allowed from this neighbour,
  unroutable). The sender must not retry it; it drops the item and reports
  non-delivery to the envelope's sender.
* ``DEFERRED``: the receiver is full or busy. The item stays with the sender,
  which retries later. This is back-pressure: nothing is dropped.

Every response also carries **credit**: how many more items and bytes the
receiver is willing to take in the next transfer. A sender never sends more
than the last credit it saw (at least one item, so that an oversized envelope
cannot wedge a link), and slows down as credit shrinks.

Transfers are idempotent. If the response is lost, the sender resends the
same items, and the receiver's dedup answers them ``TAKEN`` again
(``DUPLICATE`` in the store). At-least-once per hop plus dedup gives
exactly-once custody.

Wire form, canonical msgpack (SPEC §4):

    request  = [version=1, sender: str, transfer_id: bin(16),
                items: [[envelope: bin, targets: [str]]]]
    response = [version=1, transfer_id: bin(16),
                results: [[status: uint, code: str, reason: str]],
                credit: [items: uint, bytes: uint]]

``sender`` is the transferring neighbour's node name. The receiver checks it
against the name in that neighbour's verified TLS certificate. This module
only encodes, decodes and checks shapes; the transport moves the bytes, the
node decides.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple

from exchnode.core import check_name, pack, unpack
from exchnode.errors import MalformedError, UnsupportedVersionError, UsageError

__all__ = [
    "LINK_VERSION",
    "Credit",
    "Item",
    "ItemResult",
    "Status",
    "TransferRequest",
    "TransferResponse",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "fit_to_credit",
]

LINK_VERSION = 1
TRANSFER_ID_LENGTH = 16
MAX_ITEMS = 4096
MAX_TARGETS = 1024
MAX_REASON = 512
MAX_TRANSFER_BYTES = 256 * 1024 * 1024


class Status(enum.IntEnum):
    TAKEN = 0
    REFUSED = 1
    DEFERRED = 2


class Item(NamedTuple):
    envelope: bytes
    targets: tuple[str, ...]


class ItemResult(NamedTuple):
    status: Status
    code: str = ""
    reason: str = ""


class Credit(NamedTuple):
    items: int
    bytes: int


class TransferRequest(NamedTuple):
    sender: str
    transfer_id: bytes
    items: tuple[Item, ...]


class TransferResponse(NamedTuple):
    transfer_id: bytes
    results: tuple[ItemResult, ...]
    credit: Credit


def encode_request(request: TransferRequest) -> bytes:
    if len(request.transfer_id) != TRANSFER_ID_LENGTH:
        raise UsageError(f"transfer_id must be {TRANSFER_ID_LENGTH} bytes")
    if not 1 <= len(request.items) <= MAX_ITEMS:
        raise UsageError(f"a transfer carries 1..{MAX_ITEMS} items")
    return pack(
        [
            LINK_VERSION,
            request.sender,
            request.transfer_id,
            [[item.envelope, list(item.targets)] for item in request.items],
        ]
    )


def encode_response(response: TransferResponse) -> bytes:
    return pack(
        [
            LINK_VERSION,
            response.transfer_id,
            [[int(r.status), r.code, r.reason[:MAX_REASON]] for r in response.results],
            [response.credit.items, response.credit.bytes],
        ]
    )


def _check_version(value: object, what: str) -> None:
    if type(value) is not int:
        raise MalformedError(f"{what}.version", "must be an integer")
    if value != LINK_VERSION:
        raise UnsupportedVersionError(f"{what} version {value} is not supported (only 1)")


def _check_transfer_id(value: object, what: str) -> bytes:
    if type(value) is not bytes or len(value) != TRANSFER_ID_LENGTH:
        raise MalformedError(f"{what}.transfer_id", f"must be {TRANSFER_ID_LENGTH} bytes")
    return value


def decode_request(data: bytes, max_bytes: int = MAX_TRANSFER_BYTES) -> TransferRequest:
    """Parse a transfer request; raise a ``RejectedError`` naming the field."""
    value = unpack(data, what="transfer", max_size=max_bytes, max_array=MAX_ITEMS)
    if type(value) is not list or len(value) != 4:
        raise MalformedError("transfer", "expected an array of 4 elements")
    version, sender, transfer_id, items = value
    _check_version(version, "transfer")
    check_name(sender, "transfer.sender")
    _check_transfer_id(transfer_id, "transfer")
    if type(items) is not list or not 1 <= len(items) <= MAX_ITEMS:
        raise MalformedError("transfer.items", f"must be an array of 1..{MAX_ITEMS} items")
    parsed = []
    for i, item in enumerate(items):
        if type(item) is not list or len(item) != 2:
            raise MalformedError(f"transfer.items[{i}]", "expected [envelope, targets]")
        envelope, targets = item
        if type(envelope) is not bytes or not envelope:
            raise MalformedError(f"transfer.items[{i}].envelope", "must be non-empty bytes")
        if type(targets) is not list or not 1 <= len(targets) <= MAX_TARGETS:
            raise MalformedError(
                f"transfer.items[{i}].targets", f"must be an array of 1..{MAX_TARGETS} names"
            )
        for j, target in enumerate(targets):
            check_name(target, f"transfer.items[{i}].targets[{j}]")
        parsed.append(Item(envelope, tuple(targets)))
    return TransferRequest(sender, transfer_id, tuple(parsed))


def decode_response(
    data: bytes, request: TransferRequest, max_bytes: int = 16 * 1024 * 1024
) -> TransferResponse:
    """Parse the response to ``request``: same transfer id, one result per item."""
    value = unpack(data, what="transfer response", max_size=max_bytes, max_array=MAX_ITEMS)
    if type(value) is not list or len(value) != 4:
        raise MalformedError("transfer response", "expected an array of 4 elements")
    version, transfer_id, results, credit = value
    _check_version(version, "transfer response")
    if _check_transfer_id(transfer_id, "transfer response") != request.transfer_id:
        raise MalformedError("transfer response.transfer_id", "answers another transfer")
    if type(results) is not list or len(results) != len(request.items):
        raise MalformedError(
            "transfer response.results", f"must answer all {len(request.items)} items, in order"
        )
    parsed = []
    for i, result in enumerate(results):
        where = f"transfer response.results[{i}]"
        if type(result) is not list or len(result) != 3:
            raise MalformedError(where, "expected [status, code, reason]")
        status, code, reason = result
        if type(status) is not int or status not in Status._value2member_map_:
            raise MalformedError(f"{where}.status", "must be 0 (taken), 1 (refused), 2 (deferred)")
        if type(code) is not str or type(reason) is not str or len(reason) > MAX_REASON:
            raise MalformedError(where, f"code and reason must be strings (reason ≤ {MAX_REASON})")
        if status == Status.REFUSED and not code:
            raise MalformedError(f"{where}.code", "a refusal must name its error code")
        parsed.append(ItemResult(Status(status), code, reason))
    if (
        type(credit) is not list
        or len(credit) != 2
        or any(type(c) is not int or c < 0 for c in credit)
    ):
        raise MalformedError("transfer response.credit", "must be [items, bytes], non-negative")
    return TransferResponse(transfer_id, tuple(parsed), Credit(credit[0], credit[1]))


def fit_to_credit(sizes: Sequence[int], credit: Credit) -> int:
    """How many of the next items (by envelope size, in order) a transfer may carry.

    At least one if any is waiting, whatever the credit, so that a single
    oversized envelope can always move. The receiver then answers it DEFERRED
    or takes it. *When* to send is the caller's decision: after a credit of
    zero it waits out its backoff, then probes with one item.
    """
    count, total = 0, 0
    for size in sizes:
        if count >= max(credit.items, 1) or (count and total + size > credit.bytes):
            break
        count += 1
        total += size
    return count
