"""Issue 12 on real daemons: a child's audit history erased or forged through its store file.

A county hub and one department, ``node init`` folders, ``exchnode.node run``
processes.  The department is stopped and its store edited with ``sqlite3``,
the store's triggers in place and without its key: records forged after its
last head, a rollback to an older copy of the file, a checkpoint computed from
the stored records with everything below it deleted.  Each time ``audit verify
--offline`` names what was done (the rollback only against the heads its
parent witnessed: ``--parent``), the daemon refuses to start, and the hub,
whose child no longer answers, judges it ``silent`` after
``witness_silent_rounds`` rounds (``audit witnessed`` exits 1) -- until the
child is back on an intact store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from exchnode.audit import (
    AuditRecord,
    decode_record,
    decode_tree_head,
)
from exchnode.audit._records import encode_record
from exchnode.core import leaf_hash
from tests.integration.daemons import DaemonFederation, node_cli
from tests.integration.test_audit_tampering import checkpoint_from_records
from tests.integration.test_daemon_catalog import ok_json, one_line_error

pytestmark = pytest.mark.timeout(240)

HUB, CHILD = "520102", "520102.gongan"
ROUNDS = 3


def audit(fed: DaemonFederation, name: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
    verb, *rest = argv
    result: subprocess.CompletedProcess[bytes] = node_cli(
        "audit", verb, "--config", str(fed.config_path(name)), *rest, timeout=90
    )
    return result


def witnessed(fed: DaemonFederation) -> tuple[int, dict[str, Any]]:
    """``audit witnessed --json`` at the hub: its exit status and the child's entry."""
    shown = audit(fed, HUB, "witnessed", "--json")
    (child,) = json.loads(shown.stdout)
    return shown.returncode, child


def wait_verdict(fed: DaemonFederation, verdict: str, *, above: int = 0) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        status, child = witnessed(fed)
        if child["verdict"] == verdict and child["kept_size"] > above:
            assert status == (0 if child["verdict_ok"] else 1), child
            return child
        assert time.monotonic() < deadline, child
        time.sleep(0.2)


def refused_start(fed: DaemonFederation, finding: str) -> None:
    fed.start(CHILD)
    assert fed.processes[CHILD].wait(60) == 1
    fed.processes.pop(CHILD)
    last = fed.log_path(CHILD).read_text().splitlines()[-1]
    assert last.startswith("python -m exchnode.node: error: the audit log in "), last
    assert "is inconsistent" in last, last
    assert finding in last, last


def put(store: Path, data: bytes) -> None:
    """Replace the store file with a copy (what anyone with write access can do)."""
    for side in ("-wal", "-shm"):
        store.with_name(store.name + side).unlink(missing_ok=True)
    store.write_bytes(data)


def findings(fed: DaemonFederation, *argv: str) -> list[tuple[str, Any]]:
    result = audit(fed, CHILD, "verify", "--offline", "--json", *argv)
    assert result.returncode == 1, result.stderr.decode()
    report = json.loads(result.stdout)
    assert report["ok"] is False
    return [(f["kind"], f.get("range")) for f in report["findings"]]


