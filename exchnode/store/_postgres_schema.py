"""The PostgreSQL store's schema: its tables, triggers and versions, and opening it.  I/O edge.

Theory of operation
-------------------
A store is one PostgreSQL *schema* (a namespace in a database; ``exchnode``
by default), so one database can hold the store of one node and nothing
else needs to change in it.  Opening connects, sets the session (below),
and in one transaction, under an advisory lock on the schema's name (so
that several workers starting at once create it once), creates the schema
and its tables or checks and migrates them, like ``_sqlite_schema``:

* ``store_info`` holds ``schema_version`` (``SCHEMA_VERSION``; PostgreSQL
  stores count their own versions, from 1) and ``audit_ordered_from``;
* a schema with tables but no ``store_info`` is not an exchnode store, and
  one with a newer version is refused untouched (``check_schema_version``);
* ``MIGRATIONS`` brings an older version up, in the opening transaction.

The session: ``synchronous_commit = on`` (a commit returns once its WAL is
flushed: returned means durable, whatever the server's default -- the
server's own ``fsync`` must be on, as it is unless an operator turned it
off), ``READ COMMITTED`` (the store's locking is designed for it: a
statement that waited for a row lock sees the row as committed), a
``lock_timeout`` (a worker never waits forever on another), and the
schema as the ``search_path``.

The tables mirror the SQLite store's, with what several workers sharing
one database need (``_postgres`` explains the locking): ``queues``, one
counter row per queue (count and bytes; the inbox is ``''``), which is also
the lock that keeps a queue's sequence numbers in commit order; and
``audit_writer``, the one row every transaction that appends to the audit
log locks.  Envelope bytes are ``bytea`` stored ``EXTERNAL`` (ciphertext
does not compress: PostgreSQL would only try).  Keys compared as text
(``meta``, ``queues``) use the ``"C"`` collation: code-point order, the
order every backend promises.

Triggers keep the audit log append-only below the store's own checks, as
SQLite's do: no UPDATE of a record, head or tree row; records and tree rows
only appended after the last (tree rows over stored records only), heads
after the last and never smaller; no DELETE of a record, head or tree row
at or above the checkpoint; the checkpoint and the seal only move forward
and are never deleted; ``audit_ordered_from`` fixed; and no TRUNCATE of any
of them (TRUNCATE fires no row trigger).  ``INSERT ... ON CONFLICT DO
UPDATE`` fires the UPDATE triggers, and a single-row table's key refuses a
second row, so there is no ``INSERT OR REPLACE`` hole to close.  (They stop
a bug or a careless ``psql``, not the database's owner: signed heads, the
seal and witnesses are for that.)
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from exchnode.errors import StoreError, UsageError
from exchnode.store._checks import check_schema_version

__all__ = [
    "MIGRATIONS",
    "SCHEMA_V1",
    "SCHEMA_VERSION",
    "Connection",
    "connect",
    "describe",
    "prepare",
    "store_error",
]

Connection = psycopg.Connection[tuple[Any, ...]]

SCHEMA_VERSION = 1


def _append_guard(name: str, refused_if: str, message: str) -> str:
    """A trigger function that refuses an inserted row when ``refused_if`` holds (of ``new``).

    The append-only tables' guards differ only in their condition and message.
    """
    return f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql
        SET search_path FROM CURRENT AS $$
        BEGIN
            IF {refused_if}
            THEN RAISE EXCEPTION USING ERRCODE = 'restrict_violation',
                MESSAGE = '{message}';
            END IF;
            RETURN new;
        END $$"""


