"""The envelope: the unit of exchange, as bytes and as a value (SPEC §5).

Wire form, a canonical msgpack array (SPEC §4):

    envelope = [format=1, type=1, body: bin, seal: [index, count, path, signature]]
    body     = [suite, message_id, sender, sender_key_id, recipients,
                created_ms, expires_ms, kind, content_type, plaintext_size,
                nonce, ciphertext]
    recipient = [name, encryption_key_id, wrapped_content_key]

The body is carried as an opaque ``bin`` so that its exact bytes -- what the
sender signed -- are at hand without re-encoding: the envelope's digest is
the Merkle leaf ``SHA-256(0x00 || "exchnode/v1 envelope\\0" || body)``.
Everything a hub routes on (id, sender, recipients, times, kind, sizes) is in
the body in clear; only ``ciphertext`` is secret.  The seal is outside the
body because it is produced after the body, over a whole batch (``batch``).

This module only parses and checks shapes: no keys, no clock.  Signature and
decryption checks live in ``sealing``; time checks in ``replay``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import NamedTuple

from exchnode.core._batch import Seal
from exchnode.core._encoding import array_head, pack, require_canonical, unpack
from exchnode.core._identity import KEY_ID_LENGTH
from exchnode.core._names import NodeName
from exchnode.errors import (
    InvalidNameError,
    MalformedError,
    NotARecipientError,
    TooLargeError,
    UnsupportedSuiteError,
    UnsupportedVersionError,
)

__all__ = [
    "CATALOG_LEAF_LABEL",
    "DEFAULT_LIMITS",
    "ENVELOPE_LEAF_LABEL",
    "FORMAT_VERSION",
    "MESSAGE_ID_LENGTH",
    "NONCE_LENGTH",
    "RECEIPT_LEAF_LABEL",
    "SUITE_X25519_AES256GCM_ED25519",
    "SUPPORTED_SUITES",
    "TAG_LENGTH",
    "TREE_HEAD_LEAF_LABEL",
    "TYPE_CATALOG",
    "TYPE_ENVELOPE",
    "TYPE_RECEIPT",
    "TYPE_TREE_HEAD",
    "Envelope",
    "Header",
    "Limits",
    "RecipientEntry",
    "decode_envelope",
    "decode_signed",
    "encode_signed",
    "find_recipient",
    "signed_leaf",
]

FORMAT_VERSION = 1
TYPE_ENVELOPE = 1
TYPE_RECEIPT = 2
TYPE_CATALOG = 3
TYPE_TREE_HEAD = 4

# Suite 1 (SPEC §7): Ed25519 signatures, SHA-256, HPKE(DHKEM-X25519,
# HKDF-SHA256, AES-256-GCM) content-key wrap, AES-256-GCM payload.  A national
# SM2/SM3/SM4 suite takes the next number without changing the format.
SUITE_X25519_AES256GCM_ED25519 = 1
SUPPORTED_SUITES = frozenset({SUITE_X25519_AES256GCM_ED25519})

MESSAGE_ID_LENGTH = 16
NONCE_LENGTH = 12
TAG_LENGTH = 16
WRAPPED_KEY_LENGTH = 32 + 32 + TAG_LENGTH  # HPKE enc || AES-256-GCM(content key)
ENVELOPE_LEAF_LABEL = b"exchnode/v1 envelope\x00"
RECEIPT_LEAF_LABEL = b"exchnode/v1 receipt\x00"
CATALOG_LEAF_LABEL = b"exchnode/v1 catalog\x00"
TREE_HEAD_LEAF_LABEL = b"exchnode/v1 tree head\x00"
# Distinct labels keep an envelope and a receipt from ever sharing a leaf,
# so one batch signature may cover both (SPEC §6.1).
_LEAF_PREFIX = {
    TYPE_ENVELOPE: b"\x00" + ENVELOPE_LEAF_LABEL,
    TYPE_RECEIPT: b"\x00" + RECEIPT_LEAF_LABEL,
    TYPE_CATALOG: b"\x00" + CATALOG_LEAF_LABEL,
    TYPE_TREE_HEAD: b"\x00" + TREE_HEAD_LEAF_LABEL,
}
_BODY_FIELDS = 12
_KIND = re.compile(r"[a-z][a-z0-9.-]{0,31}\Z")
_CONTENT_TYPE = re.compile(r"[\x20-\x7e]{1,127}\Z")
_MAX_TIME_MS = (1 << 53) - 1


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a node will even try to parse (SPEC §5.4)."""

    max_envelope_bytes: int = 64 * 1024 * 1024
    max_recipients: int = 1024

    @property
    def max_payload_bytes(self) -> int:
        return self.max_envelope_bytes - 64 * 1024


