"""exchnode: government data-sharing exchange between front-end nodes and hubs.

The public API of the protocol core.  Everything here is pure (no sockets,
no disk, no clock): time and randomness are arguments.  Start with
:class:`Sealer` and :class:`Opener`; ``protocol/SPEC.md`` is the normative
description of what they do.
"""

from exchnode import errors
from exchnode.directory import Directory, StaticDirectory
from exchnode.envelope import Envelope, Header, Limits, RecipientEntry, decode_envelope
from exchnode.identity import LocalIdentity, PeerIdentity, key_id
from exchnode.keyfiles import load_local_identity
from exchnode.names import Level, NodeName
from exchnode.pki_verify import TrustStore, verify_ca_certificate, verify_node_certificate
from exchnode.receipts import Receipt, ReceiptVerifier, issue_receipts
from exchnode.replay import FreshnessPolicy, ReplayWindow
from exchnode.sealing import (
    EnvelopeVerifier,
    Opened,
    Opener,
    OpenPolicy,
    Outgoing,
    SealedEnvelope,
    Sealer,
    SealPolicy,
)

__all__ = [
    "Directory",
    "Envelope",
    "EnvelopeVerifier",
    "FreshnessPolicy",
    "Header",
    "Level",
    "Limits",
    "LocalIdentity",
    "NodeName",
    "OpenPolicy",
    "Opened",
    "Opener",
    "Outgoing",
    "PeerIdentity",
    "Receipt",
    "ReceiptVerifier",
    "RecipientEntry",
    "ReplayWindow",
    "SealPolicy",
    "SealedEnvelope",
    "Sealer",
    "StaticDirectory",
    "TrustStore",
    "decode_envelope",
    "errors",
    "issue_receipts",
    "key_id",
    "load_local_identity",
    "verify_ca_certificate",
    "verify_node_certificate",
]
