"""The store suite's fixtures: one ``store`` per backend, and a throwaway PostgreSQL.

Every test that takes ``store`` runs against MemoryStore, SqliteStore and
PostgresStore.  PostgreSQL is one cluster per test session
(``exchnode.testing.PostgresCluster``), started only when a PostgreSQL test
runs, listening on a unix socket in its own temporary folder only; each
test gets a schema of its own, dropped afterwards, so tests stay
independent and fast.  The session's cluster runs with ``fsync=off``:
nothing of it outlives the session, and durability across power loss is
not what these tests check (a benchmark of custody must keep it on).
Without the PostgreSQL server programs or psycopg, the PostgreSQL cases
are skipped, saying which is missing -- except under ``.ci/run``
(``EXCHNODE_REQUIRE_POSTGRES=1``), where that is a failure.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchnode.store import MemoryStore, SqliteStore, Store
from exchnode.testing import PostgresCluster
from tests.postgres import throwaway_postgres

_schemas = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    yield from throwaway_postgres()


@pytest.fixture
def postgres_schema(postgres_cluster: PostgresCluster) -> Iterator[tuple[str, str]]:
    """``(conninfo, schema)``: a schema no other test uses, dropped afterwards."""
    import psycopg
    from psycopg import sql

    schema = f"test_{next(_schemas)}"
    conninfo = postgres_cluster.conninfo()
    yield conninfo, schema
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as admin:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def open_store(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Store:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SqliteStore(tmp_path / "s.db")
    from exchnode.store import PostgresStore

    conninfo, schema = request.getfixturevalue("postgres_schema")
    return PostgresStore(conninfo, schema=schema)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each backend in turn: the suite pins them to one behaviour."""
    with open_store(request, request.param, tmp_path) as impl:
        yield impl