DEFAULT_LIMITS = Limits()


class RecipientEntry(NamedTuple):
    name: str
    key_id: bytes
    wrapped_key: bytes


class Header(NamedTuple):
    """The routing header: everything in the body except the ciphertext."""

    suite: int
    message_id: bytes
    sender: str
    sender_key_id: bytes
    recipients: tuple[RecipientEntry, ...]
    created_ms: int
    expires_ms: int
    kind: str
    content_type: str
    plaintext_size: int
    nonce: bytes

    @property
    def recipient_names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.recipients)


class Envelope(NamedTuple):
    """A decoded, shape-checked envelope.  Not yet authenticated or decrypted."""

    header: Header
    ciphertext: bytes
    seal: Seal
    body: bytes
    digest: bytes


def signed_leaf(item_type: int, body: bytes) -> bytes:
    """The Merkle leaf of a signed item: its digest (SPEC §6.1)."""
    return hashlib.sha256(_LEAF_PREFIX[item_type] + body).digest()


def find_recipient(header: Header, name: str) -> RecipientEntry:
    for entry in header.recipients:
        if entry.name == name:
            return entry
    raise NotARecipientError(
        f"{name} is not among the recipients of message {header.message_id.hex()}"
    )


def encode_signed(item_type: int, body: bytes, seal: Seal) -> bytes:
    """Frame a signed item: ``pack([1, item_type, body, seal])``, written directly.

    Byte-identical to the generic encoder's output (a test holds it to that);
    writing the fixed framing by hand saves re-packing the body.
    """
    index, count, path, signature = seal
    return b"".join(
        (
            _FRAME_HEAD[item_type],
            _bin_header(len(body)),
            body,
            b"\x94",
            _uint(index),
            _uint(count),
            _bin_header(len(path)),
            path,
            b"\xc4\x40",
            signature,
        )
    )


_FRAME_HEAD = {
    TYPE_ENVELOPE: bytes([0x94, FORMAT_VERSION, TYPE_ENVELOPE]),
    TYPE_RECEIPT: bytes([0x94, FORMAT_VERSION, TYPE_RECEIPT]),
    TYPE_CATALOG: bytes([0x94, FORMAT_VERSION, TYPE_CATALOG]),
    TYPE_TREE_HEAD: bytes([0x94, FORMAT_VERSION, TYPE_TREE_HEAD]),
}


def _bin_header(length: int) -> bytes:
    if length < 0x100:
        return bytes((0xC4, length))
    if length < 0x10000:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


def _uint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    if value < 0x100:
        return bytes((0xCC, value))
    if value < 0x10000:
        return b"\xcd" + value.to_bytes(2, "big")
    return b"\xce" + value.to_bytes(4, "big")


