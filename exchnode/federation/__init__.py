"""How nodes federate: the routing table and its decisions along the hierarchy,
the link protocol's wire forms, the retry policy per peer, the signed,
expiring node directory, and the change feeds that let neighbours exchange only
what changed (pure).
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
from exchnode.federation._directory import LookupReport, NodeDirectory, PageReport
from exchnode.federation._directory_pages import (
    MAX_LOOKUP_NAMES,
    Audience,
    decode_lookup,
    encode_lookup,
)
from exchnode.federation._directory_verify import verify_snapshot
from exchnode.federation._feed import (
    FEED_ID_BYTES,
    ChangeFeed,
    FeedCursor,
    FeedPage,
    FeedPosition,
    check_feed_position,
)
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
from exchnode.federation._link_frames import (
    STREAM_STATUSES,
    StreamAnswer,
    parse_request_frame,
    parse_response_frame,
    request_frame,
    response_frame,
)
from exchnode.federation._routing import Neighbour, Relation, Route, Router

__all__ = [
    "DEFAULT_BACKOFF",
    "FEED_ID_BYTES",
    "MAX_LOOKUP_NAMES",
    "MAX_TRANSFER_BYTES",
    "STREAM_STATUSES",
    "Audience",
    "BackoffPolicy",
    "ChangeFeed",
    "Credit",
    "FeedCursor",
    "FeedPage",
    "FeedPosition",
    "Item",
    "ItemResult",
    "LookupReport",
    "Neighbour",
    "NodeDirectory",
    "PageReport",
    "PeerState",
    "Relation",
    "Route",
    "Router",
    "Status",
    "StreamAnswer",
    "TransferRequest",
    "TransferResponse",
    "came_back",
    "check_feed_position",
    "decode_lookup",
    "decode_request",
    "decode_response",
    "due",
    "encode_lookup",
    "encode_request",
    "encode_response",
    "failed",
    "parse_request_frame",
    "parse_response_frame",
    "request_frame",
    "response_frame",
    "succeeded",
    "verify_snapshot",
]
