"""Witnessing on daemons: a hub checks its child's log, the auditor reads the verdicts, and
the administrator (only) resets a child, on the record with the person."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from exchnode.audit import Role
from tests.integration.daemons import DaemonFederation, node_cli
from tests.integration.test_daemon_catalog import ok_json, one_line_error
from tests.integration.test_daemon_roles import audit_records, call, find

HUB, CHILD = "520102", "520102.gongan"
ADMIN = "张工"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(tmp_path_factory.mktemp("witness"), [HUB, CHILD])
    config = federation.config_path(HUB)
    text = config.read_text("utf-8")
    assert "# witness_interval = 60.0" in text  # the scaffold documents the key
    config.write_text(text.replace("# witness_interval = 60.0", "witness_interval = 0.5"))
    with federation.serving(HUB, CHILD):
        yield federation


def witnessed(fed: DaemonFederation) -> list[dict[str, Any]]:
    shown = node_cli("audit", "witnessed", "--config", str(fed.config_path(HUB)), "--json")
    return list(ok_json(shown))


def wait_for_verdict(fed: DaemonFederation, verdicts: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        (child,) = witnessed(fed)
        if child["verdict"] in verdicts:
            return child
        assert time.monotonic() < deadline, child
        time.sleep(0.2)


def test_the_hub_witnesses_its_child_and_the_auditor_reads_it(fed: DaemonFederation) -> None:
    child = wait_for_verdict(fed, {"first-head", "consistent"})
    assert child["child"] == CHILD
    assert child["verdict_ok"] is True
    assert child["kept_size"] > 0  # the child's start is on its log: config, certificate
    table = node_cli("audit", "witnessed", "--config", str(fed.config_path(HUB)))
    assert table.returncode == 0, table.stderr.decode()
    assert CHILD in table.stdout.decode()
    records = audit_records(fed, HUB)
    assert find(records, "witness", subject={"kind": "node", "value": CHILD})
    # The child keeps no children: its own view is empty.
    assert witnessed_of(fed, CHILD) == []


def witnessed_of(fed: DaemonFederation, name: str) -> list[dict[str, Any]]:
    shown = node_cli("audit", "witnessed", "--config", str(fed.config_path(name)), "--json")
    return list(ok_json(shown))


def test_only_the_administrator_resets_a_child_and_it_is_on_the_record(
    fed: DaemonFederation,
) -> None:
    wait_for_verdict(fed, {"first-head", "consistent"})
    path = f"/v1/admin/witnessed/{CHILD}/reset"
    for role in (Role.OPERATOR, Role.AUDITOR):
        status, answer = call(fed, role, "POST", path, {"administrator": ADMIN}, name=HUB)
        assert status == 403, answer
    config = str(fed.config_path(HUB))
    done = node_cli("admin", "witness-reset", CHILD, "--config", config, "--administrator", ADMIN)
    assert done.returncode == 0, done.stderr.decode()
    assert "its next head is a first head" in done.stdout.decode()
    err = one_line_error(
        node_cli("admin", "witness-reset", "520103", "--config", config, "--administrator", ADMIN)
    )
    assert "520103" in err
    wait_for_verdict(fed, {"first-head"})
    records = audit_records(fed, HUB)
    actor = {"role": "administrator", "name": ADMIN}
    reset = find(records, "witness.reset", actor=actor, subject={"kind": "node", "value": CHILD})
    assert reset[-1]["outcome"] == {"status": "ok", "code": ""}
    refused = find(records, "witness.reset", subject={"kind": "node", "value": "520103"})
    assert refused[-1]["outcome"] == {"status": "refused", "code": "unknown-child"}
