"""exchnode: government data-sharing exchange between front-end nodes and hubs.

Two layers.  The *node* (:class:`Node`, with :class:`Peer`, :class:`Message`,
:class:`Delivery` and a store) is what a department embeds: durable,
mutually authenticated store-and-forward across the levels.  Under it, the
*protocol core* (:class:`Sealer`, :class:`Opener`, :class:`EnvelopeVerifier`,
receipts, PKI verification) is pure -- no sockets, no disk, no clock: time
and randomness are arguments -- and ``protocol/SPEC.md`` is the normative
description of what it does.
"""

from exchnode import errors
from exchnode.backoff import BackoffPolicy
from exchnode.delivery import Delivery, DeliveryStatus, Message, Sent
from exchnode.directory import Directory, StaticDirectory
from exchnode.envelope import Envelope, Header, Limits, RecipientEntry, decode_envelope
from exchnode.identity import LocalIdentity, PeerIdentity, key_id
from exchnode.keyfiles import load_local_identity
from exchnode.names import Level, NodeName
from exchnode.node import Node, NodeStats
from exchnode.node_config import NodeLimits, NodeTimers, Peer
from exchnode.pki_verify import TrustStore, verify_ca_certificate, verify_node_certificate
from exchnode.receipts import Receipt, ReceiptVerifier, issue_receipts
from exchnode.replay import FreshnessPolicy, ReplayWindow
from exchnode.reports import NonDeliveryReport
from exchnode.routing import Relation
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
from exchnode.store import Store
from exchnode.store_memory import MemoryStore
from exchnode.store_sqlite import SqliteStore
from exchnode.tls import TlsFiles

__all__ = [
    "BackoffPolicy",
    "Delivery",
    "DeliveryStatus",
    "Directory",
    "Envelope",
    "EnvelopeVerifier",
    "FreshnessPolicy",
    "Header",
    "Level",
    "Limits",
    "LocalIdentity",
    "MemoryStore",
    "Message",
    "Node",
    "NodeLimits",
    "NodeName",
    "NodeStats",
    "NodeTimers",
    "NonDeliveryReport",
    "OpenPolicy",
    "Opened",
    "Opener",
    "Outgoing",
    "Peer",
    "PeerIdentity",
    "Receipt",
    "ReceiptVerifier",
    "RecipientEntry",
    "Relation",
    "ReplayWindow",
    "SealPolicy",
    "SealedEnvelope",
    "Sealer",
    "Sent",
    "SqliteStore",
    "StaticDirectory",
    "Store",
    "TlsFiles",
    "TrustStore",
    "decode_envelope",
    "errors",
    "issue_receipts",
    "key_id",
    "load_local_identity",
    "verify_ca_certificate",
    "verify_node_certificate",
]
