"""The audit log through the daemon: real processes, the operator API, ``audit`` verbs.

Three daemons on loopback (a county hub and two of its departments).  A
catalog publication and a subscription leave audit records at both ends;
``audit verify`` finds the provider's log intact and ``audit records`` names
the operators who acted.  Then the provider is stopped, one of its audit
records is rewritten in the SQLite file, and ``audit verify --offline`` names
the record, and the daemon refuses to start over the changed log.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from exchnode.node.config import load_config
from tests.integration.daemons import (
    DaemonFederation,
    config_refused,
    node_cli,
    rewrite_audit_record,
    until,
)
from tests.integration.test_daemon_catalog import entry, ok_json, one_line_error

pytestmark = pytest.mark.timeout(180)

HUB = "520102"
PROVIDER = "520102.gongan"
REQUESTER = "520102.minzheng"
PUBLISHER = "王主任"
CLERK = "clerk-li"


def audit(fed: DaemonFederation, name: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
    verb, *rest = argv
    result: subprocess.CompletedProcess[bytes] = node_cli(
        "audit", verb, "--config", str(fed.config_path(name)), *rest
    )
    return result


def records(fed: DaemonFederation, name: str) -> list[dict[str, Any]]:
    page = ok_json(audit(fed, name, "records", "--limit", "1000", "--json"))
    assert page["next"] is None
    found: list[dict[str, Any]] = page["records"]
    assert [r["seq"] for r in found] == list(range(page["size"]))
    return found


def acted(found: list[dict[str, Any]], action: str, role: str, name: str) -> bool:
    return any(r["action"] == action and r["actor"] == {"role": role, "name": name} for r in found)


def a_subscription(fed: DaemonFederation, tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "entry.json"
    document = entry(1, "unconditional", name="婚姻登记信息", provider_code="11520102MB0000001X")
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    config = str(fed.config_path(PROVIDER))
    published = node_cli(
        "catalog", "publish", "--config", config, str(path), "--operator", PUBLISHER, "--json"
    )
    (record,) = ok_json(published)
    code: str = record["code"]
    requester = str(fed.config_path(REQUESTER))
    until(
        lambda: ok_json(
            node_cli("catalog", "list", "--beyond", "--config", requester, "--code", code, "--json")
        ),
        f"{code} at {REQUESTER}",
    )
    answer = ok_json(
        node_cli(
            "sub", "request", PROVIDER, code, "--config", requester, "--purpose", "婚姻状况核验",
            "--scope", "本区申请人", "--items", "姓名", "--operator", CLERK, "--json",
        )
    )  # fmt: skip
    request_id: str = answer["request_id"]

    def granted() -> bool:
        sent = ok_json(node_cli("sub", "list", "--config", requester, "--json"))
        return any(r["request_id"] == request_id and r["state"] == "granted" for r in sent)

    until(granted, f"{request_id} granted at {REQUESTER}")
    return code, request_id


def test_verified_listed_tampered_found_offline_and_the_start_refused(tmp_path: Path) -> None:
    fed = DaemonFederation(tmp_path, [HUB, PROVIDER, REQUESTER])
    try:
        fed.start(HUB, PROVIDER, REQUESTER)
        fed.wait_ready(HUB, PROVIDER, REQUESTER)
        code, request_id = a_subscription(fed, tmp_path)

        # The running provider checks its log (storing and signing what is pending first).
        checked = audit(fed, PROVIDER, "verify")
        assert checked.returncode == 0, checked.stderr.decode()
        ok_line = checked.stdout.decode().strip()
        assert ok_line.startswith("log ok: "), ok_line
        report = ok_json(audit(fed, PROVIDER, "verify", "--json"))
        assert report["ok"] is True
        assert report["findings"] == []
        assert report["node"] == PROVIDER
        assert report["records"] == report["size"] >= 2
        assert report["heads"] >= 1
        assert report["verified_size"] == report["size"] == report["last_head"]["tree_size"]
        assert ok_line == f"log ok: {report['records']} records, {report['heads']} heads"

        # The records name who acted: the provider's publisher, the requester's clerk.
        provider_log = records(fed, PROVIDER)
        assert acted(provider_log, "catalog.publish", "operator", PUBLISHER)
        assert acted(provider_log, "request", "node", REQUESTER)
        publication = next(r for r in provider_log if r["action"] == "catalog.publish")
        assert publication["category"] == "catalog"
        assert publication["subject"] == {"kind": "resource", "value": code}
        assert publication["outcome"]["status"] == "ok"
        about_request = [r for r in provider_log if r["subject"]["value"] == request_id]
        assert about_request
        assert all(r["subject"]["kind"] == "request" for r in about_request)
        assert all(r["node"] == PROVIDER for r in provider_log)
        until(
            lambda: acted(records(fed, REQUESTER), "request", "operator", CLERK),
            "the clerk's request in the requester's log",
        )
        table = audit(fed, PROVIDER, "records")
        assert table.returncode == 0, table.stderr.decode()
        header, *rows = table.stdout.decode().splitlines()
        assert header.split()[:4] == ["SEQ", "TIME", "CATEGORY", "ACTION"]
        assert all("+08:00" in row.split()[1] for row in rows)  # ISO 8601 with the offset
        assert any(f"operator:{PUBLISHER}" in row and "catalog.publish" in row for row in rows)
        paged = ok_json(audit(fed, PROVIDER, "records", "--from", "0", "--limit", "1", "--json"))
        assert [r["seq"] for r in paged["records"]] == [0]
        assert paged["next"] == 1
        last = ok_json(audit(fed, PROVIDER, "records", "--from", "1", "--limit", "1", "--json"))
        assert [r["seq"] for r in last["records"]] == [1]
        assert last["next"] == (2 if last["size"] > 2 else None)

        # A running daemon's store is not read behind its back.
        busy = audit(fed, REQUESTER, "verify", "--offline")
        assert "in use by another daemon" in one_line_error(busy)

        # Stopped (a last head is signed over everything), then one record is rewritten:
        # who published the entry.
        assert fed.stop(PROVIDER) == 0
        store = fed.config(PROVIDER).store_path
        seq = rewrite_audit_record(store, PUBLISHER.encode(), "李主任".encode())

        found = audit(fed, PROVIDER, "verify", "--offline")
        assert found.returncode == 1, found.stderr.decode()
        text = found.stdout.decode()
        assert "NOT ok" in text
        assert any(
            line.split()[:2] == ["changed-record", str(seq)] for line in text.splitlines()
        ), text
        as_json = audit(fed, PROVIDER, "verify", "--offline", "--json")
        assert as_json.returncode == 1
        findings = json.loads(as_json.stdout)["findings"]
        changed = [f for f in findings if f["kind"] == "changed-record"]
        assert [(f["seq"], f["range"]) for f in changed] == [(seq, [seq, seq + 1])]
        offline = ok_json(audit(fed, PROVIDER, "records", "--offline", "--json"))
        assert offline["records"][seq]["actor"]["name"] == "李主任"

        # The daemon will not sign over the changed log: it stops at once, one line saying why.
        fed.start(PROVIDER)
        status = fed.processes[PROVIDER].wait(40)
        assert status == 1
        last = fed.log_path(PROVIDER).read_text().splitlines()[-1]
        assert last.startswith("python -m exchnode.node: error: the audit log in "), last
        assert "is inconsistent" in last
        assert "audit verify --offline" in last
        assert "Traceback" not in fed.log_path(PROVIDER).read_text()
    finally:
        fed.kill_all()


def test_audit_settings_are_checked_with_file_and_key(tmp_path: Path) -> None:
    fed = DaemonFederation(tmp_path, [HUB])
    path = fed.config_path(HUB)
    written = fed.config_text(HUB, "[audit]", "# flush = 0.2", "# head_interval = 10.0")
    assert load_config(path).audit.flush == 0.2
    for setting, problem in (
        ("flush = 0", "audit.flush: must be positive"),
        ("head_interval = 1e9", "audit.head_interval: must be at most 86400 seconds"),
        ('flush = "fast"', "audit.flush: must be a number"),
        ("head_intervall = 5", "audit.head_intervall: unknown setting"),
    ):
        refused = config_refused(path, written.replace("# flush = 0.2", setting), problem)
        assert str(refused).startswith(f"{path}: ")
    path.write_text(written.replace("# head_interval = 10.0", "head_interval = 2.5"))
    assert load_config(path).audit.head_interval == 2.5


def test_offline_in_signed_mode_and_before_the_first_run(tmp_path: Path) -> None:
    fed = DaemonFederation(tmp_path, [HUB], directory_mode="signed")
    never = audit(fed, HUB, "verify", "--offline")
    assert "does not exist (has this node ever run?)" in one_line_error(never)
    assert not fed.config(HUB).store_path.exists()  # never created by a reader
    try:
        fed.start(HUB)
        fed.wait_ready(HUB)
        online = ok_json(audit(fed, HUB, "verify", "--json"))
        assert online["ok"] is True
        # The start itself is on the record (node.admin.note_start), under a signed head.
        size = online["size"]
        assert online["records"] == size == online["last_head"]["tree_size"] >= 1
        assert fed.stop(HUB) == 0
        offline = audit(fed, HUB, "verify", "--offline")
        assert offline.returncode == 0, offline.stderr.decode()
        assert offline.stdout.decode().startswith(f"log ok: {size} records, ")
        listed = ok_json(audit(fed, HUB, "records", "--offline", "--json"))
        assert listed["records"][0]["action"] == "config.loaded"
    finally:
        fed.kill_all()


def test_a_retention_under_six_months_is_refused_unless_forced(tmp_path: Path) -> None:
    """Issue 12: 等级保护 asks six months of audit records; less is the operator's choice."""
    fed = DaemonFederation(tmp_path, [HUB])
    path = fed.config_path(HUB)
    written = fed.config_text(
        HUB, "# retention_days = 183", "# allow_short_retention = false",
        "# witness_silent_rounds = 5",
    )  # fmt: skip
    config = load_config(path).audit
    assert (config.retention_days, config.allow_short_retention) == (183, False)
    assert config.witness_silent_rounds == 5
    short = written.replace("# retention_days = 183", "retention_days = 90")
    err = config_refused(path, short, r"audit\.retention_days: 90 days is under the 183")
    assert "allow_short_retention = true" in str(err)
    forced = short.replace("# allow_short_retention = false", "allow_short_retention = true")
    path.write_text(forced)
    config = load_config(path).audit
    assert (config.retention_days, config.allow_short_retention) == (90, True)
    config_refused(
        path, written.replace("# retention_days = 183", "retention_days = 182"), "retention_days"
    )
    for setting, problem in (
        ("witness_silent_rounds = 0", "audit.witness_silent_rounds: must be positive"),
        ("witness_silent_rounds = 1e3", "audit.witness_silent_rounds: must be an integer"),
        ("witness_silent_rounds = 100000", "audit.witness_silent_rounds: must be at most"),
        ('allow_short_retention = "yes"', "audit.allow_short_retention: must be true or false"),
    ):
        allow = setting.startswith("allow")
        default = "# allow_short_retention = false" if allow else "# witness_silent_rounds = 5"
        config_refused(path, written.replace(default, setting, 1), problem)
    path.write_text(written.replace("# witness_silent_rounds = 5", "witness_silent_rounds = 2"))
    assert load_config(path).audit.witness_silent_rounds == 2
