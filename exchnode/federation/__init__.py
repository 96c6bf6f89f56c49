"""How nodes federate: the routing table and its decisions along the hierarchy,
the link protocol's wire forms, the retry policy per peer and the signed,
expiring node directory (pure).
"""

from __future__ import annotations

from exchnode.federation._backoff import (
    DEFAULT_BACKOFF,
    BackoffPolicy,
    PeerState,
    came_back,
    due,
    failed,
    succeeded,
)
from exchnode.federation._directory import NodeDirectory
from exchnode.federation._directory_verify import verify_snapshot
from exchnode.federation._link import (
    MAX_TRANSFER_BYTES,
    Credit,
    Item,
    ItemResult,
    Status,
    TransferRequest,
    TransferResponse,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from exchnode.federation._routing import Neighbour, Relation, Route, Router

__all__ = [
    "DEFAULT_BACKOFF",
    "MAX_TRANSFER_BYTES",
    "BackoffPolicy",
    "Credit",
    "Item",
    "ItemResult",
    "Neighbour",
    "NodeDirectory",
    "PeerState",
    "Relation",
    "Route",
    "Router",
    "Status",
    "TransferRequest",
    "TransferResponse",
    "came_back",
    "decode_request",
    "decode_response",
    "due",
    "encode_request",
    "encode_response",
    "failed",
    "succeeded",
    "verify_snapshot",
]
