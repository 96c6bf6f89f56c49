"""The SQLite store's file: its settings, its versioned schema, and opening it.  I/O edge.

Theory of operation
-------------------
Custody (``exchnode.store.Store`` explains the contract) rests on three
SQLite settings, made here on opening:

* ``journal_mode=WAL``: a commit appends the transaction's pages to the
  log and flushes that once; readers never block the writer.
* ``synchronous=FULL``: the log is flushed to stable storage at *every*
  commit, so a committed batch survives power loss, not just a crash of
  the process.  ``NORMAL`` would be faster and lose the last commits on
  power loss -- after their envelopes were acknowledged.  Custody forbids it.
* ``locking_mode=EXCLUSIVE``: the store's one connection holds the file's
  lock from opening to closing.  A second process (a second daemon started
  on the same store by mistake) fails at once with a clear error instead
  of interleaving with the first and sending everything twice, and the
  "database is locked" errors of shared SQLite queues cannot arise.  It
  also means no shared-memory index beside the log (no ``-shm`` file).

Opening takes the lock with ``BEGIN IMMEDIATE`` and, in that transaction,
checks the schema, creates it or migrates it; the store (``_sqlite``) then
loads its counters and runs every change in a transaction of its own.

Schema (version 6; ``store_info.schema_version``, ``PRAGMA application_id``
'EXND').  A new file is created at version 1 and brought up by the same
``MIGRATIONS`` steps an old file takes, inside the opening transaction, so
there is one path to the current schema; version 2 added the audit log,
version 3 lets heads below the checkpoint be pruned, version 4 (issue 12)
adds the seal and closes ``INSERT OR REPLACE``, version 5 the send keys,
version 6 (issue 13) the audit tree's interior nodes (``audit_nodes``).
Envelope bytes are BLOBs, stored last in their row so that scans
on the other columns skip them; a copy per next hop (the same bytes for
each: simple, and the fan-out is small).  Indexes: outbound by (next_hop,
seq) for the FIFO scan, and by expiry for ``take_expired``; dedup by its
key and by expiry for ``prune``.  Expiry times mostly grow, so the expiry
indexes are appended to at their right edge.

The audit log (version 2): ``audit_records`` keyed by seq (an INTEGER
PRIMARY KEY is the rowid itself: appends go to the right edge of one
b-tree, and a plain INSERT of a seq already stored fails), ``audit_heads``
in the order stored, and one ``audit_checkpoint`` row; since version 4 one
``audit_seal`` row (the node's signed head over the whole log, replaced in
every transaction that appends records, SPEC §20.6) and ``store_info``'s
``audit_ordered_from`` (the log's size at that migration: record times are
checked from there on).  Triggers make the tables append-only below the
store's own checks: no UPDATE of a record or head, no DELETE of a record at
or above the checkpoint's size nor of a head of that size or more, no
checkpoint or seal moving back, and (version 4) no INSERT over a stored
row -- ``INSERT OR REPLACE`` deletes the row it replaces without firing a
DELETE trigger -- nor a record anywhere but after the last, nor a head
smaller than the last; (version 6) ``audit_nodes``, one row of subtree
hashes per odd seq (``_audit_tree``), under the same rules as the records.
(They stop a bug, not an owner with the sqlite3
shell: that is what signed heads, the seal and witnesses are for.)

``open_read_only`` is for auditors (``audit verify --offline``): the file
opened ``mode=ro``, never created, migrated or written; an empty file or
one that is not a store is refused, naming it.

Opening a file that is not a store, a corrupt one, or one with a newer
schema raises :class:`StoreError` naming the file; a newer schema is never
touched.  Needs SQLite ≥ 3.8.3 (WITHOUT ROWID, WAL); Python's own is newer.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from exchnode.errors import StoreError
from exchnode.store._checks import check_schema_version

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "SCHEMA_V1",
    "SCHEMA_VERSION",
    "connect",
    "open_read_only",
    "prepare",
    "store_error",
]

SCHEMA_VERSION = 6
APPLICATION_ID = 0x45584E44  # "EXND", so that `file` and a wrong open can tell

# The columns of a queued entry, alike in both queues (the outbound queue adds its next hop).
_ENTRY_COLUMNS = """\
        sender TEXT NOT NULL,
        message_id BLOB NOT NULL,
        digest BLOB NOT NULL,
        targets TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        size INTEGER NOT NULL,
        data BLOB NOT NULL"""

SCHEMA_V1 = (
    """CREATE TABLE store_info (key TEXT PRIMARY KEY, value) WITHOUT ROWID""",
    """CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE peers (
        name TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        last_ok_ms INTEGER
    ) WITHOUT ROWID""",
    # targets: the names taken in custody so far, sorted, space-separated.
    """CREATE TABLE dedup (
        sender TEXT NOT NULL,
        message_id BLOB NOT NULL,
        digest BLOB NOT NULL,
        expires_ms INTEGER NOT NULL,
        targets TEXT NOT NULL,
        PRIMARY KEY (sender, message_id)
    ) WITHOUT ROWID""",
    """CREATE INDEX dedup_by_expiry ON dedup (expires_ms)""",
    f"""CREATE TABLE outbound (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        next_hop TEXT NOT NULL,
{_ENTRY_COLUMNS}
    )""",
    """CREATE INDEX outbound_by_hop ON outbound (next_hop, seq)""",
    """CREATE INDEX outbound_by_expiry ON outbound (expires_ms)""",
    f"""CREATE TABLE inbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
{_ENTRY_COLUMNS}
    )""",
    """CREATE INDEX inbox_by_expiry ON inbox (expires_ms)""",
)

# Version 2: the audit log (SPEC §20.6, §20.9), append-only.
_AUDIT_V2 = (
    """CREATE TABLE audit_records (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)""",
    """CREATE TABLE audit_heads (
        position INTEGER PRIMARY KEY,
        tree_size INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",
    """CREATE TABLE audit_checkpoint (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",
    """CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
    """CREATE TRIGGER audit_records_prune_below_checkpoint BEFORE DELETE ON audit_records
        WHEN old.seq >= coalesce((SELECT size FROM audit_checkpoint), 0)
        BEGIN SELECT RAISE(ABORT, 'audit records are deleted only below the checkpoint'); END""",
    """CREATE TRIGGER audit_heads_no_update BEFORE UPDATE ON audit_heads
        BEGIN SELECT RAISE(ABORT, 'tree heads are append-only'); END""",
    """CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
        BEGIN SELECT RAISE(ABORT, 'tree heads are append-only'); END""",
    """CREATE TRIGGER audit_checkpoint_forward BEFORE UPDATE ON audit_checkpoint
        WHEN new.size < old.size
        BEGIN SELECT RAISE(ABORT, 'the audit checkpoint only moves forward'); END""",
    """CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
        BEGIN SELECT RAISE(ABORT, 'the audit checkpoint is replaced, never deleted'); END""",
)