def _append_only_triggers(table: str, rows: str) -> tuple[str, str, str]:
    """The triggers of an append-only audit table: its append guard (``_append_guard``), no
    update, and deletes only below the checkpoint (pruning)."""
    return (
        f"""CREATE TRIGGER {table}_append BEFORE INSERT ON {table}
        FOR EACH ROW EXECUTE FUNCTION {table}_append()""",
        f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
        FOR EACH ROW EXECUTE FUNCTION refuse('{rows} are append-only')""",
        f"""CREATE TRIGGER {table}_prune BEFORE DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION
        audit_below_checkpoint('{rows} are deleted only below the checkpoint')""",
    )


# The columns of a queued entry, alike in both queues (the outbound queue adds its next hop).
_ENTRY_COLUMNS = """\
        sender text NOT NULL,
        message_id bytea NOT NULL,
        digest bytea NOT NULL,
        targets text NOT NULL,
        expires_ms bigint NOT NULL,
        size integer NOT NULL,
        data bytea NOT NULL"""

SCHEMA_V1 = (
    'CREATE TABLE store_info (key text COLLATE "C" PRIMARY KEY, value bigint NOT NULL)',
    'CREATE TABLE meta (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL)',
    """CREATE TABLE peers (
        name text PRIMARY KEY,
        failures integer NOT NULL,
        next_attempt_ms bigint NOT NULL,
        last_ok_ms bigint
    )""",
    # targets: the names taken in custody so far, sorted, space-separated (as in SQLite).
    """CREATE TABLE dedup (
        sender text NOT NULL,
        message_id bytea NOT NULL,
        digest bytea NOT NULL,
        expires_ms bigint NOT NULL,
        targets text NOT NULL,
        PRIMARY KEY (sender, message_id)
    )""",
    "CREATE INDEX dedup_by_expiry ON dedup (expires_ms)",
    """CREATE TABLE send_keys (
        key bytea PRIMARY KEY,
        request bytea NOT NULL,
        message_id bytea NOT NULL,
        digest bytea NOT NULL,
        expires_ms bigint NOT NULL
    )""",
    "CREATE INDEX send_keys_by_expiry ON send_keys (expires_ms)",
    # Identity sequences only grow: a number is never handed out twice, even after a
    # removal, so a late forwarded() can never delete a newer entry.
    f"""CREATE TABLE outbound (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        next_hop text NOT NULL,
{_ENTRY_COLUMNS}
    )""",
    "ALTER TABLE outbound ALTER COLUMN data SET STORAGE EXTERNAL",
    "CREATE INDEX outbound_by_hop ON outbound (next_hop, seq)",
    "CREATE INDEX outbound_by_expiry ON outbound (expires_ms)",
    f"""CREATE TABLE inbox (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
{_ENTRY_COLUMNS}
    )""",
    "ALTER TABLE inbox ALTER COLUMN data SET STORAGE EXTERNAL",
    "CREATE INDEX inbox_by_expiry ON inbox (expires_ms)",
    # One row per queue ('' is the inbox): its depth, and the lock that orders its seqs.
    """CREATE TABLE queues (
        queue text COLLATE "C" PRIMARY KEY,
        count bigint NOT NULL CHECK (count >= 0),
        bytes bigint NOT NULL CHECK (bytes >= 0)
    )""",
    # The audit log (SPEC §20.6, §20.9).
    "CREATE TABLE audit_writer (id integer PRIMARY KEY CHECK (id = 1))",
    "INSERT INTO audit_writer (id) VALUES (1)",
    "CREATE TABLE audit_records (seq bigint PRIMARY KEY, data bytea NOT NULL)",
    """CREATE TABLE audit_heads (
        position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tree_size bigint NOT NULL,
        data bytea NOT NULL
    )""",
    "CREATE INDEX audit_heads_by_size ON audit_heads (tree_size, position)",
    """CREATE TABLE audit_checkpoint (
        id integer PRIMARY KEY CHECK (id = 1),
        size bigint NOT NULL,
        data bytea NOT NULL
    )""",
    """CREATE TABLE audit_seal (
        id integer PRIMARY KEY CHECK (id = 1),
        tree_size bigint NOT NULL,
        data bytea NOT NULL
    )""",
    "CREATE TABLE audit_nodes (seq bigint PRIMARY KEY, hashes bytea NOT NULL)",
    # The triggers' functions: SET search_path FROM CURRENT pins them to this schema.
    """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION USING ERRCODE = 'restrict_violation', MESSAGE = TG_ARGV[0]; END $$""",
    _append_guard(
        "audit_records_append",
        """new.seq IS DISTINCT FROM coalesce(
                (SELECT max(seq) + 1 FROM audit_records), (SELECT size FROM audit_checkpoint), 0)""",  # noqa: E501 (the text as stored)
        "audit records are appended after the last one only",
    ),
    _append_guard(
        "audit_heads_append",
        """new.position <= coalesce((SELECT max(position) FROM audit_heads), 0)
                OR new.tree_size < coalesce(
                    (SELECT tree_size FROM audit_heads ORDER BY position DESC LIMIT 1), 0)""",
        "tree heads are appended after the last one only",
    ),
    _append_guard(
        "audit_nodes_append",
        """new.seq <= coalesce((SELECT max(seq) FROM audit_nodes), -1)
                OR new.seq > coalesce((SELECT max(seq) FROM audit_records), -1)
                OR new.seq % 2 <> 1
                OR length(new.hashes) = 0 OR length(new.hashes) % 32 <> 0""",
        "audit tree nodes are appended in order, over records only",
    ),
    """CREATE FUNCTION audit_below_checkpoint() RETURNS trigger LANGUAGE plpgsql
        SET search_path FROM CURRENT AS $$
        DECLARE
            at bigint;
        BEGIN
            IF TG_TABLE_NAME = 'audit_heads' THEN at := old.tree_size; ELSE at := old.seq; END IF;
            IF at >= coalesce((SELECT size FROM audit_checkpoint), 0)
            THEN RAISE EXCEPTION USING ERRCODE = 'restrict_violation', MESSAGE = TG_ARGV[0];
            END IF;
            RETURN old;
        END $$""",
    *_append_only_triggers("audit_records", "audit records"),
    *_append_only_triggers("audit_heads", "tree heads"),
    *_append_only_triggers("audit_nodes", "audit tree nodes"),
    """CREATE TRIGGER audit_checkpoint_forward BEFORE UPDATE ON audit_checkpoint
        FOR EACH ROW WHEN (new.size < old.size OR new.id <> old.id)
        EXECUTE FUNCTION refuse('the audit checkpoint only moves forward')""",
    """CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
        FOR EACH ROW EXECUTE FUNCTION refuse('the audit checkpoint is replaced, never deleted')""",
    """CREATE TRIGGER audit_seal_forward BEFORE UPDATE ON audit_seal
        FOR EACH ROW WHEN (new.tree_size < old.tree_size OR new.id <> old.id)
        EXECUTE FUNCTION refuse('the audit seal only moves forward')""",
    """CREATE TRIGGER audit_seal_no_delete BEFORE DELETE ON audit_seal
        FOR EACH ROW EXECUTE FUNCTION refuse('the audit seal is replaced, never deleted')""",
    """CREATE TRIGGER audit_writer_fixed BEFORE UPDATE OR DELETE ON audit_writer
        FOR EACH ROW EXECUTE FUNCTION refuse('the audit log''s lock row is fixed')""",
    """CREATE TRIGGER store_info_ordered_from_fixed BEFORE UPDATE ON store_info
        FOR EACH ROW WHEN (old.key = 'audit_ordered_from' OR new.key = 'audit_ordered_from')
        EXECUTE FUNCTION refuse('audit_ordered_from is fixed')""",
    """CREATE TRIGGER store_info_ordered_from_no_delete BEFORE DELETE ON store_info
        FOR EACH ROW WHEN (old.key = 'audit_ordered_from')
        EXECUTE FUNCTION refuse('audit_ordered_from is fixed')""",
    *(
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION refuse('the audit log is not truncated')"""
        for table in (
            "audit_records",
            "audit_heads",
            "audit_checkpoint",
            "audit_seal",
            "audit_nodes",
            "audit_writer",
            "store_info",
        )
    ),
    # A new store's log starts empty: record times are checked from its first record on.
    "INSERT INTO store_info (key, value) VALUES ('audit_ordered_from', 0)",
)