def decode_signed(data: bytes, item_type: int, what: str, max_size: int) -> tuple[bytes, Seal]:
    """Split a signed item into its body and seal (SPEC §5.1).

    The size is checked first (``too-large``), then the format version, read
    before anything else is parsed: a format this code does not know may
    frame the rest differently, so it is ``unsupported-version`` whatever
    follows (SPEC §5.1, §13).  Canonical form (SPEC §4.2) is checked
    without copying the body: the bytes must be exactly the canonical
    prefix, the body, and the canonical encoding of the seal.
    """
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if type(data) is bytes and len(data) > max_size:
        raise TooLargeError(what, f"{len(data)} bytes exceeds the limit of {max_size}")
    first = array_head(data) if type(data) is bytes else None
    if first is not None and type(first[1]) is int and first[1] != FORMAT_VERSION:
        raise UnsupportedVersionError(f"{what} format {first[1]} is not supported (only 1)")
    outer = unpack(data, what=what, max_size=max_size, max_array=64)
    if type(outer) is not list or len(outer) != 4:
        raise MalformedError(what, "expected an array of 4 elements")
    version, kind, body, seal = outer
    if type(version) is not int:
        raise MalformedError(f"{what}.format", "must be an integer")
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(f"{what} format {version} is not supported (only 1)")
    if kind != item_type or type(kind) is not int:
        raise MalformedError(f"{what}.type", f"expected {item_type}, got {kind!r}")
    if type(body) is not bytes:
        raise MalformedError(f"{what}.body", "must be bytes")
    parsed = Seal.from_wire(seal, what)
    head = _FRAME_HEAD[item_type] + _bin_header(len(body))
    if not data.startswith(head) or data[len(head) + len(body) :] != pack(seal):
        raise MalformedError(what, "encoding is not canonical")
    return body, parsed


_VALID_NAMES: set[str] = set()  # names already validated; bounded below
_VALID_NAMES_LIMIT = 65536


def check_name(value: object, field: str) -> str:
    if type(value) is not str:
        raise MalformedError(field, "must be a string")
    if value not in _VALID_NAMES:
        try:
            NodeName.parse(value)
        except InvalidNameError as exc:
            raise MalformedError(field, str(exc)) from None
        if len(_VALID_NAMES) >= _VALID_NAMES_LIMIT:
            _VALID_NAMES.clear()
        _VALID_NAMES.add(value)
    return value


def check_bytes(value: object, field: str, length: int) -> bytes:
    if type(value) is not bytes or len(value) != length:
        raise MalformedError(field, f"must be {length} bytes")
    return value


