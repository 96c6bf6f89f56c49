"""The tamper-evident audit log: what a record may say, the Merkle log with
signed tree heads, verification naming each kind of tampering, witnessing of
a child's heads, custody records and the oversight reports (pure).
"""

from __future__ import annotations

from exchnode.audit._custody import CustodyRecorder
from exchnode.audit._log import (
    MAX_PROOF,
    MAX_TREE_HEAD_BYTES,
    MAX_TREE_SIZE,
    AuditLogState,
    Checkpoint,
    LogMark,
    TreeHead,
    TreeHeadVerifier,
    decode_checkpoint,
    decode_tree_head,
    encode_checkpoint,
)
from exchnode.audit._oversight import (
    DEFAULT_ZOMBIE_AFTER_S,
    LogStatus,
    OversightBuilder,
    OversightReport,
    Resource,
)
from exchnode.audit._records import (
    MAX_RECORD_BYTES,
    NO_SUBJECT,
    RECORD_FORMAT,
    Actor,
    AuditEntry,
    AuditRecord,
    Category,
    DetailValue,
    Outcome,
    Role,
    Subject,
    SubjectKind,
    decode_record,
    details,
    entry_from_event,
)
from exchnode.audit._stored import (
    StoredLogView,
    derive_tree_rows,
    read_log_view,
    restore_state,
    store_nodes,
    stored_heads,
    stored_records,
    verify_stored,
)
from exchnode.audit._verify import (
    Finding,
    RecordSource,
    Tamper,
    VerificationReport,
    verify_log,
)
from exchnode.audit._witness import WitnessResult, check_witness, witness_entry

__all__ = [
    "DEFAULT_ZOMBIE_AFTER_S",
    "MAX_PROOF",
    "MAX_RECORD_BYTES",
    "MAX_TREE_HEAD_BYTES",
    "MAX_TREE_SIZE",
    "NO_SUBJECT",
    "RECORD_FORMAT",
    "Actor",
    "AuditEntry",
    "AuditLogState",
    "AuditRecord",
    "Category",
    "Checkpoint",
    "CustodyRecorder",
    "DetailValue",
    "Finding",
    "LogMark",
    "LogStatus",
    "Outcome",
    "OversightBuilder",
    "OversightReport",
    "RecordSource",
    "Resource",
    "Role",
    "StoredLogView",
    "Subject",
    "SubjectKind",
    "Tamper",
    "TreeHead",
    "TreeHeadVerifier",
    "VerificationReport",
    "WitnessResult",
    "check_witness",
    "decode_checkpoint",
    "decode_record",
    "decode_tree_head",
    "derive_tree_rows",
    "details",
    "encode_checkpoint",
    "entry_from_event",
    "read_log_view",
    "restore_state",
    "store_nodes",
    "stored_heads",
    "stored_records",
    "verify_log",
    "verify_stored",
    "witness_entry",
]
