"""A throwaway PostgreSQL for the tests that need one (the store suite, the daemon on PostgreSQL).

Skipped where the server programs or psycopg are missing, saying which; a
failure instead where the run says PostgreSQL must be there
(``EXCHNODE_REQUIRE_POSTGRES=1``, which ``.ci/run`` sets), so that CI never
passes by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator

import pytest

from exchnode.testing import PostgresCluster

#: What a standby needs besides the server: its base backup, and psql to watch and promote.
REPLICATION_PROGRAMS = ("pg_basebackup", "psql")


def require_postgres(*programs: str) -> None:
    """Skip without the server, ``programs`` or psycopg (fail: ``EXCHNODE_REQUIRE_POSTGRES=1``)."""
    missing = None
    if shutil.which("initdb") is None or shutil.which("postgres") is None:
        missing = "the PostgreSQL server (initdb, postgres) is not on PATH"
    elif absent := [program for program in programs if shutil.which(program) is None]:
        missing = f"PostgreSQL's {', '.join(absent)} not on PATH"
    elif importlib.util.find_spec("psycopg") is None:
        missing = "psycopg is not installed (exchnode[postgres])"
    if missing is not None:
        if os.environ.get("EXCHNODE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{missing}, and EXCHNODE_REQUIRE_POSTGRES=1")
        pytest.skip(missing)


def throwaway_postgres(
    *, fsync: bool = False, programs: tuple[str, ...] = ()
) -> Iterator[PostgresCluster]:
    """A started cluster (``fsync`` off unless asked: nothing of it outlives the tests).

    ``programs``: other PostgreSQL programs the test needs (``REPLICATION_PROGRAMS``).
    """
    require_postgres(*programs)
    with PostgresCluster(fsync=fsync, timeout_s=60) as cluster:
        yield cluster
