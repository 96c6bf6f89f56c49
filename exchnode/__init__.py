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

The packages, bottom to top (ARCHITECTURE.md says what each holds and what
each may import): :mod:`exchnode.core`, :mod:`exchnode.pki`,
:mod:`exchnode.federation`, :mod:`exchnode.catalog`, :mod:`exchnode.sharing`,
:mod:`exchnode.audit`, :mod:`exchnode.store`, :mod:`exchnode.aio`.  The names
below are a convenience: they are imported from their package on first use,
so ``import exchnode`` costs nothing and ``import exchnode.core`` loads no
network, database or logging library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from exchnode import errors

if TYPE_CHECKING:
    from exchnode.aio import (
        CatalogService,
        Delivery,
        DeliveryStatus,
        Message,
        Node,
        NodeConfig,
        NodeLimits,
        NodeService,
        NodeStats,
        NodeTimers,
        Peer,
        Sent,
        ServiceMessage,
        SharingService,
        TlsFiles,
    )
    from exchnode.catalog import (
        CatalogEntry,
        CatalogRecord,
        CatalogState,
        DataItem,
        DataType,
        Openness,
        ResourceFormat,
        ShareMethod,
        ShareType,
        UpdateCycle,
    )
    from exchnode.core import (
        AuditEvent,
        Directory,
        Envelope,
        EnvelopeVerifier,
        EventSink,
        FreshnessPolicy,
        Header,
        Level,
        Limits,
        LocalIdentity,
        NodeName,
        NonDeliveryReport,
        Opened,
        Opener,
        OpenPolicy,
        Outgoing,
        PeerIdentity,
        Receipt,
        ReceiptVerifier,
        RecipientEntry,
        ReplayWindow,
        SealedEnvelope,
        Sealer,
        SealPolicy,
        StaticDirectory,
        decode_envelope,
        issue_receipts,
        key_id,
    )
    from exchnode.federation import BackoffPolicy, Relation
    from exchnode.pki import (
        TrustStore,
        load_local_identity,
        verify_ca_certificate,
        verify_node_certificate,
    )
    from exchnode.sharing import Hash, Keep, MaskSet, Redact, RequestState, WorkCalendar, YearOnly
    from exchnode.store import MemoryStore, SqliteStore, Store

#: each public name -> the package that holds it
_HOME: dict[str, str] = {
    "AuditEvent": "exchnode.core",
    "BackoffPolicy": "exchnode.federation",
    "CatalogEntry": "exchnode.catalog",
    "CatalogRecord": "exchnode.catalog",
    "CatalogService": "exchnode.aio",
    "CatalogState": "exchnode.catalog",
    "DataItem": "exchnode.catalog",
    "DataType": "exchnode.catalog",
    "Delivery": "exchnode.aio",
    "DeliveryStatus": "exchnode.aio",
    "Directory": "exchnode.core",
    "Envelope": "exchnode.core",
    "EnvelopeVerifier": "exchnode.core",
    "EventSink": "exchnode.core",
    "FreshnessPolicy": "exchnode.core",
    "Hash": "exchnode.sharing",
    "Header": "exchnode.core",
    "Keep": "exchnode.sharing",
    "Level": "exchnode.core",
    "Limits": "exchnode.core",
    "LocalIdentity": "exchnode.core",
    "MaskSet": "exchnode.sharing",
    "MemoryStore": "exchnode.store",
    "Message": "exchnode.aio",
    "Node": "exchnode.aio",
    "NodeConfig": "exchnode.aio",
    "NodeLimits": "exchnode.aio",
    "NodeName": "exchnode.core",
    "NodeService": "exchnode.aio",
    "NodeStats": "exchnode.aio",
    "NodeTimers": "exchnode.aio",
    "NonDeliveryReport": "exchnode.core",
    "OpenPolicy": "exchnode.core",
    "Opened": "exchnode.core",
    "Opener": "exchnode.core",
    "Openness": "exchnode.catalog",
    "Outgoing": "exchnode.core",
    "Peer": "exchnode.aio",
    "PeerIdentity": "exchnode.core",
    "Receipt": "exchnode.core",
    "ReceiptVerifier": "exchnode.core",
    "RecipientEntry": "exchnode.core",
    "Redact": "exchnode.sharing",
    "Relation": "exchnode.federation",
    "ReplayWindow": "exchnode.core",
    "RequestState": "exchnode.sharing",
    "ResourceFormat": "exchnode.catalog",
    "SealPolicy": "exchnode.core",
    "SealedEnvelope": "exchnode.core",
    "Sealer": "exchnode.core",
    "Sent": "exchnode.aio",
    "ServiceMessage": "exchnode.aio",
    "ShareMethod": "exchnode.catalog",
    "ShareType": "exchnode.catalog",
    "SharingService": "exchnode.aio",
    "SqliteStore": "exchnode.store",
    "StaticDirectory": "exchnode.core",
    "Store": "exchnode.store",
    "TlsFiles": "exchnode.aio",
    "TrustStore": "exchnode.pki",
    "UpdateCycle": "exchnode.catalog",
    "WorkCalendar": "exchnode.sharing",
    "YearOnly": "exchnode.sharing",
    "decode_envelope": "exchnode.core",
    "issue_receipts": "exchnode.core",
    "key_id": "exchnode.core",
    "load_local_identity": "exchnode.pki",
    "verify_ca_certificate": "exchnode.pki",
    "verify_node_certificate": "exchnode.pki",
}

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
    "NodeConfig",
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


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