def check_time(value: object, field: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_TIME_MS:
        raise MalformedError(field, "must be milliseconds since 1970 as a non-negative integer")
    return value


def check_suite(value: object, field: str) -> int:
    if type(value) is not int:
        raise MalformedError(field, "must be an integer")
    if value not in SUPPORTED_SUITES:
        raise UnsupportedSuiteError(f"{field} {value} is not supported")
    return value


def check_suite_first(body: bytes, field: str) -> tuple[int, object] | None:
    """Refuse a body whose suite (its first element) is unknown, before parsing the rest.

    SPEC §5.2: a future suite may lay out the body differently -- another
    number of fields, other limits -- so a body under a suite this code does
    not know is ``unsupported-suite`` whatever the rest looks like.  A body
    that does not start with an integer is left to the full decoder, which
    names what is wrong (``malformed``).  Returns the body's array head
    (:func:`~exchnode.core._encoding.array_head`).
    """
    head = array_head(body)
    if head is not None and type(head[1]) is int and head[1] not in SUPPORTED_SUITES:
        raise UnsupportedSuiteError(f"{field} {head[1]} is not supported")
    return head


def decode_envelope(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Parse and shape-check an envelope; raise a ``RejectedError`` naming the field.

    This runs for every envelope at every hop, so the checks are written
    inline; each failure still names its field (SPEC §5.2).  The suite is
    read before the rest of the body is parsed (:func:`check_suite_first`);
    more recipients than ``limits.max_recipients`` is ``too-large``, as is
    any array in the body longer than that bound (SPEC §4.3).
    """
    body, seal = decode_signed(data, TYPE_ENVELOPE, "envelope", limits.max_envelope_bytes)
    head = check_suite_first(body, "envelope.body.suite")
    if head is None or head[0] != _BODY_FIELDS:  # a shape, at any length: never too-large
        raise MalformedError("envelope.body", f"expected an array of {_BODY_FIELDS} elements")
    fields = unpack(
        body,
        what="envelope.body",
        max_size=len(body),
        max_array=max(_BODY_FIELDS, limits.max_recipients),
        long_array=TooLargeError,
    )
    if type(fields) is not list or len(fields) != _BODY_FIELDS:
        raise MalformedError("envelope.body", f"expected an array of {_BODY_FIELDS} elements")
    (
        suite,
        message_id,
        sender,
        sender_key_id,
        recipients,
        created,
        expires,
        kind,
        content_type,
        plaintext_size,
        nonce,
        ciphertext,
    ) = fields
    if suite != SUITE_X25519_AES256GCM_ED25519 or type(suite) is not int:
        check_suite(suite, "envelope.body.suite")
    if type(message_id) is not bytes or len(message_id) != MESSAGE_ID_LENGTH:
        check_bytes(message_id, "envelope.body.message_id", MESSAGE_ID_LENGTH)
    if type(sender) is not str or sender not in _VALID_NAMES:
        check_name(sender, "envelope.body.sender")
    if type(sender_key_id) is not bytes or len(sender_key_id) != KEY_ID_LENGTH:
        check_bytes(sender_key_id, "envelope.body.sender_key_id", KEY_ID_LENGTH)
    entries = _check_recipients(recipients, limits)
    check_time(created, "envelope.body.created")
    check_time(expires, "envelope.body.expires")
    if expires < created:
        raise MalformedError("envelope.body.expires", "is before created")
    if type(kind) is not str or not _KIND.match(kind):
        raise MalformedError("envelope.body.kind", "must be 1-32 of a-z 0-9 . - from a letter")
    if type(content_type) is not str or not _CONTENT_TYPE.match(content_type):
        raise MalformedError("envelope.body.content_type", "must be 1-127 printable ASCII")
    if type(nonce) is not bytes or len(nonce) != NONCE_LENGTH:
        check_bytes(nonce, "envelope.body.nonce", NONCE_LENGTH)
    if type(ciphertext) is not bytes or len(ciphertext) < TAG_LENGTH:
        raise MalformedError("envelope.body.ciphertext", f"must be at least {TAG_LENGTH} bytes")
    if type(plaintext_size) is not int or plaintext_size != len(ciphertext) - TAG_LENGTH:
        raise MalformedError(
            "envelope.body.plaintext_size", "must equal the ciphertext length minus 16"
        )
    require_canonical(fields, body, what="envelope.body")
    header = Header(
        suite,
        message_id,
        sender,
        sender_key_id,
        entries,
        created,
        expires,
        kind,
        content_type,
        plaintext_size,
        nonce,
    )
    return Envelope(header, ciphertext, seal, body, signed_leaf(TYPE_ENVELOPE, body))


def _check_recipients(value: object, limits: Limits) -> tuple[RecipientEntry, ...]:
    field = "envelope.body.recipients"
    if type(value) is list and len(value) > limits.max_recipients:
        raise TooLargeError(field, f"more than the limit of {limits.max_recipients} recipients")
    if type(value) is not list or not value:
        raise MalformedError(field, f"must be an array of 1..{limits.max_recipients} entries")
    entries = []
    previous = ""
    for i, item in enumerate(value):
        if type(item) is not list or len(item) != 3:
            raise MalformedError(f"{field}[{i}]", "expected [name, key_id, wrapped_key]")
        name, key_id, wrapped_key = item
        if type(name) is not str or name not in _VALID_NAMES:
            check_name(name, f"{field}[{i}].name")
        if name <= previous:
            raise MalformedError(f"{field}[{i}].name", "recipients must be sorted and unique")
        previous = name
        if type(key_id) is not bytes or len(key_id) != KEY_ID_LENGTH:
            check_bytes(key_id, f"{field}[{i}].key_id", KEY_ID_LENGTH)
        if type(wrapped_key) is not bytes or len(wrapped_key) != WRAPPED_KEY_LENGTH:
            check_bytes(wrapped_key, f"{field}[{i}].wrapped_key", WRAPPED_KEY_LENGTH)
        entries.append(RecipientEntry(name, key_id, wrapped_key))
    return tuple(entries)
