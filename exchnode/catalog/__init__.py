"""The resource catalog (政务信息资源目录): entries and their rules, signed
catalog records, the catalog a node holds and the wire forms of its
anti-entropy (pure).
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
from exchnode.catalog._state import CatalogState, Outcome
from exchnode.catalog._sync import (
    Summary,
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
    "CatalogEntry",
    "CatalogRecord",
    "CatalogState",
    "CatalogVerifier",
    "DataItem",
    "DataType",
    "Openness",
    "Outcome",
    "Publication",
    "ResourceFormat",
    "ShareMethod",
    "ShareType",
    "Status",
    "Summary",
    "UpdateCycle",
    "Withdrawal",
    "check_code",
    "decode_providers",
    "decode_record",
    "decode_records",
    "decode_versions",
    "decode_wanted",
    "encode_providers",
    "encode_records",
    "encode_versions",
    "encode_wanted",
    "sign_records",
]
