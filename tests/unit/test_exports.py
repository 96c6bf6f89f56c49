"""The public API is exactly what __all__ says (as trio's test_exports does)."""

from __future__ import annotations

import exchnode

EXPECTED = {
    "CatalogEntry",
    "CatalogRecord",
    "DataItem",
    "DataType",
    "Openness",
    "ResourceFormat",
    "ShareMethod",
    "ShareType",
    "UpdateCycle",
    "CatalogService",
    "CatalogState",
    "AuditEvent",
    "EventSink",
    "Hash",
    "Keep",
    "MaskSet",
    "Redact",
    "YearOnly",
    "NodeService",
    "ServiceMessage",
    "SharingService",
    "RequestState",
    "WorkCalendar",
    "BackoffPolicy",
    "Delivery",
    "DeliveryStatus",
    "Message",
    "Sent",
    "Node",
    "NodeConfig",
    "NodeStats",
    "NodeLimits",
    "NodeTimers",
    "Peer",
    "NonDeliveryReport",
    "Relation",
    "Store",
    "MemoryStore",
    "SqliteStore",
    "TlsFiles",
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
}


def test_public_api_is_pinned() -> None:
    assert set(exchnode.__all__) == EXPECTED


def test_everything_exported_exists() -> None:
    for name in exchnode.__all__:
        assert getattr(exchnode, name) is not None


def test_every_error_class_has_a_distinct_code() -> None:
    classes = [
        obj
        for obj in vars(exchnode.errors).values()
        if isinstance(obj, type) and issubclass(obj, exchnode.errors.ExchnodeError)
    ]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
