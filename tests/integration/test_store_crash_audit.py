"""Custody and its audit records across SIGKILL: both durable together, or neither.

Run as a script, this file is the child: it resumes its audit log from the
store, then accepts batches of envelopes with an audit callback that logs one
record per newly accepted envelope, announcing ``begin R B`` before and
``acked R B`` after each ``accept``:

    python test_store_crash_audit.py DB ROUND [RESEND_ROUND RESEND_BATCH]

The test kills it with SIGKILL a few milliseconds after a chosen ``begin``
(in or around the transaction), restarts it -- re-offering the interrupted
batch, as a previous hop would -- and at the end checks the store:

* the stored records resume into a log (contiguous seqs, unbroken chain);
* the tree's interior nodes (issue 13), stored by the child's tree source in
  the same transactions, are exactly those of the stored records: the child
  restores its log from them at every start (the frontier, O(log n) reads),
  and at the end every stored row equals the one the records give;
* every envelope in custody has exactly one audit record, and every record
  names an envelope in custody: a kill never leaves one without the other,
  and a re-offer that comes back ``duplicate`` logs nothing;
* every acknowledged batch is stored.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":  # the child, run from the repository's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exchnode.audit import (
    AuditLogState,
    decode_record,
    restore_state,
)
from exchnode.core import completed_count
from exchnode.store import AcceptItem, AcceptOutcome, AcceptStatus, AuditRow, SqliteStore
from exchnode.testing import seeded_identity
from tests.audit_entries import envelope_entry
from tests.integration.store_crash_child import BATCH, ME, NOW, SENDER, batch_items, message_id
from tests.integration.test_store_crash import start_round

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 10
ROUND_DEADLINE = 15.0


# --- the child ----------------------------------------------------------------------


def resume(store: SqliteStore) -> AuditLogState:
    stored: list[tuple[int, bytes]] = []
    while page := store.audit_records(len(stored), 10_000):
        stored += page
    return AuditLogState.resume(seeded_identity(ME), stored)


def auditor(
    log: AuditLogState, items: list[AcceptItem]
) -> Callable[[list[AcceptOutcome]], list[AuditRow]]:
    def audit(outcomes: list[AcceptOutcome]) -> list[AuditRow]:
        entries = [
            envelope_entry(
                "envelope.accept", NOW, ME, item.message_id, sender=item.sender, size=len(item.data)
            )
            for item, outcome in zip(items, outcomes, strict=True)
            if outcome.status is AcceptStatus.ACCEPTED
        ]
        return [AuditRow(record.seq, record.data) for record in log.append(entries)]

    return audit


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def child(argv: list[str]) -> None:
    path, round_no = argv[0], int(argv[1])
    store = SqliteStore(path)
    log = restore_state(seeded_identity(ME), store, seal=None, last_head=None, checkpoint=None)
    store.set_audit_tree(log.tree_rows)
    say("ready")
    batches = [(int(argv[2]), int(argv[3]))] if len(argv) == 4 else []
    batch = 0
    while True:
        if not batches:
            batch += 1
            batches.append((round_no, batch))
        r, b = batches.pop()
        items = batch_items(r, b)
        log.settle()  # between transactions, as the audit service does
        say(f"begin {r} {b}")
        outcomes = store.accept(items, NOW, audit=auditor(log, items))
        say(f"acked {r} {b} {' '.join(sorted({o.status.value for o in outcomes}))}")


# --- the test -----------------------------------------------------------------------


def run_child(
    db: Path, round_no: int, resend: tuple[int, int] | None, after: int, delay: float
) -> tuple[set[tuple[int, int]], dict[tuple[int, int], list[str]]]:
    """Kill the child ``delay`` s after its ``after``-th ``begin``.

    Returns the batches begun, and those acknowledged with their outcomes.
    """
    proc, stderr_path = start_round(Path(__file__), db, round_no, resend)
    assert proc.stdout is not None
    said: list[str] = []
    deadline = time.monotonic() + ROUND_DEADLINE
    try:
        while sum(line.startswith("begin") for line in said) < after:
            assert time.monotonic() < deadline, f"round {round_no}: the child stalled"
            raw = proc.stdout.readline()
            assert raw, f"round {round_no}: child exited:\n{stderr_path.read_text()}"
            said.append(raw.decode())
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    said += [raw.decode() for raw in proc.stdout]
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, stderr_path.read_text()
    complete = [line.split() for line in said if line.endswith("\n")]
    begun = {(int(w[1]), int(w[2])) for w in complete if w[0] == "begin"}
    acked = {(int(w[1]), int(w[2])): w[3:] for w in complete if w[0] == "acked"}
    return begun, acked


def test_sigkill_keeps_custody_and_audit_records_together(tmp_path: Path) -> None:
    seed = int(os.environ.get("STORE_CRASH_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    db = tmp_path / "store.db"
    begun: set[tuple[int, int]] = set()
    acked: set[tuple[int, int]] = set()
    resend: tuple[int, int] | None = None
    kills: Counter[str] = Counter()
    for round_no in range(1, ROUNDS + 1):
        after, delay = rng.randint(1, 4), rng.uniform(0.0, 0.005)  # an accept takes ms
        b, a = run_child(db, round_no, resend, after, delay)
        if resend is not None and resend in a:
            # The re-offer says whether the killed accept had committed: all or nothing.
            statuses = a[resend]
            assert statuses in (["duplicate"], ["accepted"]), f"seed {seed}: {statuses}"
            kills[
                "in accept, " + ("had" if statuses == ["duplicate"] else "not") + " committed"
            ] += 1
        begun |= b
        acked |= set(a)
        interrupted = sorted(b - set(a))
        resend = interrupted[-1] if interrupted else None
        kills["in accept" if resend else "between accepts"] += 1

    with SqliteStore(db) as store:
        log = resume(store)  # contiguous and chained, or it raises
        about = Counter(
            decode_record(data).entry.subject.value for _, data in store.audit_records(0, 10**7)
        )
        held = {
            message_id(r, b, i)
            for r, b in begun
            for i in range(BATCH)
            if store.seen(SENDER, message_id(r, b, i)) is not None
        }
        stored_batches = {
            (r, b) for r, b in begun if store.seen(SENDER, message_id(r, b, 0)) is not None
        }
        expected_rows = log.tree_rows(0, log.size)  # the whole tree, from the records
        stored_rows = [
            b"".join(
                store.audit_node(level, ((seq + 1) >> level) - 1) or b"missing"
                for level in range(1, completed_count(seq) + 1)
            )
            for seq in range(1, log.size, 2)
        ]
        due = store.audit_nodes_due()
    context = f"seed {seed}"
    assert stored_rows == expected_rows, f"{context}: the stored tree is not the records'"
    assert due == log.size | 1, f"{context}: tree rows due from {due}, not {log.size | 1}"
    assert log.size == sum(about.values())
    assert not [m for m, n in about.items() if n > 1], f"{context}: an envelope logged twice"
    assert set(about) == held, f"{context}: custody and audit records differ"
    assert acked <= stored_batches, f"{context}: acknowledged but not stored"
    assert len(held) == BATCH * len(stored_batches), f"{context}: a batch partly stored"
    assert stored_batches, "the children did real work"
    print(
        f"{context}: {ROUNDS} kills {dict(kills)}, {len(stored_batches)} batches, "
        f"{log.size} records"
    )


if __name__ == "__main__":
    child(sys.argv[1:])
