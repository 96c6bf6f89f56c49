"""The process tests/integration/test_store_crash.py kills: a relay loop over a SqliteStore.

    python store_crash_child.py DB ROUND [RESEND_ROUND RESEND_BATCH]

It opens the store, prints ``ready``, re-offers one batch if told to (what a
previous hop does when its batch was never acknowledged), then loops:

* ``begin R B`` -- about to accept batch B of round R;
  ``acked R B <statuses>`` -- accept() returned: custody may be acknowledged;
* ``fwd T…`` / ``fwd-ok`` -- about to call / returned from forwarded() on hop A
  for the entries named T (tokens ``R.B.I``);
* ``dlv T…`` / ``dlv-ok`` -- the same for delivered() on the inbox.

Every line is flushed before the next store call, so a line the parent
reads in full is a promise about what happened before it.  The parent
shares ``batch_items``, ``locations`` and ``token`` with this script.
"""

from __future__ import annotations

import struct
import sys

from exchnode.store import AcceptItem, SqliteStore

NOW = 1_795_000_000_000
EXPIRES = NOW + 86_400_000
SENDER = "520102.gongan"
ME = "520100"
HOP_A, HOP_B = "520000", "520103"
BATCH = 100
SIZE = 1024


def message_id(round_no: int, batch: int, index: int) -> bytes:
    return struct.pack(">IIQ", round_no, batch, index)


def token(mid: bytes) -> str:
    round_no, batch, index = struct.unpack(">IIQ", mid)
    return f"{round_no}.{batch}.{index}"


def locations(index: int) -> dict[str, tuple[str, ...]]:
    """Where item ``index`` of a batch is stored: 'inbox' or a next hop → its targets."""
    if index % 3 == 0:
        return {"inbox": (ME,)}
    if index % 3 == 1:
        return {HOP_A: (f"{HOP_A}.fagai",)}
    return {"inbox": (ME,), HOP_A: (f"{HOP_A}.fagai",), HOP_B: (f"{HOP_B}.minzheng",)}


def batch_items(round_no: int, batch: int) -> list[AcceptItem]:
    items = []
    for index in range(BATCH):
        mid = message_id(round_no, batch, index)
        where = locations(index)
        items.append(
            AcceptItem(
                sender=SENDER,
                message_id=mid,
                digest=(mid * 2),
                data=(mid * (SIZE // 16)),
                expires_ms=EXPIRES,
                local=where.get("inbox", ()),
                forward={hop: ts for hop, ts in where.items() if hop != "inbox"},
            )
        )
    return items


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def offer(store: SqliteStore, round_no: int, batch: int) -> None:
    say(f"begin {round_no} {batch}")
    outcomes = store.accept(batch_items(round_no, batch), NOW)
    say(f"acked {round_no} {batch} {' '.join(sorted({o.status.value for o in outcomes}))}")


def main(argv: list[str]) -> None:
    path, round_no = argv[0], int(argv[1])
    store = SqliteStore(path)
    say("ready")
    if len(argv) == 4:
        offer(store, int(argv[2]), int(argv[3]))
    batch = 0
    while True:
        batch += 1
        offer(store, round_no, batch)
        out = store.pending(HOP_A, NOW, 150, 1 << 30)
        say("fwd " + " ".join(token(e.message_id) for e in out))
        store.forwarded(HOP_A, [e.seq for e in out])
        say("fwd-ok")
        inbox = store.inbox(NOW, 100)
        say("dlv " + " ".join(token(e.message_id) for e in inbox))
        store.delivered([e.seq for e in inbox])
        say("dlv-ok")


if __name__ == "__main__":
    main(sys.argv[1:])
