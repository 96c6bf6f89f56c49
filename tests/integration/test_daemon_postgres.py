"""The daemon on PostgreSQL (issue 14): ``[store] backend = "postgresql"`` at the hub.

A county hub keeps its custody, audit log and services' state in a
throwaway PostgreSQL cluster (a unix socket in a temporary folder) while its
two departments stay on SQLite; a message goes from one department to the
other through the hub, which is stopped and started again in between, and
what the hub holds is found in PostgreSQL, not in its state folder.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchnode.node.config import ConfigError, load_config
from exchnode.store import PostgresStore
from exchnode.testing import PostgresCluster
from tests.integration.daemons import NODE, DaemonFederation, node_cli, node_env
from tests.postgres import throwaway_postgres

HUB = "520102"
GONGAN = "520102.gongan"
MINZHENG = "520102.minzheng"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from throwaway_postgres(fsync=True)


def on_postgres(federation: DaemonFederation, name: str, conninfo: str, schema: str) -> None:
    path = federation.config_path(name)
    with path.open("a") as config:
        config.write(f'\n[store]\nbackend = "postgresql"\nconninfo = "{conninfo}"\n')
        config.write(f'schema = "{schema}"\n')


def carry(federation: DaemonFederation, sender: str, recipient: str, payload: bytes) -> None:
    """``send`` ``payload`` from ``sender`` and ``receive`` it at ``recipient``, with the CLI."""
    sent = node_cli(
        "send", "--config", str(federation.config_path(sender)), "--to", recipient,
        "-", stdin=payload,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr.decode()
    got = node_cli("receive", "--config", str(federation.config_path(recipient)), "--timeout", "30")
    assert got.returncode == 0, got.stderr.decode()
    assert got.stdout == payload


def test_a_hub_on_postgresql_carries_a_message_across_its_own_restart(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    federation = DaemonFederation(tmp_path, [HUB, GONGAN, MINZHENG])
    on_postgres(federation, HUB, cluster.conninfo(), "hub_520102")
    assert load_config(federation.config_path(HUB)).store.backend == "postgresql"
    try:
        federation.start(HUB, GONGAN, MINZHENG)
        federation.wait_ready(HUB, GONGAN, MINZHENG)
        carry(federation, GONGAN, MINZHENG, b"across a hub on postgresql")
        backup = node_cli(
            "backup", "--config", str(federation.config_path(HUB)), "--to",
            str(tmp_path / "hub.tar"), "--administrator", "张工",
        )  # fmt: skip
        assert backup.returncode == 1  # the verb says PostgreSQL's tools back it up
        assert "back it up with PostgreSQL's tools (pg_dump" in backup.stderr.decode()
        assert not (tmp_path / "hub.tar").exists()
        assert federation.stop(HUB) == 0
        assert not (federation.folder(HUB) / "state" / "store.sqlite").exists()
        federation.start(HUB)
        federation.wait_ready(HUB)
        carry(federation, MINZHENG, GONGAN, b"and back, after the hub's restart")
        assert federation.stop(HUB) == 0
    finally:
        federation.kill_all()
    with PostgresStore(cluster.conninfo(), schema="hub_520102") as store:
        assert store.audit_size() > 0  # the hub's audit log: custody of both messages
        assert store.totals().count == 0  # both forwarded and acknowledged


def test_the_store_section_refuses_a_password_in_the_config(tmp_path: Path) -> None:
    federation = DaemonFederation(tmp_path, [HUB])
    path = federation.config_path(HUB)
    text = path.read_text()
    path.write_text(
        text + '\n[store]\nbackend = "postgresql"\nconninfo = "dbname=x password=hunter2"\n'
    )
    with pytest.raises(ConfigError, match="must not carry the password") as caught:
        load_config(path)
    assert "hunter2" not in str(caught.value)
    path.write_text(text + '\n[store]\nschema = "x"\n')
    with pytest.raises(ConfigError, match=r'store\.schema: is for backend = "postgresql" only'):
        load_config(path)
    path.write_text(text + '\n[store]\nbackend = "mysql"\n')
    with pytest.raises(ConfigError, match=r"store\.backend: must be one of sqlite, postgresql"):
        load_config(path)


def test_offline_audit_of_a_postgresql_store_says_to_ask_the_running_node(
    tmp_path: Path,
) -> None:
    federation = DaemonFederation(tmp_path, [HUB])
    on_postgres(federation, HUB, "host=/nonexistent dbname=x", "hub")
    done = subprocess.run(
        [*NODE, "audit", "verify", "--offline", "--config", str(federation.config_path(HUB))],
        capture_output=True, text=True, timeout=60, cwd="/", env=node_env(), check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "leave out --offline to ask the running node" in done.stderr
    restore = subprocess.run(
        [*NODE, "restore", "--from", "x.tar", "--config", str(federation.config_path(HUB))],
        capture_output=True, text=True, timeout=60, cwd="/", env=node_env(), check=False,
    )  # fmt: skip
    assert restore.returncode == 1
    assert "restore it with PostgreSQL's tools (pg_restore)" in restore.stderr
