"""The resource catalog (政务信息资源目录): entries and their rules, signed
catalog records, the catalog a node holds at its level (its subtree's records
and a cache of what it asked for, stored as rows), the wire forms of format 2
(feed pages, lookups up the tree) and of format 1's anti-entropy (pure).
"""

from __future__ import annotations

from exchnode.catalog._entry import (
    CatalogEntry,
    CatalogRecord,
    CatalogVerifier,
    DataItem,
    DataType,
    Openness,
    Publication,
    ResourceFormat,
    ShareMethod,
    ShareType,
    Status,
    UpdateCycle,
    Withdrawal,
    check_code,
    decode_record,
    sign_records,
)
from exchnode.catalog._merge import FeedPuller, Merged, merge_verified
from exchnode.catalog._pages import (
    MAX_LOOKUP_KEYS,
    MAX_PAGE_RECORDS,
    MAX_SEARCH_LIMIT,
    PAGES_FORMAT,
    CatalogQuery,
    FeedRequest,
    LookupAnswer,
    LookupRequest,
    RecordPage,
    fit_records,
)
from exchnode.catalog._rows import ROWS_PREFIX, decode_position, encode_position, position_key
from exchnode.catalog._state import CatalogState, Outcome, Plan, merge_results
from exchnode.catalog._sync import (
    Summary,
    Wanted,
    decode_providers,
    decode_records,
    decode_versions,
    decode_wanted,
    encode_providers,
    encode_records,
    encode_versions,
    encode_wanted,
)

__all__ = [
    "MAX_LOOKUP_KEYS",
    "MAX_PAGE_RECORDS",
    "MAX_SEARCH_LIMIT",
    "PAGES_FORMAT",
    "ROWS_PREFIX",
    "CatalogEntry",
    "CatalogQuery",
    "CatalogRecord",
    "CatalogState",
    "CatalogVerifier",
    "DataItem",
    "DataType",
    "FeedPuller",
    "FeedRequest",
    "LookupAnswer",
    "LookupRequest",
    "Merged",
    "Openness",
    "Outcome",
    "Plan",
    "Publication",
    "RecordPage",
    "ResourceFormat",
    "ShareMethod",
    "ShareType",
    "Status",
    "Summary",
    "UpdateCycle",
    "Wanted",
    "Withdrawal",
    "check_code",
    "decode_position",
    "decode_providers",
    "decode_record",
    "decode_records",
    "decode_versions",
    "decode_wanted",
    "encode_position",
    "encode_providers",
    "encode_records",
    "encode_versions",
    "encode_wanted",
    "fit_records",
    "merge_results",
    "merge_verified",
    "position_key",
    "sign_records",
]
