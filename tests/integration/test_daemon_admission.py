"""Adding a department without editing the hub's file and restarting it (issue 15, item 1).

A county hub (520102) runs on the signed directory with one configured
department (520102.gongan).  Two departments are not in its file:
520102.minzheng, whose certificate lies in the hub's division (admitted on its
first hello by the default ``[admission] policy = "division"``), and
520103.waishi, a department of the next county that was pointed at this hub
by mistake (refused: it lies outside the hub's division).  Then the
administrator's levers: ``admin peers add|remove|reload`` and SIGHUP, a bad
file refused with its reason while the peers in use stay.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from exchnode.audit import Role
from exchnode.node.scaffold import export_trust
from tests.integration.daemons import DaemonFederation, node_cli, until
from tests.integration.test_daemon_revocation import hello_as
from tests.integration.test_daemon_roles import audit_records, call, find

pytestmark = pytest.mark.timeout(240)

HUB, GONGAN, MINZHENG, STRAY = "520102", "520102.gongan", "520102.minzheng", "520103.waishi"
REVOKED = "520102.tingyong"  # in the division, revoked before the hub starts; never runs
ADMIN = "张工"


def peer_table(fed: DaemonFederation, name: str, relation: str) -> str:
    return f'[[peers]]\nname = "{name}"\nrelation = "{relation}"\nurl = "{fed.url(name)}"\n'


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(
        tmp_path_factory.mktemp("admission"), [HUB, GONGAN, MINZHENG, STRAY, REVOKED], "signed"
    )
    federation.store.revoke("520100", REVOKED, reason="key-compromise", now=datetime.now(UTC))
    export_trust(federation.store, federation.root / "trust")  # the hub starts with that CRL
    hub = federation.config_path(HUB)
    text = federation.config_text(HUB)
    for name in (MINZHENG, REVOKED):  # neither is in the hub's file
        assert peer_table(federation, name, "child") in text
        text = text.replace(peer_table(federation, name, "child"), "")
    hub.write_text(text, "utf-8")
    stray = federation.config_path(STRAY)  # its operator named the wrong hub as its parent
    stray.write_text(stray.read_text("utf-8") + "\n" + peer_table(federation, HUB, "parent"))
    with federation.serving(HUB, GONGAN, MINZHENG, STRAY):
        yield federation


def peers(fed: DaemonFederation, name: str = HUB) -> dict[str, dict[str, Any]]:
    status, body = call(fed, Role.ADMINISTRATOR, "GET", "/v1/admin/peers", name=name)
    assert status == 200, body
    return {p["name"]: p for p in body["peers"]}


def hub_peer(fed: DaemonFederation, name: str) -> dict[str, Any]:
    state: dict[str, Any] = fed.health(name)[1]["peers"][HUB]
    return state


def test_a_department_of_the_division_is_admitted_on_its_first_hello(
    fed: DaemonFederation,
) -> None:
    admitted = until(lambda: peers(fed).get(MINZHENG), "the hub admits the department")
    assert (admitted["relation"], admitted["source"], admitted["url"]) == (
        "child",
        "admitted",
        fed.url(MINZHENG),
    )
    assert peers(fed)[GONGAN]["source"] == "config"
    (record,) = find(audit_records(fed, HUB), "peer.admitted")
    assert record["subject"] == {"kind": "node", "value": MINZHENG}
    assert record["detail"] == {"kind": "division"}
    assert record["outcome"]["status"] == "ok"
    # Custody both ways through the hub, which learnt the department's keys from it.
    for sender, recipient, payload in (
        (GONGAN, MINZHENG, b"to the new department"),
        (MINZHENG, GONGAN, b"from the new department"),
    ):
        config = str(fed.config_path(sender))
        sent = node_cli("send", "--config", config, "--to", recipient, "-", stdin=payload)
        assert sent.returncode == 0, sent.stderr
        got = node_cli("receive", "--config", str(fed.config_path(recipient)), "--timeout", "30")
        assert (got.returncode, got.stdout) == (0, payload), got.stderr


def test_a_revoked_department_of_the_division_is_not_admitted(fed: DaemonFederation) -> None:
    # Its certificate lies in the division, but its CA revoked it: the handshake fails,
    # so its hello never reaches the admission policy.
    assert hello_as(fed, REVOKED, HUB) == "refused: connection"
    assert REVOKED not in peers(fed)
    records = audit_records(fed, HUB)
    assert not find(records, "peer.admitted", subject={"kind": "node", "value": REVOKED})


def test_a_refused_department_is_told_why_and_its_send_says_so(fed: DaemonFederation) -> None:
    peer = until(
        lambda: (p := hub_peer(fed, STRAY))["state"] == "refused" and p, "the stray's health"
    )
    refusal = peer["refused"]
    assert (refusal["refused_by"], refusal["reason"], refusal["kind"]) == (
        HUB,
        "not-a-neighbour",
        "link",
    )
    assert refusal["said"] == f"{STRAY} is not admitted by {HUB}: it lies outside {HUB}'s division"
    warned = [e for e in fed.log_events(STRAY) if e["event"] == "neighbour refuses this node"]
    assert warned
    assert warned[0]["level"] == "warning"
    assert refusal["said"] in warned[0]["error"]
    sent = node_cli(
        "send", "--config", str(fed.config_path(STRAY)), "--to", GONGAN, "-", stdin=b"x"
    )
    assert sent.returncode == 1
    (line,) = sent.stderr.decode().splitlines()
    assert f"the hub {HUB} has not admitted this node yet (not-a-neighbour): " in line, line
    assert f"it lies outside {HUB}'s division" in line
    assert STRAY not in peers(fed)
    assert find(audit_records(fed, HUB), "link.refused", subject={"kind": "node", "value": STRAY})
    table = node_cli("admin", "peers", "--config", str(fed.config_path(STRAY)))
    assert table.returncode == 0, table.stderr
    assert f"refused: {refusal['said']}" in table.stdout.decode()


def test_the_administrator_adds_and_removes_a_peer_without_a_restart(
    fed: DaemonFederation,
) -> None:
    body = {"administrator": ADMIN, "name": STRAY, "relation": "child", "url": fed.url(STRAY)}
    status, answer = call(fed, Role.ADMINISTRATOR, "POST", "/v1/admin/peers", body, name=HUB)
    assert status == 409, answer  # outside the hub's division: the routing rules refuse it
    assert "lies outside 520102's scope" in answer["error"]
    added = node_cli(
        "admin",
        "peers",
        "add",
        STRAY,
        "--relation",
        "link",
        "--url",
        fed.url(STRAY),
        "--config",
        str(fed.config_path(HUB)),
        "--administrator",
        ADMIN,
    )
    assert added.returncode == 0, added.stderr
    assert peers(fed)[STRAY]["source"] == "added"
    # The hub greets it at once: the stray's refusal ends without waiting for its next hello.
    until(lambda: hub_peer(fed, STRAY)["state"] != "refused", "the stray admitted")
    status, answer = call(
        fed,
        Role.ADMINISTRATOR,
        "POST",
        f"/v1/admin/peers/{GONGAN}/remove",
        {"administrator": ADMIN},
        name=HUB,
    )
    assert status == 409, answer
    assert "remove its [[peers]] table there" in answer["error"]
    removed = node_cli(
        "admin",
        "peers",
        "remove",
        STRAY,
        "--config",
        str(fed.config_path(HUB)),
        "--administrator",
        ADMIN,
    )
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.decode().strip() == f"{STRAY} removed (it was added)"
    assert STRAY not in peers(fed)
    records = audit_records(fed, HUB)
    assert [r["outcome"]["status"] for r in find(records, "peer.add")] == ["refused", "ok"]
    assert [r["actor"] for r in find(records, "peer.remove")] == [
        {"role": "administrator", "name": ADMIN}
    ] * 2


def test_sighup_reloads_the_peers_and_a_bad_file_changes_nothing(fed: DaemonFederation) -> None:
    hub = fed.config_path(HUB)
    good = hub.read_text("utf-8")
    pid = fed.processes[HUB].pid
    try:
        hub.write_text(good + '\n[admission]\npolicy = "sometimes"\n', "utf-8")
        os.kill(pid, signal.SIGHUP)
        refused = until(
            lambda: [e for e in fed.log_events(HUB) if e["event"].startswith("peers not reloaded")],
            "the refusal in the log",
        )
        assert refused[0]["level"] == "error"
        assert refused[0]["error"] == (
            f"{hub}: admission.policy: must be one of division, allow-list, none, got 'sometimes'"
        )
        assert set(peers(fed)) == {GONGAN, MINZHENG}
        hub.write_text(good.replace(peer_table(fed, GONGAN, "child"), ""), "utf-8")
        os.kill(pid, signal.SIGHUP)
        until(lambda: GONGAN not in peers(fed), "the peer removed by SIGHUP")
        assert set(peers(fed)) == {MINZHENG}  # the admitted one is the store's, not the file's
    finally:
        hub.write_text(good, "utf-8")
    reloaded = node_cli(
        "admin", "peers", "reload", "--config", str(hub), "--administrator", ADMIN, "--json"
    )
    assert reloaded.returncode == 0, reloaded.stderr
    assert json.loads(reloaded.stdout) == {
        "added": [GONGAN],
        "removed": [],
        "changed": [],
        "next_start": [],
    }
    assert peers(fed)[GONGAN]["source"] == "config"
    actions = [(r["action"], r["outcome"]["status"]) for r in audit_records(fed, HUB)]
    assert ("peers.reload", "refused") in actions
    assert actions.count(("peers.reload", "ok")) == 2


def test_an_admitted_department_is_still_admitted_after_the_hub_restarts(
    fed: DaemonFederation,
) -> None:
    assert fed.stop(HUB) == 0
    fed.start(HUB)
    fed.wait_ready(HUB)
    assert peers(fed)[MINZHENG]["source"] == "admitted"
    sent = node_cli(
        "send", "--config", str(fed.config_path(GONGAN)), "--to", MINZHENG, "-", stdin=b"again"
    )
    assert sent.returncode == 0, sent.stderr
    got = node_cli("receive", "--config", str(fed.config_path(MINZHENG)), "--timeout", "30")
    assert (got.returncode, got.stdout) == (0, b"again"), got.stderr
