"""Writes provider.state and requester.state with the code of commit 8c13651 (one value each).

Run against that commit's tree, never this one's (which no longer writes the whole value):

    git archive 8c13651 exchnode | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/integration/test_sharing_rows_data/generate.py

The provider granted the requester (unconditional), published record 1 (delivered: the
requester's tracker saw it), then records 2 and 3, which were still in its outbox when it
stopped; the requester reported record 1 as wrong and the provider holds that report open.
"""

from __future__ import annotations

import hashlib
import itertools
import sys
from pathlib import Path

from exchnode.aio._sharing_state import Send, SharingState  # type: ignore[attr-defined]
from exchnode.core import AuditEvent
from exchnode.sharing import (
    AtRestCipher,
    CorrectionDesk,
    CorrectionTracker,
    GapTracker,
    ResourceTerms,
    ShareType,
    SubscriberView,
    SubscriptionBook,
    group_deliveries,
)

PROVIDER = "522301.minzheng"
REQUESTER = "520102.gongan"
CODE = "101001/000001"
AT = 1_795_000_000_000
ITEMS = frozenset({"身份证号", "姓名", "出生日期", "Household_Size"})
TERMS = ResourceTerms(
    code=CODE, provider=PROVIDER, share_type=ShareType.UNCONDITIONAL, conditions="", items=ITEMS
)
RECORDS = [
    {"身份证号": "52010219900101123X", "姓名": f"迁移测试{n}", "出生日期": "1990-01-01"}
    for n in (1, 2, 3)
]


class Sink:
    def emit(self, event: AuditEvent) -> None:
        pass


def seeded(name: str):  # type: ignore[no-untyped-def]
    counter = itertools.count()
    return lambda n: hashlib.sha256(f"{name} {next(counter)}".encode()).digest()[:n]


def secret(name: str) -> bytes:
    return name.encode().ljust(32, b"k")  # as tests/integration/test_sharing.py


def main(out: Path) -> None:
    sink = Sink()
    view = SubscriberView(REQUESTER, sink=sink, random=seeded(REQUESTER))
    [asked] = view.request(
        TERMS,
        purpose="迁移 migration",
        scope="s",
        items=["姓名", "出生日期"],
        operator="o",
        now_ms=AT,
    )
    book = SubscriptionBook(PROVIDER, {CODE: TERMS}.get, sink=sink, masking_secret=secret(PROVIDER))
    [answer] = book.on_request(asked.message, sender=REQUESTER, now_ms=AT)
    view.on_decision(answer.message, sender=PROVIDER, now_ms=AT)
    book.publish(CODE, RECORDS[0], AT + 1)
    tracker = GapTracker(0)
    tracker.observe(1)
    unsent = group_deliveries(book.publish_many(CODE, RECORDS[1:], AT + 2))
    reporter = CorrectionTracker(REQUESTER, sink=sink, random=seeded("corrections"))
    [report] = reporter.report(
        provider=PROVIDER,
        resource_code=CODE,
        seq=1,
        items=["姓名"],
        text="t",
        operator="o",
        now_ms=AT + 3,
    )
    desk = CorrectionDesk(PROVIDER, sink=sink)
    desk.on_correction(report.message, sender=REQUESTER, now_ms=AT + 3)  # type: ignore[arg-type]
    provider = SharingState(
        book=book,
        view=SubscriberView(PROVIDER, sink=sink, random=seeded(PROVIDER)),
        corrections_in=desk,
        corrections_out=CorrectionTracker(PROVIDER, sink=sink, random=seeded("p")),
        requests={asked.message.request_id: asked.message},  # type: ignore[attr-defined]
        outbox=[Send(g.recipients, g.kind, g.payload) for g in unsent],
    )
    requester = SharingState(
        book=SubscriptionBook(REQUESTER, {}.get, sink=sink, masking_secret=secret(REQUESTER)),
        view=view,
        corrections_in=CorrectionDesk(REQUESTER, sink=sink),
        corrections_out=reporter,
        trackers={(PROVIDER, CODE): tracker},
    )
    (out / "provider.state").write_bytes(provider.encode(AtRestCipher(secret(PROVIDER))))
    (out / "requester.state").write_bytes(requester.encode(AtRestCipher(secret(REQUESTER))))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