# Steps from version n to n + 1, applied in order inside the opening transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {}

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def describe(conninfo: str, schema: str) -> str:
    """The store's name in messages: database, server and schema -- never a password."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        raise UsageError("PostgresStore needs a libpq connection string or URI") from None
    host = params.get("host") or params.get("hostaddr") or "the default server"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql {params.get('dbname') or '(default database)'} on {host}{port}, {schema}"


def check_postgres_target(conninfo: str, schema: str) -> None:
    """``UsageError`` naming what is wrong with where a PostgresStore would connect.

    For configuration, before any connection: a string that is not libpq's,
    one that carries a password (a configuration file is not a secret: the
    password comes from a 0600 file or libpq's PGPASSFILE), a schema name
    that is not a plain lower-case identifier.  The string itself is never
    quoted back.
    """
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        raise UsageError("is not a libpq connection string or URI") from None
    if "password" in params:
        raise UsageError(
            "must not carry the password (the config is not a secret): put it in a 0600 "
            "password file or libpq's PGPASSFILE"
        )
    if not _SCHEMA_NAME.fullmatch(schema):
        raise UsageError(f"schema must be a lower-case SQL identifier, got {schema!r}")


def postgres_with_password(conninfo: str, password: str) -> str:
    """``conninfo`` with ``password`` added, for the connection only (never logged)."""
    return psycopg.conninfo.make_conninfo(conninfo, password=password)


postgres_description = describe


def store_error(name: str, what: str, exc: psycopg.Error) -> StoreError:
    """The server's or driver's error as a :class:`StoreError` naming the store and the call.

    Only the primary message and the SQLSTATE: PostgreSQL's DETAIL may quote
    the values of a row (a message id, a key), which no error of ours repeats.
    """
    primary = exc.diag.message_primary
    if primary is None:  # raised by the driver (no connection, a protocol error)
        primary = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
    return StoreError(f"store {name}: {what}: {primary}{code}")


def connect(
    conninfo: str, schema: str, name: str, *, connect_timeout_s: int, lock_timeout_ms: int
) -> Connection:
    """A session of the store's: autocommit (the store opens every transaction itself)."""
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise UsageError(
            f"a PostgreSQL store's schema is a lower-case name of letters, digits and _, "
            f"got {schema!r}"
        )
    try:
        conn = psycopg.connect(
            conninfo,
            autocommit=True,
            connect_timeout=connect_timeout_s,
            application_name="exchnode-store",
        )
    except psycopg.Error as exc:
        raise store_error(name, "cannot connect", exc) from exc
    try:
        conn.execute("SET synchronous_commit = on")
        conn.execute("SET default_transaction_isolation = 'read committed'")
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{lock_timeout_ms}ms")))
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
    except psycopg.Error as exc:
        conn.close()
        raise store_error(name, "cannot set up the session", exc) from exc
    return conn


def prepare(conn: Connection, schema: str, name: str) -> int:
    """Create the schema and its tables, or check and migrate them; the ``audit_ordered_from``.

    Raises :class:`StoreError` for a schema that is not a store, a damaged
    one, or one with a newer version (which is not changed); and for a
    server in recovery -- a standby not promoted yet: it would open (reads
    and advisory locks work there) and fail at the node's first write, after
    it had started listening, with a message that names no cause.
    """
    try:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if in_recovery is not None and in_recovery[0]:
            raise StoreError(
                f"store {name}: cannot open: the server is a standby in recovery (read-only); "
                "promote it before starting the node on it, or name the primary in conninfo"
            )
        with conn.transaction():
            # Workers opening one database at once: one creates, the others then find it.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"exchnode.store.schema:{schema}",),
            )
            tables = {
                table
                for (table,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
                )
            }
            if not tables:
                _create(conn, schema)
                tables = {"store_info"}
            if "store_info" not in tables:
                raise StoreError(f"{name} holds tables but is not an exchnode store")
            row = conn.execute(
                "SELECT value FROM store_info WHERE key = 'schema_version'"
            ).fetchone()
            version = check_schema_version(row and row[0], name, SCHEMA_VERSION)
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    conn.execute(statement.encode())
                version += 1
                conn.execute(
                    "UPDATE store_info SET value = %s WHERE key = 'schema_version'", (version,)
                )
            row = conn.execute(
                "SELECT value FROM store_info WHERE key = 'audit_ordered_from'"
            ).fetchone()
    except psycopg.Error as exc:
        raise store_error(name, "cannot open", exc) from exc
    if row is None or row[0] < 0:
        raise StoreError(f"store {name} is damaged: audit_ordered_from is not a seq")
    return int(row[0])


def _create(conn: Connection, schema: str) -> None:
    """A new store: the schema (if missing), the tables of version 1."""
    exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    if exists is None:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for statement in SCHEMA_V1:
        conn.execute(statement.encode())
    # Version 1, then the migrations, as an older store takes them: one path to the current.
    conn.execute("INSERT INTO store_info (key, value) VALUES ('schema_version', 1)")