# Version 3: heads below the checkpoint may go too (a node signs one every few seconds for
# months; the checkpoint's own head is kept in the checkpoint).
_HEADS_V3 = (
    "DROP TRIGGER audit_heads_no_delete",
    """CREATE TRIGGER audit_heads_prune_below_checkpoint BEFORE DELETE ON audit_heads
        WHEN old.tree_size >= coalesce((SELECT size FROM audit_checkpoint), 0)
        BEGIN SELECT RAISE(ABORT, 'tree heads are deleted only below the checkpoint'); END""",
)

# Version 4 (issue 12): no SQL write path changes a stored record, head, checkpoint or seal.
# ``INSERT OR REPLACE`` deletes the row it replaces without firing DELETE triggers (unless
# recursive_triggers is on), so every table of the log also refuses an INSERT at a key it
# holds; records are appended at the right edge only and heads after the last one, never
# smaller.  The seal (SPEC §20.6): one row, the node's signed head over the whole log, written
# in every transaction that appends records or moves the checkpoint; it only grows.  And the
# audit size at this migration, below which record times are not checked (older nodes did
# not keep them in order): a ``store_info`` row that cannot be changed.
_SEAL_V4 = (
    """CREATE TRIGGER audit_records_append_only BEFORE INSERT ON audit_records
        WHEN new.seq IS NOT coalesce(
            (SELECT max(seq) FROM audit_records) + 1, (SELECT size FROM audit_checkpoint), 0)
        BEGIN SELECT RAISE(ABORT, 'audit records are appended after the last one only'); END""",
    """CREATE TRIGGER audit_heads_no_replace BEFORE INSERT ON audit_heads
        WHEN EXISTS (SELECT 1 FROM audit_heads WHERE position = new.position)
        BEGIN SELECT RAISE(ABORT, 'tree heads are append-only'); END""",
    """CREATE TRIGGER audit_heads_append_only AFTER INSERT ON audit_heads
        WHEN new.position < (SELECT max(position) FROM audit_heads)
          OR new.tree_size < coalesce((SELECT tree_size FROM audit_heads
                WHERE position < new.position ORDER BY position DESC LIMIT 1), 0)
        BEGIN SELECT RAISE(ABORT, 'tree heads are appended after the last one only'); END""",
    """CREATE TRIGGER audit_checkpoint_no_replace BEFORE INSERT ON audit_checkpoint
        WHEN EXISTS (SELECT 1 FROM audit_checkpoint)
        BEGIN SELECT RAISE(ABORT, 'the audit checkpoint only moves forward'); END""",
    """CREATE TABLE audit_seal (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        tree_size INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",
    """CREATE TRIGGER audit_seal_no_replace BEFORE INSERT ON audit_seal
        WHEN EXISTS (SELECT 1 FROM audit_seal)
        BEGIN SELECT RAISE(ABORT, 'the audit seal only moves forward'); END""",
    """CREATE TRIGGER audit_seal_forward BEFORE UPDATE ON audit_seal
        WHEN new.tree_size < old.tree_size OR new.id IS NOT old.id
        BEGIN SELECT RAISE(ABORT, 'the audit seal only moves forward'); END""",
    """CREATE TRIGGER audit_seal_no_delete BEFORE DELETE ON audit_seal
        BEGIN SELECT RAISE(ABORT, 'the audit seal is replaced, never deleted'); END""",
    """INSERT INTO store_info (key, value) SELECT 'audit_ordered_from',
        coalesce((SELECT max(seq) FROM audit_records) + 1,
                 (SELECT size FROM audit_checkpoint), 0)""",
    """CREATE TRIGGER store_info_ordered_from_fixed BEFORE UPDATE ON store_info
        WHEN old.key = 'audit_ordered_from' OR new.key = 'audit_ordered_from'
        BEGIN SELECT RAISE(ABORT, 'audit_ordered_from is fixed'); END""",
    """CREATE TRIGGER store_info_ordered_from_no_delete BEFORE DELETE ON store_info
        WHEN old.key = 'audit_ordered_from'
        BEGIN SELECT RAISE(ABORT, 'audit_ordered_from is fixed'); END""",
    """CREATE TRIGGER store_info_ordered_from_no_replace BEFORE INSERT ON store_info
        WHEN new.key = 'audit_ordered_from'
          AND EXISTS (SELECT 1 FROM store_info WHERE key = 'audit_ordered_from')
        BEGIN SELECT RAISE(ABORT, 'audit_ordered_from is fixed'); END""",
)

# v5: a client's idempotency key on a send (hashed) -> the first message, until it expires.
_SEND_KEYS_V5 = (
    """CREATE TABLE send_keys (
        key BLOB PRIMARY KEY,
        request BLOB NOT NULL,
        message_id BLOB NOT NULL,
        digest BLOB NOT NULL,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE INDEX send_keys_by_expiry ON send_keys (expires_ms)""",
)

# v6 (issue 13): the audit tree's interior nodes (``_audit_tree``), so that the log keeps only
# its frontier in memory.  One row per odd seq, written in the transaction of its record, as
# append-only as the records: no UPDATE, appended after the last row only and over stored
# records only (a plain INSERT at a stored seq fails on the key, INSERT OR REPLACE on the
# append rule), deleted only below the checkpoint.  Rows of records stored before are derived
# by the audit log on its first start (``AuditStore.add_audit_nodes``), not here: the store
# computes no hash.
_NODES_V6 = (
    """CREATE TABLE audit_nodes (seq INTEGER PRIMARY KEY, hashes BLOB NOT NULL)""",
    """CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE ON audit_nodes
        BEGIN SELECT RAISE(ABORT, 'audit tree nodes are append-only'); END""",
    """CREATE TRIGGER audit_nodes_append_only BEFORE INSERT ON audit_nodes
        WHEN new.seq <= coalesce((SELECT max(seq) FROM audit_nodes), -1)
          OR new.seq > coalesce((SELECT max(seq) FROM audit_records), -1)
          OR new.seq % 2 != 1
          OR length(new.hashes) = 0 OR length(new.hashes) % 32 != 0
        BEGIN SELECT RAISE(ABORT, 'audit tree nodes are appended in order, over records only');
        END""",
    """CREATE TRIGGER audit_nodes_prune_below_checkpoint BEFORE DELETE ON audit_nodes
        WHEN old.seq >= coalesce((SELECT size FROM audit_checkpoint), 0)
        BEGIN SELECT RAISE(ABORT, 'audit tree nodes are deleted only below the checkpoint');
        END""",
)

# Steps from version n to n + 1, applied in order inside the opening transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: _AUDIT_V2,
    2: _HEADS_V3,
    3: _SEAL_V4,
    4: _SEND_KEYS_V5,
    5: _NODES_V6,
}


def store_error(path: Path, what: str, exc: sqlite3.Error) -> StoreError:
    """SQLite's error as a :class:`StoreError` naming the file and saying what failed."""
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        detail = "in use by another process (database is locked)"
    elif name == "SQLITE_NOTADB":
        detail = "not an SQLite database"
    elif name.startswith("SQLITE_CORRUPT"):
        detail = f"the database is corrupt ({exc})"
    elif name == "SQLITE_FULL":
        detail = "the disk is full"
    else:
        detail = str(exc)
    return StoreError(f"store {path}: {what}: {detail}")


def connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection to the store file, created owner-only if missing; nothing read yet."""
    try:
        # Create it owner-only; SQLite gives its log file the same mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        return sqlite3.connect(
            path,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # our lock serialises use instead
            cached_statements=64,
        )
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc.strerror}") from exc
    except sqlite3.Error as exc:
        raise store_error(path, "cannot open", exc) from exc


def open_read_only(path: Path, busy_timeout_ms: int) -> tuple[sqlite3.Connection, list[Path]]:
    """The store file opened read-only, checked: never created, migrated or written.

    Returns the connection and the side files SQLite created to read a
    write-ahead-logged file (``-wal``, ``-shm``), for the caller to remove
    after closing.  Raises :class:`StoreError` for a missing or empty file,
    one that is not an exchnode store, or one whose schema has no audit log
    (version 1) or is newer than this exchnode's.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc.strerror}") from exc
    if not path.is_file():
        raise StoreError(f"cannot open store {path}: not a file")
    if size == 0:
        raise StoreError(f"store {path} is empty: not an exchnode store (nothing was written)")
    sides = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm")]
    created = [side for side in sides if not side.exists()]
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise store_error(path, "cannot open read-only", exc) from exc
    try:
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        if app_id != APPLICATION_ID or "store_info" not in tables:
            raise StoreError(f"{path} is not an exchnode store")
        row = conn.execute("SELECT value FROM store_info WHERE key = 'schema_version'").fetchone()
        version = check_schema_version(row and row[0], str(path), SCHEMA_VERSION, "read")
        if version < 2 or "audit_records" not in tables:
            raise StoreError(
                f"store {path} has schema version {version}, from before the audit log: "
                "it holds no audit records"
            )
    except sqlite3.Error as exc:
        conn.close()
        raise store_error(path, "cannot read", exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn, created


def prepare(conn: sqlite3.Connection, path: Path, busy_timeout_ms: int) -> None:
    """Set the file's settings, take its lock, and bring its schema to ``SCHEMA_VERSION``.

    Raises :class:`StoreError` for a file that is not a store, a damaged one,
    or one with a newer schema (which is not changed).
    """
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise StoreError(f"store {path}: cannot use write-ahead logging ({mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA journal_size_limit = 67108864")  # trim the log after big batches
        conn.execute("PRAGMA cache_size = -16384")  # 16 MiB: the dedup lookups' pages
        conn.execute("BEGIN IMMEDIATE")  # takes, and keeps, the exclusive lock
        try:
            _check_schema(conn, path)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise store_error(path, "cannot open", exc) from exc


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    if not tables and app_id == 0:
        # A new store: version 1, then the migrations below, as an old file takes them.
        for statement in SCHEMA_V1:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("INSERT INTO store_info (key, value) VALUES ('schema_version', 1)")
        tables = {"store_info"}
        app_id = APPLICATION_ID
    if app_id != APPLICATION_ID or "store_info" not in tables:
        raise StoreError(f"{path} is an SQLite database but not an exchnode store")
    row = conn.execute("SELECT value FROM store_info WHERE key = 'schema_version'").fetchone()
    version = check_schema_version(row and row[0], str(path), SCHEMA_VERSION)
    while version < SCHEMA_VERSION:
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
        version += 1
        conn.execute("UPDATE store_info SET value = ? WHERE key = 'schema_version'", (version,))
