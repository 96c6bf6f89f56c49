#!/usr/bin/env python3
"""Issue 13 at national scale: a node's audit log of 1,000,000 records, verified and restarted.

    .venv/bin/python benchmarks/_scale_audit.py [--quick] [--json] [--dir DIR]

A real :class:`~exchnode.store.SqliteStore` (WAL, ``synchronous=FULL``) in a
temporary directory (or ``--dir``) is filled with N audit records (1,000,000;
50,000 with ``--quick``) by the real :class:`~exchnode.audit.AuditLogState`
as the audit service drives it: batches of 1,000 records, each batch one
transaction with its tree rows and its seal (one Ed25519 signature), and a
head signed every 100 records (10,000 heads for 1M records: a node signs one
every ``head_interval`` while its log grows, so months of heads are many).
The builder runs in a child process (its memory is not measured).  Then,
each in a fresh child process:

* **verify**: what ``exchnode node audit verify --offline`` does: the store
  opened read-only, ``verify_log`` over its records read a page at a time
  (``audit.stored_records``), its heads, seal and checkpoint.
* **restart**: what ``AuditService.start`` does with the store: open it (read
  and write), verify as above, derive missing tree rows (none here), restore
  the state from the stored tree (``audit.restore_state``: the frontier,
  checked against the seal and the last head) -- and then one more batch
  appended through the restored state, so the restart is shown to work.
* **restore alone**: only the last two steps (what a restart costs once
  verification is not needed), to show it does not grow with the log.

Each child reports ``ru_maxrss`` of its whole process at the end (the peak
resident memory: interpreter, imports, SQLite's page cache and the work) and
the same right after its imports (the interpreter's baseline), so the log's
own share is the difference; and its wall and CPU time.  The issue measured
the code before it (the whole tree in memory, every record read into a list):
773 MB to verify 1M records and 20 s to restart.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _scale_report import section_main

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test suite's audit entries

FULL = 1_000_000
QUICK = 50_000
BATCH = 1_000  # records per transaction (and per seal)
HEAD_EVERY = 100  # records per signed head: 10,000 heads for 1M records, read as a stream too
NODE = "520102.gongan"
T0 = 1_795_000_000_000
TARGET_MB = 100.0
Row = dict[str, object]


def _peak_mb() -> float:
    """This program's peak resident memory so far, in MB.

    Linux's ``VmHWM`` (the high-water mark of this process image), not
    ``ru_maxrss``: the latter survives ``execve``, so a child started by a
    big parent (``scale.py`` after another section) would report the
    parent's peak as its own.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6


# --- the children -------------------------------------------------------------------


def _build(path: Path, count: int) -> dict[str, Any]:
    from exchnode.audit import AuditLogState, store_nodes
    from exchnode.store import AuditRow, SqliteStore
    from exchnode.testing import seeded_identity
    from tests.audit_entries import envelope_entry

    identity = seeded_identity(NODE)
    started = time.perf_counter()
    with SqliteStore(path) as store:
        log = AuditLogState(identity, nodes=store_nodes(store))
        store.set_audit_tree(log.tree_rows)
        store.set_audit_sealer(lambda size, covered: log.sign_seal(T0 + size, covered).data)
        while log.size < count:
            log.settle()  # between transactions, as the audit service does
            rows, heads = [], []
            for first in range(log.size, min(log.size + BATCH, count), HEAD_EVERY):
                entries = [
                    envelope_entry(
                        "envelope.accept",
                        T0 + seq,
                        "520100",
                        seq.to_bytes(16, "big"),
                        sender="520102.minzheng",
                        size=1024 + seq % 977,
                    )
                    for seq in range(first, min(first + HEAD_EVERY, count))
                ]
                rows += [AuditRow(r.seq, r.data) for r in log.append(entries)]
                heads.append(log.sign_head(T0 + log.size))
            store.append_audit(rows)
            for head in heads:
                store.add_tree_head(head.tree_size, head.data)
        size = store.audit_size()
        head_count = len(store.tree_heads())
    seconds = time.perf_counter() - started
    import sqlite3

    conn = sqlite3.connect(path)
    (records_bytes,) = conn.execute("SELECT sum(length(data)) FROM audit_records").fetchone()
    (node_bytes,) = conn.execute("SELECT sum(length(hashes)) FROM audit_nodes").fetchone()
    conn.close()
    return {
        "records": size,
        "heads": head_count,
        "seconds": seconds,
        "file_mb": path.stat().st_size / 1e6,
        "record_bytes": records_bytes / size,
        "tree_bytes": node_bytes / size,
    }


