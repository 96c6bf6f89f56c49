"""The asyncio edge: the :class:`Node` (custody, routing, forwarding, delivery),
its links over mutual TLS, and the services that attach to it (directory,
catalog, sharing, audit, witnessing).
"""

from __future__ import annotations

from exchnode.aio._admission import ADMISSION_POLICIES, Admission
from exchnode.aio._audit_service import AuditService
from exchnode.aio._catalog_service import STATE_KEY, CatalogService, Found, read_catalog_rows
from exchnode.aio._config import NodeConfig, NodeLimits, NodeTimers, Peer, WorkerShare
from exchnode.aio._delivery import Delivery, DeliveryStatus, Message, Sent
from exchnode.aio._directory_service import DirectoryService
from exchnode.aio._log_sink import LogSink
from exchnode.aio._loop import LOOP_CHOICES, chosen_loop, loop_factory, loop_name, run
from exchnode.aio._node import PEER_SOURCES, Node, NodeStats
from exchnode.aio._observations import CUSTODY_BUCKETS, HistogramSnapshot, LinkMetrics, NodeMetrics
from exchnode.aio._own_keys import OWN_CERTIFICATES, earlier_identities
from exchnode.aio._refusals import Refusal
from exchnode.aio._service import NodeService, ServiceMessage
from exchnode.aio._sharing_service import RECORDS_KIND, SharingService
from exchnode.aio._tls import TlsFiles, make_context, write_verify_bundle
from exchnode.aio._transport import STREAM_PATH, TRANSFER_PATH, LinkClient, LinkError, Network
from exchnode.aio._witness_service import WitnessService, WitnessStatus

__all__ = [
    "ADMISSION_POLICIES",
    "CUSTODY_BUCKETS",
    "LOOP_CHOICES",
    "OWN_CERTIFICATES",
    "PEER_SOURCES",
    "RECORDS_KIND",
    "STATE_KEY",
    "STREAM_PATH",
    "TRANSFER_PATH",
    "Admission",
    "AuditService",
    "CatalogService",
    "Delivery",
    "DeliveryStatus",
    "DirectoryService",
    "Found",
    "HistogramSnapshot",
    "LinkClient",
    "LinkError",
    "LinkMetrics",
    "LogSink",
    "Message",
    "Network",
    "Node",
    "NodeConfig",
    "NodeLimits",
    "NodeMetrics",
    "NodeService",
    "NodeStats",
    "NodeTimers",
    "Peer",
    "Refusal",
    "Sent",
    "ServiceMessage",
    "SharingService",
    "TlsFiles",
    "WitnessService",
    "WitnessStatus",
    "WorkerShare",
    "chosen_loop",
    "earlier_identities",
    "loop_factory",
    "loop_name",
    "make_context",
    "read_catalog_rows",
    "run",
    "write_verify_bundle",
]