def test_erased_or_forged_history_is_found_refused_and_flagged_by_the_parent(
    tmp_path: Path,
) -> None:
    fed = DaemonFederation(tmp_path, [HUB, CHILD])
    hub_config = fed.config_path(HUB)
    text = hub_config.read_text("utf-8")
    assert "# witness_silent_rounds = 5" in text  # the scaffold documents the key
    hub_config.write_text(
        text.replace("# witness_interval = 60.0", "witness_interval = 0.5").replace(
            "# witness_silent_rounds = 5", f"witness_silent_rounds = {ROUNDS}"
        )
    )
    store = fed.config(CHILD).store_path
    try:
        fed.start(HUB, CHILD)
        fed.wait_ready(HUB, CHILD)
        first = wait_verdict(fed, "first-head")
        assert first["kept_head"]
        # The child's log, checked against the head its parent keeps of it.
        against = ok_json(audit(fed, CHILD, "verify", "--parent", str(fed.folder(HUB)), "--json"))
        assert against["ok"] is True
        assert fed.stop(CHILD) == 0
        pristine = store.read_bytes()

        # 1. Records forged after the last head: appended as the node would, times going back.
        with contextlib.closing(sqlite3.connect(store)) as db, db:
            rows = db.execute("SELECT seq, data FROM audit_records ORDER BY seq").fetchall()
            seq, last = rows[-1][0], decode_record(rows[-1][1])
            prev = leaf_hash(rows[-1][1])
            for i in (1, 2):
                entry = dataclasses.replace(
                    last.entry, action="catalog.publish", time_ms=last.entry.time_ms - 3_600_000
                )
                data = encode_record(AuditRecord(seq=seq + i, node=CHILD, prev=prev, entry=entry))
                db.execute("INSERT INTO audit_records (seq, data) VALUES (?, ?)", (seq + i, data))
                prev = leaf_hash(data)
        assert findings(fed) == [
            ("time-went-back", [seq + 1, seq + 2]),
            ("unsigned-records", [seq + 1, seq + 3]),
        ]
        refused_start(fed, "unsigned-records")
        silent = wait_verdict(fed, "silent")  # no head signed over the forgery, ever
        assert silent["verdict_ok"] is False
        assert silent["kept_size"] == first["kept_size"]
        table = audit(fed, HUB, "witnessed")
        assert table.returncode == 1
        assert "silent !" in table.stdout.decode()

        # 2. The intact file back: the child answers again, the hub moves on from silent.
        put(store, pristine)
        fed.start(CHILD)
        fed.wait_ready(CHILD)
        back = wait_verdict(fed, "consistent", above=first["kept_size"])
        assert audit(fed, HUB, "witnessed").returncode == 0
        assert fed.stop(CHILD) == 0
        latest = store.read_bytes()

        # 3. Rolled back to the older copy: alone it verifies; the parent's heads show it.
        put(store, pristine)
        alone = ok_json(audit(fed, CHILD, "verify", "--offline", "--json"))
        assert alone["ok"] is True
        kept = back["kept_size"]
        [(kind, seqs)] = findings(fed, "--parent", str(fed.folder(HUB)))
        assert kind == "truncated"
        assert seqs[1] >= kept
        saved = tmp_path / "witnessed.json"
        saved.write_bytes(audit(fed, HUB, "witnessed", "--json").stdout)
        assert findings(fed, "--witnessed", str(saved))[0][0] == "truncated"

        # 4. A checkpoint computed from the stored records, everything below it deleted.
        put(store, latest)
        with contextlib.closing(sqlite3.connect(store)) as db, db:
            records = db.execute("SELECT seq, data FROM audit_records ORDER BY seq").fetchall()
            (head_data,) = db.execute(
                "SELECT data FROM audit_heads ORDER BY position DESC LIMIT 1"
            ).fetchone()
            size = decode_tree_head(head_data)[0].tree_size
            checkpoint = checkpoint_from_records([(q, bytes(d)) for q, d in records], head_data)
            db.execute(
                "INSERT INTO audit_checkpoint (id, size, data) VALUES (1, ?, ?)",
                (size, checkpoint),
            )
            db.execute("DELETE FROM audit_records WHERE seq < ?", (size,))
            db.execute("DELETE FROM audit_heads WHERE tree_size < ?", (size,))
        assert findings(fed) == [("unsigned-checkpoint", [0, size])]
        refused_start(fed, "unsigned-checkpoint")
        wait_verdict(fed, "silent", above=first["kept_size"])
        # The oversight report does not drop the erased activity silently: the node failed.
        report = node_cli(
            "audit", "report", "--node", str(fed.folder(CHILD)), "--offline", "--json", timeout=90
        )
        assert report.returncode == 1, report.stderr.decode()
        (node,) = json.loads(report.stdout)["nodes"]
        assert node["log"] == "failed", node
        assert "unsigned-checkpoint" in node["problem"], node
    finally:
        fed.kill_all()


def test_offline_verify_refuses_an_empty_or_foreign_store_file_and_writes_nothing(
    tmp_path: Path,
) -> None:
    fed = DaemonFederation(tmp_path, [HUB])
    store = fed.config(HUB).store_path
    store.parent.mkdir(parents=True, exist_ok=True)
    store.touch()
    error = one_line_error(audit(fed, HUB, "verify", "--offline"))
    assert "is empty: not an exchnode store" in error, error
    assert store.stat().st_size == 0  # no schema was written into it
    assert sorted(p.name for p in store.parent.iterdir() if p.name.startswith(store.name)) == [
        store.name
    ]
    one_line_error(audit(fed, HUB, "records", "--offline"))
    assert store.stat().st_size == 0
    with contextlib.closing(sqlite3.connect(store)) as db, db:
        db.execute("CREATE TABLE notes (text)")
    before = store.read_bytes()
    assert "is not an exchnode store" in one_line_error(audit(fed, HUB, "verify", "--offline"))
    assert store.read_bytes() == before
