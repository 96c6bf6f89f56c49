"""exchnode: government data-sharing exchange between front-end nodes and hubs.

Two layers.  The *node* (:class:`Node`, with :class:`Peer`, :class:`Message`,
:class:`Delivery` and a store) is what a department embeds: durable,
mutually authenticated store-and-forward across the levels.  Under it, the
*protocol core* (:class:`Sealer`, :class:`Opener`, :class:`EnvelopeVerifier`,
receipts, PKI verification) is pure -- no sockets, no disk, no clock: time
and randomness are arguments -- and ``protocol/SPEC.md`` is the normative
description of what it does.

On top of the node, as services attached to it: the resource catalog
(:class:`CatalogService`, entries :class:`CatalogEntry`) and subscriptions
under the sharing rules (:class:`SharingService`, masks :class:`MaskSet`).
"""

from exchnode import errors
from exchnode.backoff import BackoffPolicy
from exchnode.catalog import (
    CatalogEntry,
    CatalogRecord,
    DataItem,
    DataType,
    Openness,
    ResourceFormat,
    ShareMethod,
    ShareType,
    UpdateCycle,
)
from exchnode.catalog_service import CatalogService
from exchnode.catalog_state import CatalogState
from exchnode.delivery import Delivery, DeliveryStatus, Message, Sent
from exchnode.directory import Directory, StaticDirectory
from exchnode.envelope import Envelope, Header, Limits, RecipientEntry, decode_envelope
from exchnode.events import AuditEvent, EventSink
from exchnode.identity import LocalIdentity, PeerIdentity, key_id
from exchnode.keyfiles import load_local_identity
from exchnode.masking import Hash, Keep, MaskSet, Redact, YearOnly
from exchnode.names import Level, NodeName
from exchnode.node import Node, NodeStats
from exchnode.node_config import NodeLimits, NodeTimers, Peer
from exchnode.node_service import NodeService, ServiceMessage
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
from exchnode.sharing import SharingService
from exchnode.store import Store
from exchnode.store_memory import MemoryStore
from exchnode.store_sqlite import SqliteStore
from exchnode.subscriptions import RequestState
from exchnode.tls import TlsFiles
from exchnode.workdays import WorkCalendar

__all__ = [
    "AuditEvent",
    "BackoffPolicy",
    "CatalogEntry",
    "CatalogRecord",
    "CatalogService",
    "CatalogState",
    "DataItem",
    "DataType",
    "Delivery",
    "DeliveryStatus",
    "Directory",
    "Envelope",
    "EnvelopeVerifier",
    "EventSink",
    "FreshnessPolicy",
    "Hash",
    "Header",
    "Keep",
    "Level",
    "Limits",
    "LocalIdentity",
    "MaskSet",
    "MemoryStore",
    "Message",
    "Node",
    "NodeLimits",
    "NodeName",
    "NodeService",
    "NodeStats",
    "NodeTimers",
    "NonDeliveryReport",
    "OpenPolicy",
    "Opened",
    "Opener",
    "Openness",
    "Outgoing",
    "Peer",
    "PeerIdentity",
    "Receipt",
    "ReceiptVerifier",
    "RecipientEntry",
    "Redact",
    "Relation",
    "ReplayWindow",
    "RequestState",
    "ResourceFormat",
    "SealPolicy",
    "SealedEnvelope",
    "Sealer",
    "Sent",
    "ServiceMessage",
    "ShareMethod",
    "ShareType",
    "SharingService",
    "SqliteStore",
    "StaticDirectory",
    "Store",
    "TlsFiles",
    "TrustStore",
    "UpdateCycle",
    "WorkCalendar",
    "YearOnly",
    "decode_envelope",
    "errors",
    "issue_receipts",
    "key_id",
    "load_local_identity",
    "verify_ca_certificate",
    "verify_node_certificate",
]