def _measure(kind: str, path: Path) -> dict[str, Any]:
    from exchnode.audit import (
        TreeHeadVerifier,
        decode_checkpoint,
        decode_tree_head,
        derive_tree_rows,
        read_log_view,
        restore_state,
        stored_heads,
        stored_records,
        verify_log,
    )
    from exchnode.store import SqliteStore
    from exchnode.testing import seeded_directory, seeded_identity

    identity = seeded_identity(NODE)
    directory = seeded_directory(identity)
    baseline = _peak_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {}
    with SqliteStore(path, read_only=kind == "verify") as store:
        view = read_log_view(store)
        if kind in ("verify", "restart"):
            report = verify_log(
                NODE,
                lambda: stored_records(store, view.size),
                lambda: stored_heads(store, view.heads_end),
                directory,
                checkpoint=view.checkpoint,
                seal=view.seal,
                ordered_from=view.ordered_from,
            )
            out.update(ok=report.ok, verified=report.verified_size, records=report.records)
        if kind in ("restart", "restore"):
            checkpoint = (
                None
                if view.checkpoint is None
                else decode_checkpoint(view.checkpoint, TreeHeadVerifier(directory))
            )
            derive_tree_rows(store, checkpoint)
            seal = decode_tree_head(view.seal)[0] if view.seal is not None else None
            last = decode_tree_head(view.last_head)[0] if view.last_head else None
            state = restore_state(identity, store, seal=seal, last_head=last, checkpoint=checkpoint)
            out.update(size=state.size, proof=len(state.consistency_proof(view.size // 3)))
            if kind == "restart":  # and the restored log carries on
                from exchnode.audit import Actor, AuditEntry, Category, Outcome
                from exchnode.store import AuditRow

                store.set_audit_tree(state.tree_rows)
                store.set_audit_sealer(lambda size, c: state.sign_seal(T0 + size, c).data)
                entry = AuditEntry(
                    time_ms=T0 + state.size,
                    category=Category.ADMINISTRATION,
                    action="node.start",
                    actor=Actor.node(NODE),
                    outcome=Outcome.ok(),
                )
                state.settle()
                store.append_audit([AuditRow(r.seq, r.data) for r in state.append([entry])])
                out.update(after=store.audit_size())
    out.update(
        kind=kind,
        wall_s=time.perf_counter() - wall,
        cpu_s=time.process_time() - cpu,
        baseline_mb=baseline,
        peak_mb=_peak_mb(),
    )
    return out


def _child(*args: str) -> dict[str, Any]:
    """Run this file as a child with ``args``; its result is the JSON on its last line."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the section --------------------------------------------------------------------


def section(quick: bool, directory: str | None = None) -> list[Row]:
    count = QUICK if quick else FULL
    size = f"{count:,} records, {count // HEAD_EVERY:,} heads"
    with tempfile.TemporaryDirectory(dir=directory, prefix="scale-audit-") as tmp:
        path = Path(tmp) / "store.db"
        built = _child("build", str(path), str(count))
        if (built["records"], built["heads"]) != (count, count // HEAD_EVERY):
            raise RuntimeError(f"built {built['records']} records and {built['heads']} heads")
        results = {kind: _child(kind, str(path)) for kind in ("verify", "restart", "restore")}
    for kind in ("verify", "restart"):
        if not results[kind]["ok"] or results[kind]["verified"] != count:
            raise RuntimeError(f"{kind}: the log did not verify: {results[kind]}")
    if results["restart"]["after"] != count + 1:
        raise RuntimeError(f"restart: the restored log did not carry on: {results['restart']}")

    def memory(kind: str, what: str, before: str) -> list[Row]:
        peak = round(results[kind]["peak_mb"], 1)
        return [
            {
                "figure": f"{what}, {size}: peak RSS of the process",
                "value": peak,
                "unit": "MB",
                "target": f"< {TARGET_MB:.0f} MB" if not quick else f"< {TARGET_MB:.0f} MB (1M)",
                "before": before,
                "met": peak < TARGET_MB if not quick else None,
            },
            {
                "figure": f"{what}: of which interpreter and imports (baseline)",
                "value": round(results[kind]["baseline_mb"], 1),
                "unit": "MB",
                "target": "-",
                "before": "-",
                "met": None,
            },
        ]

    def timing(kind: str, what: str, before: str, unit: str = "s") -> list[Row]:
        scale = 1000.0 if unit == "ms" else 1.0
        return [
            {
                "figure": f"{what}, {size}: wall time",
                "value": round(results[kind]["wall_s"] * scale, 2),
                "unit": unit,
                "target": "-",
                "before": before,
                "met": None,
            },
            {
                "figure": f"{what}: CPU time",
                "value": round(results[kind]["cpu_s"] * scale, 2),
                "unit": unit,
                "target": "-",
                "before": "-",
                "met": None,
            },
        ]

    return [
        *memory("verify", "verify (offline)", "773 MB"),
        *timing("verify", "verify (offline)", "-"),
        *memory("restart", "restart (verify + restore)", ">= 773 MB"),
        *timing("restart", "restart (verify + restore)", "20 s"),
        *memory("restore", "restore alone (no verification)", "-"),
        *timing("restore", "restore alone (no verification)", "-", unit="ms"),
        {
            "figure": f"store file, {size}",
            "value": round(built["file_mb"], 1),
            "unit": "MB",
            "target": "-",
            "before": "-",
            "met": None,
        },
        {
            "figure": "tree rows per record on disk (hashes; a record is "
            f"{built['record_bytes']:.0f} B)",
            "value": round(built["tree_bytes"], 1),
            "unit": "B",
            "target": "-",
            "before": "0 (tree in RAM: 147 B)",
            "met": None,
        },
        {
            "figure": f"build (child, not measured above), {size}",
            "value": round(built["seconds"], 1),
            "unit": "s",
            "target": "-",
            "before": "-",
            "met": None,
        },
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        kind, path = argv[1], Path(argv[2])
        result = _build(path, int(argv[3])) if kind == "build" else _measure(kind, path)
        print(json.dumps(result))
        return 0

    def where(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dir", help="where to build the store (default: a temporary one)")

    return section_main(
        "scale_audit",
        __doc__ or "",
        lambda args: section(args.quick, args.dir),
        argv,
        quick_help=f"{QUICK:,} records, not {FULL:,}",
        configure=where,
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
