"""``audit report`` over real daemons: counted from verified logs, the unreadable named.

A county hub and two of its departments run; a fourth node has a folder but
never starts.  The provider publishes an unconditional and a conditional
entry, the requester asks for both, the provider approves the conditional one
and pushes records, and ``audit report`` over all four nodes counts it:
resources by share type, requests granted, a conditional answer within the
10-working-day rule, records provided and used, and the node that never ran
named unreachable (exit 1).  Then the daemons stop, one record of the
requester's store is rewritten, and ``audit report --offline`` names that
log as failed with the changed record, still counting the provider.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemons import DaemonFederation, node_cli, rewrite_audit_record, until
from tests.integration.test_daemon_catalog import entry, ok_json, one_line_error

pytestmark = pytest.mark.timeout(180)

HUB = "520102"
PROVIDER = "520102.gongan"
REQUESTER = "520102.minzheng"
SILENT = "520102.tingyong"  # a folder, never started
CLERK = "clerk-li"


def cli(fed: DaemonFederation, name: str, *argv: str, stdin: bytes | None = None) -> Any:
    verb, step, *rest = argv
    return node_cli(verb, step, "--config", str(fed.config_path(name)), *rest, stdin=stdin)


def report(
    fed: DaemonFederation, *argv: str, names: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[bytes]:
    nodes = [arg for name in names for arg in ("--node", str(fed.folder(name)))]
    result: subprocess.CompletedProcess[bytes] = node_cli(
        "audit", "report", *nodes, *argv, timeout=90
    )
    return result


def publish(fed: DaemonFederation, tmp_path: Path, document: dict[str, Any]) -> str:
    path = tmp_path / f"{document['code'].replace('/', '-')}.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    (record,) = ok_json(
        cli(fed, PROVIDER, "catalog", "publish", str(path), "--operator", "王主任", "--json")
    )
    code: str = record["code"]
    found = ["catalog", "list", "--beyond", "--code", code, "--json"]
    until(lambda: ok_json(cli(fed, REQUESTER, *found)), code)
    return code


def subscribe(fed: DaemonFederation, code: str) -> str:
    answer = ok_json(
        cli(fed, REQUESTER, "sub", "request", PROVIDER, code, "--purpose", "核验",
            "--scope", "本区", "--items", "姓名", "--operator", CLERK, "--json")
    )  # fmt: skip
    request_id: str = answer["request_id"]
    return request_id


def state_of(fed: DaemonFederation, request_id: str) -> str:
    sent = ok_json(cli(fed, REQUESTER, "sub", "list", "--json"))
    return next((r["state"] for r in sent if r["request_id"] == request_id), "")


def department(data: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [d for d in data["departments"] if d["department"] == name]
    return found


def test_report_online_then_offline_over_a_changed_log(tmp_path: Path) -> None:
    names = [HUB, PROVIDER, REQUESTER, SILENT]
    fed = DaemonFederation(tmp_path, names)
    running = (HUB, PROVIDER, REQUESTER)
    try:
        fed.start(*running)
        fed.wait_ready(*running)
        open_code = publish(fed, tmp_path, entry(1, "unconditional", name="婚姻登记信息"))
        cond_code = publish(fed, tmp_path, entry(2, "conditional"))
        granted = subscribe(fed, open_code)
        pending = subscribe(fed, cond_code)
        until(lambda: state_of(fed, granted) == "granted", "the unconditional grant")
        until(lambda: state_of(fed, pending) == "pending", "the conditional request pending")
        approved = cli(fed, PROVIDER, "sub", "approve", pending, "--operator", "wang")
        assert approved.returncode == 0, approved.stderr.decode()
        until(lambda: state_of(fed, pending) == "granted", "the conditional grant")
        person = {"身份证号": "520102199001011234", "出生日期": "1990-01-01"}
        lines = "".join(
            json.dumps({**person, "姓名": f"张{i}"}, ensure_ascii=False) + "\n" for i in range(3)
        ).encode()
        pushed = cli(
            fed, PROVIDER, "sub", "publish", cond_code, "-", "--operator", "wang", stdin=lines
        )
        assert pushed.returncode == 0, pushed.stderr.decode()

        def received() -> bool:
            data = json.loads(report(fed, "--json", names=(PROVIDER, REQUESTER)).stdout)
            return bool(department(data, REQUESTER)["records_received"] == 3)

        until(received, "the records in the requester's log")

        # Online, every node named; the one that never ran is unreachable and the exit is 1.
        online = report(fed, "--json", names=tuple(names))
        assert online.returncode == 1, online.stderr.decode()
        data = json.loads(online.stdout)
        provider = department(data, PROVIDER)
        assert (provider["resources"], provider["unconditional"], provider["conditional"]) == (
            2,
            1,
            1,
        )
        assert provider["shared_ratio"] == 1.0
        assert (provider["requested"], provider["granted"], provider["pending"]) == (2, 2, 0)
        assert provider["conditional_answers"] == 1
        assert provider["answers_within_rule"] == 1
        assert provider["answer_workdays_max"] == 0  # answered the same day
        assert provider["records_published"] == provider["records_sent"] == 3
        assert provider["records_used"] == 3
        assert provider["log"] == "verified"
        nodes = {n["node"]: n for n in data["nodes"]}
        assert set(nodes) == set(names)
        assert nodes[SILENT]["log"] == "unreachable"
        assert "cannot reach the operator API" in nodes[SILENT]["problem"]
        assert nodes[SILENT]["zombie"] is None
        assert all(nodes[n]["log"] == "verified" and nodes[n]["zombie"] is False for n in running)
        assert data["unverified"] == [
            {"node": SILENT, "log": "unreachable", "problem": nodes[SILENT]["problem"]}
        ]
        assert {r["level"] for r in data["levels"]} == {"county"}
        err = online.stderr.decode()
        assert f"{PROVIDER}: " in err
        assert f"{SILENT}: unreachable" in err

        # The table, and CSV for auditors: a folder of tables, or one long file.
        table = report(fed, names=running)
        assert table.returncode == 0, table.stderr.decode()
        text = table.stdout.decode()
        assert text.startswith("oversight report at ")
        assert any(line.startswith(PROVIDER) and "2/0/0/0" in line for line in text.splitlines())
        folder = tmp_path / "csv"
        written = report(fed, "--csv", str(folder), names=running)
        assert written.returncode == 0, written.stderr.decode()
        assert sorted(p.name for p in folder.iterdir()) == [
            "departments.csv", "levels.csv", "nodes.csv", "stale_resources.csv", "summary.csv"
        ]  # fmt: skip
        raw = (folder / "departments.csv").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")  # a BOM: spreadsheets read the names as UTF-8
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
        assert {r["department"]: r["granted"] for r in rows}[PROVIDER] == "2"
        long_file = tmp_path / "report.csv"
        assert report(fed, "--csv", str(long_file), names=running).returncode == 0
        long_rows = list(csv.DictReader(io.StringIO(long_file.read_text(encoding="utf-8-sig"))))
        assert {"section": "department", "subject": PROVIDER, "level": "county",
                "metric": "records_used", "value": "3"} in long_rows  # fmt: skip

        # Errors: one line, exit 1.
        assert "--json or --csv" in one_line_error(
            report(fed, "--json", "--csv", "x", names=running)
        )
        bad = node_cli("audit", "report", "--node", str(tmp_path / "nowhere"))
        assert bad.returncode == 1
        assert "Traceback" not in bad.stderr.decode()
        assert bad.stderr.decode().count("\n") == 1
        wrong = node_cli(
            "audit", "report", "--zombie-after", "soon", "--node", str(fed.folder(HUB))
        )
        assert wrong.returncode == 2  # argparse: usage and the problem
        assert "expected a duration like 30d" in wrong.stderr.decode()

        for name in running:
            assert fed.stop(name) == 0
    finally:
        fed.kill_all()

    # Stopped: one of the requester's records is rewritten in its store.
    seq = rewrite_audit_record(fed.config(REQUESTER).store_path, CLERK.encode(), b"clerk-xu")

    offline = report(fed, "--offline", "--json", names=running)
    assert offline.returncode == 1, offline.stderr.decode()
    data = json.loads(offline.stdout)
    nodes = {n["node"]: n for n in data["nodes"]}
    assert nodes[REQUESTER]["log"] == "failed"
    assert f"changed-record at seq {seq}" in nodes[REQUESTER]["problem"]
    assert nodes[PROVIDER]["log"] == "verified"
    provider = department(data, PROVIDER)
    assert (provider["requested"], provider["granted"], provider["records_published"]) == (2, 2, 3)
    assert provider["resources"] == 2
