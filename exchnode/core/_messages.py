"""What a node puts inside envelopes: application messages and receipt bundles (pure).

Theory of operation
-------------------
The protocol core seals opaque payloads.  A node (``exchnode.aio``) needs a
little more between two applications, and keeps it *inside* the encryption,
where hubs cannot see it (SPEC §15):

* An **application message** (any kind not reserved below) has as its
  plaintext ``[version=1, flags: uint, payload: bin]``.  Flag bit 0 asks the
  recipient's node for a signed delivery receipt once its application has
  acknowledged the message.  Hubs do not learn who asked for receipts.
* A **receipt bundle** (kind ``receipt``) carries the signed receipts
  (SPEC §10) one recipient returns to one sender: ``[version=1, [receipt:
  bin, ...]]``.  The receipts are signed items on their own, so the bundle
  needs no integrity of its own beyond the envelope's.
* A **non-delivery report** (kind ``ndr``) is defined in ``reports``.

Reserved kinds cannot be sent by an application: the node would treat them
as its own.
"""

from __future__ import annotations

from typing import NamedTuple

from exchnode.core._encoding import pack, unpack
from exchnode.core._reports import NDR_KIND
from exchnode.errors import MalformedError, UnsupportedVersionError, UsageError

__all__ = [
    "RECEIPT_CONTENT_TYPE",
    "RECEIPT_KIND",
    "RESERVED_KINDS",
    "AppMessage",
    "decode_app_message",
    "decode_receipt_bundle",
    "encode_app_message",
    "encode_receipt_bundle",
]

MESSAGE_VERSION = 1
RECEIPT_KIND = "receipt"
RECEIPT_CONTENT_TYPE = "application/vnd.exchnode.receipts+msgpack"
RESERVED_KINDS = frozenset({NDR_KIND, RECEIPT_KIND, "directory"})
FLAG_RECEIPT = 1
_KNOWN_FLAGS = FLAG_RECEIPT
MAX_RECEIPTS = 4096
_MAX_RECEIPT_BYTES = 4096


class AppMessage(NamedTuple):
    payload: bytes
    want_receipt: bool


def encode_app_message(payload: bytes, *, want_receipt: bool) -> bytes:
    if not isinstance(payload, bytes):
        raise UsageError(f"a payload is bytes, got {type(payload).__name__}")
    return pack([MESSAGE_VERSION, FLAG_RECEIPT if want_receipt else 0, payload])


def _version(value: object, what: str) -> None:
    if type(value) is not int:
        raise MalformedError(f"{what}.version", "must be an integer")
    if value != MESSAGE_VERSION:
        raise UnsupportedVersionError(f"{what} version {value} is not supported (only 1)")


def decode_app_message(plaintext: bytes) -> AppMessage:
    """Parse an application message; a ``RejectedError`` names what was wrong."""
    value = unpack(plaintext, what="message", max_size=len(plaintext), max_array=3)
    if type(value) is not list or len(value) != 3:
        raise MalformedError("message", "expected [version, flags, payload]")
    version, flags, payload = value
    _version(version, "message")
    if type(flags) is not int or flags < 0 or flags & ~_KNOWN_FLAGS:
        raise MalformedError("message.flags", f"unknown flags {flags!r}")
    if type(payload) is not bytes:
        raise MalformedError("message.payload", "must be bytes")
    return AppMessage(payload, bool(flags & FLAG_RECEIPT))


def encode_receipt_bundle(receipts: list[bytes]) -> bytes:
    if not 1 <= len(receipts) <= MAX_RECEIPTS:
        raise UsageError(f"a receipt bundle holds 1..{MAX_RECEIPTS} receipts")
    return pack([MESSAGE_VERSION, receipts])


def decode_receipt_bundle(plaintext: bytes) -> list[bytes]:
    """The signed receipts of a bundle (each still to be verified)."""
    value = unpack(plaintext, what="receipts", max_size=len(plaintext), max_array=MAX_RECEIPTS)
    if type(value) is not list or len(value) != 2:
        raise MalformedError("receipts", "expected [version, receipts]")
    version, receipts = value
    _version(version, "receipts")
    if type(receipts) is not list or not receipts:
        raise MalformedError("receipts.receipts", "must be a non-empty array")
    for i, receipt in enumerate(receipts):
        if type(receipt) is not bytes or not 0 < len(receipt) <= _MAX_RECEIPT_BYTES:
            raise MalformedError(f"receipts.receipts[{i}]", "must be a signed receipt")
    return receipts
