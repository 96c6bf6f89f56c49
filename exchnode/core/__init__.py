"""The protocol core: names, identities, the canonical encoding, Merkle trees,
batch signatures, HPKE, envelopes, sealing and opening, freshness, receipts,
non-delivery reports and the node's own message framing (pure).

Nothing here opens a socket or a file, reads a clock or draws randomness on
its own: ``now`` and ``random`` are arguments.  ``protocol/SPEC.md`` is the
normative description of what it does, and its vectors are replayed against
it.  It imports only :mod:`exchnode.errors`, ``cryptography`` and
``msgpack``.
"""

from __future__ import annotations

from exchnode.core._batch import Seal, SealVerifier, sign_leaves
from exchnode.core._directory import Directory, StaticDirectory
from exchnode.core._encoding import framed_fields, pack, require_canonical, unpack
from exchnode.core._envelope import (
    SUITE_X25519_AES256GCM_ED25519,
    TYPE_CATALOG,
    TYPE_ENVELOPE,
    TYPE_RECEIPT,
    TYPE_TREE_HEAD,
    Envelope,
    Header,
    Limits,
    RecipientEntry,
    check_bytes,
    check_name,
    check_suite,
    check_time,
    decode_envelope,
    decode_signed,
    encode_signed,
    signed_leaf,
)
from exchnode.core._events import AuditEvent, EventSink
from exchnode.core._hpke import hpke_open, hpke_seal
from exchnode.core._identity import KEY_ID_LENGTH, LocalIdentity, PeerIdentity, key_id
from exchnode.core._merkle import (
    EMPTY_ROOT,
    HASH_LENGTH,
    MerkleLog,
    NodeReader,
    completed_count,
    leaf_hash,
    root_from_frontier,
    verify_consistency,
    verify_inclusion,
)
from exchnode.core._messages import (
    RECEIPT_CONTENT_TYPE,
    RECEIPT_KIND,
    RESERVED_KINDS,
    decode_app_message,
    decode_receipt_bundle,
    encode_app_message,
    encode_receipt_bundle,
)
from exchnode.core._names import (
    NATIONAL_DIVISION,
    Level,
    NodeName,
    division_level,
    division_scope,
    parent_division,
    parent_hub,
)
from exchnode.core._receipts import (
    Receipt,
    ReceiptVerifier,
    SentMessage,
    decode_receipt,
    issue_receipts,
)
from exchnode.core._replay import FreshnessPolicy, ReplayWindow
from exchnode.core._reports import NDR_KIND, NDR_TTL, NonDeliveryReport, decode_ndr, ndr_outgoing
from exchnode.core._sealing import (
    EnvelopeVerifier,
    Opened,
    Opener,
    OpenPolicy,
    Outgoing,
    SealedEnvelope,
    Sealer,
    SealPolicy,
    wrap_info,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_LENGTH",
    "KEY_ID_LENGTH",
    "NATIONAL_DIVISION",
    "NDR_KIND",
    "NDR_TTL",
    "RECEIPT_CONTENT_TYPE",
    "RECEIPT_KIND",
    "RESERVED_KINDS",
    "SUITE_X25519_AES256GCM_ED25519",
    "TYPE_CATALOG",
    "TYPE_ENVELOPE",
    "TYPE_RECEIPT",
    "TYPE_TREE_HEAD",
    "AuditEvent",
    "Directory",
    "Envelope",
    "EnvelopeVerifier",
    "EventSink",
    "FreshnessPolicy",
    "Header",
    "Level",
    "Limits",
    "LocalIdentity",
    "MerkleLog",
    "NodeName",
    "NodeReader",
    "NonDeliveryReport",
    "OpenPolicy",
    "Opened",
    "Opener",
    "Outgoing",
    "PeerIdentity",
    "Receipt",
    "ReceiptVerifier",
    "RecipientEntry",
    "ReplayWindow",
    "Seal",
    "SealPolicy",
    "SealVerifier",
    "SealedEnvelope",
    "Sealer",
    "SentMessage",
    "StaticDirectory",
    "check_bytes",
    "check_name",
    "check_suite",
    "check_time",
    "completed_count",
    "decode_app_message",
    "decode_envelope",
    "decode_ndr",
    "decode_receipt",
    "decode_receipt_bundle",
    "decode_signed",
    "division_level",
    "division_scope",
    "encode_app_message",
    "encode_receipt_bundle",
    "encode_signed",
    "framed_fields",
    "hpke_open",
    "hpke_seal",
    "issue_receipts",
    "key_id",
    "leaf_hash",
    "ndr_outgoing",
    "pack",
    "parent_division",
    "parent_hub",
    "require_canonical",
    "root_from_frontier",
    "sign_leaves",
    "signed_leaf",
    "unpack",
    "verify_consistency",
    "verify_inclusion",
    "wrap_info",
]
