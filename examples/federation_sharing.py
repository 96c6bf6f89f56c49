"""The catalog and a subscription: step 5 of the federation demo (``federation.py``).

What it shows, through the same operator APIs the departments use for messages,
and why each part is there:

- Catalog publication and convergence.  Departments at three levels publish
  entries (a county's 人口基本信息, conditional; a city's 企业登记信息,
  unconditional; a county's 门诊病历信息, not shared, with its legal basis; a
  province's indicator set), and the demo waits until every department's node
  lists all of them: the catalog reaches everyone by anti-entropy over the
  hierarchy, not by a central register.
- A conditional subscription approved with fewer items and a mask.  A county
  department of the other city asks for three population items; the
  provider's operator grants two, the id number masked (keep 6 + 4): the
  provider, not the requester, decides what leaves.
- A not-shared refusal.  The province's request for the health records is
  refused with the catalog's legal basis as the reason.
- An unconditional grant.  A city's request for the enterprise library is
  granted on arrival, without an operator.
- Records counted exactly once.  The provider publishes ``--records`` records
  (200 by default) in four batches; the subscriber takes them off its operator
  inbox and each is judged by its number against what the grant lets through,
  as computed here: delivered, lost, duplicated, corrupted, unmasked and
  ungranted items are counted, never inferred from what a node answered.
- Nothing after revocation.  The provider revokes the grant and publishes 20
  more; once every node on the path has handed over what it held, none of them
  may have arrived.

Imported by ``federation.py``, which runs with its own folder on ``sys.path``
(``node/`` is a package of the source tree, not installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

from federation_support import DEPARTMENTS, LEVEL_NAMES, hubs_between, log, print_rows, progress

from exchnode.core import NodeName
from exchnode.node.client import OperatorClient

POPULATION = ("520102.gongan", "101001/000001")  # a county's public security: conditional
ENTERPRISES = ("520100.fagai", "102001/000001")  # a city's legal-person library: unconditional
CASE_FILES = ("520303.weijian", "201001/000001")  # a county's health records: not shared
SUBSCRIBER = "520302.shebao"  # a county department of the other city (Zunyi)
OPEN_REQUESTER = "520300.jiaotong"  # a city department of the other city asks ENTERPRISES
REFUSED_REQUESTER = "520000.tongji"  # the province asks CASE_FILES
ID_ITEM = "身份证号"
ASKED = ["身份证号", "姓名", "出生日期"]  # a subset of the resource's four items
GRANTED = ["身份证号", "姓名"]  # the provider grants fewer than asked ...
MASKS: dict[str, dict[str, Any]] = {
    ID_ITEM: {"rule": "keep", "first": 6, "last": 4}
}  # ... and masks the id number
LEGAL_BASIS = (
    "《中华人民共和国基本医疗卫生与健康促进法》第九十二条、《医疗机构病历管理规定》：病历资料属个人隐私，"
    "不得向诊疗以外的机构提供"
)
RECORD_BATCHES = 4
AFTER_REVOCATION = 20  # records published after the revocation: none may arrive


def catalog_entries() -> dict[str, list[dict[str, Any]]]:
    """What each department publishes (the guide's core fields; node/README.md §6)."""

    def item(name: str, kind: str, description: str = "") -> dict[str, str]:
        return {"name": name, "type": kind, "description": description}

    common = {"format": "database", "publish_date": "2026-01-05", "openness": "not_open"}
    return {
        POPULATION[0]: [
            {
                **common,
                "code": POPULATION[1],
                "name": "人口基本信息",
                "provider_code": "11520102MB1734215K",
                "summary": "南明区户籍人口的基本信息，由户籍登记产生，每日更新",
                "data_items": [
                    item("身份证号", "C", "公民身份号码（18位）"),
                    item("姓名", "C"),
                    item("出生日期", "D"),
                    item("住址", "C", "户籍登记住址"),
                ],
                "share_type": "conditional",
                "share_conditions": "仅限政务部门依法履职使用，须说明用途和范围，不得向第三方提供",
                "share_methods": ["subscription_push", "query_interface"],
                "update_cycle": "daily",
            }
        ],
        ENTERPRISES[0]: [
            {
                **common,
                "code": ENTERPRISES[1],
                "name": "企业登记信息",
                "provider_code": "11520100MB1698307Q",
                "summary": "贵阳市法人单位基础信息库：企业设立、变更、注销登记信息",
                "data_items": [
                    item("统一社会信用代码", "C"),
                    item("企业名称", "C"),
                    item("法定代表人", "C"),
                    item("注册资本", "Y", "万元"),
                    item("成立日期", "D"),
                ],
                "share_type": "unconditional",
                "share_methods": ["subscription_push", "file_transfer"],
                "openness": "open",
                "update_cycle": "daily",
            }
        ],
        CASE_FILES[0]: [
            {
                **common,
                "code": CASE_FILES[1],
                "name": "门诊病历信息",
                "provider_code": "11520303MB0215546R",
                "summary": "汇川区医疗机构门诊病历首页及诊疗记录",
                "data_items": [
                    item("身份证号", "C"),
                    item("就诊日期", "D"),
                    item("诊断", "M"),
                ],
                "share_type": "not_shared",
                "share_conditions": LEGAL_BASIS,
                "share_methods": [],
                "update_cycle": "real_time",
            }
        ],
        "520000.tongji": [
            {
                **common,
                "code": "104001/000001",
                "name": "全省国民经济主要指标",
                "provider_code": "11520000009390216T",
                "summary": "地区生产总值、固定资产投资、社会消费品零售总额等月度指标",
                "data_items": [
                    item("指标名称", "C"),
                    item("统计期", "C", "YYYY-MM"),
                    item("数值", "F"),
                    item("计量单位", "C"),
                ],
                "share_type": "unconditional",
                "share_methods": ["subscription_push", "query_interface"],
                "openness": "open",
                "update_cycle": "monthly",
            }
        ],
    }


async def until(
    check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0, pause: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something true; RuntimeError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(pause)


async def publish_catalog(clients: dict[str, OperatorClient]) -> dict[str, Any]:
    """Every provider publishes; then wait until every department's node finds every entry."""
    started = time.perf_counter()
    published: set[tuple[str, str, int]] = set()
    for provider, entries in catalog_entries().items():
        records = await clients[provider].catalog_publish(entries, operator="目录管理员")
        published |= {(r["provider"], r["code"], r["version"]) for r in records}

    async def converged() -> bool:
        for name in DEPARTMENTS:
            held = await clients[name].catalog_search(beyond="1")  # asked up the tree
            if not published <= {(r["provider"], r["code"], r["version"]) for r in held}:
                return False
        return True

    await until(converged, f"the {len(published)} catalog entries at every department")
    seconds = time.perf_counter() - started
    by_level = Counter(NodeName.parse(p).level for p, _, _ in published)
    levels = {LEVEL_NAMES[level]: n for level, n in sorted(by_level.items())}
    log(
        f"catalog: {len(published)} entries published "
        f"({', '.join(f'{n} {level}' for level, n in levels.items())}), "
        f"listed by all {len(DEPARTMENTS)} departments after {seconds:.2f} s"
    )
    return {"entries": len(published), "levels": levels, "seconds": seconds}


async def request_state(client: OperatorClient, request_id: str, *states: str) -> dict[str, Any]:
    """The requester's view of one of its requests, once it is in one of ``states``."""

    async def reached() -> dict[str, Any] | None:
        item = await client.sub_show(request_id)
        return item if item["state"] in states else None

    return dict(await until(reached, f"request {request_id[:8]}… {'/'.join(states)}"))


async def subscribe(clients: dict[str, OperatorClient]) -> dict[str, Any]:
    """Three requests across levels and cities: conditional, not shared, unconditional."""
    provider, code = POPULATION
    asked = await clients[SUBSCRIBER].sub_request(
        provider,
        code,
        purpose="社会保险参保登记身份核验",
        scope="红花岗区本年度新增参保人员",
        items=ASKED,
        operator="李娜",
    )
    conditional_id = asked["request_id"]
    refused_id = (
        await clients[REFUSED_REQUESTER].sub_request(
            *CASE_FILES,
            purpose="全省卫生健康统计分析",
            scope="全省门诊数据",
            items=["诊断"],
            operator="赵统计",
        )
    )["request_id"]
    open_id = (
        await clients[OPEN_REQUESTER].sub_request(
            *ENTERPRISES,
            purpose="道路运输经营许可审核",
            scope="遵义市申请道路运输经营的企业",
            items=["统一社会信用代码", "企业名称", "法定代表人"],
            operator="陈交通",
        )
    )["request_id"]

    # The provider's operator sees the conditional request and answers it: fewer items, masked.
    async def pending() -> bool:
        incoming = await clients[provider].sub_list(incoming=True, state="pending")
        return any(r["request_id"] == conditional_id for r in incoming)

    await until(pending, "the conditional request at its provider")
    await clients[provider].sub_decide(
        "incoming",
        conditional_id,
        "approve",
        {"operator": "王建国", "items": GRANTED, "masks": MASKS},
    )
    conditional = await request_state(clients[SUBSCRIBER], conditional_id, "granted")
    refused = await request_state(clients[REFUSED_REQUESTER], refused_id, "not_shared", "refused")
    unconditional = await request_state(clients[OPEN_REQUESTER], open_id, "granted")
    grant = conditional["grant"]
    log(
        f"subscription: {SUBSCRIBER} asked {provider} for {code} ({'、'.join(ASKED)}); "
        f"granted {'、'.join(i for i in ASKED if i in grant['items'])}, {ID_ITEM} masked; "
        f"not-shared request {refused['state']} (legal basis given); "
        f"unconditional request {unconditional['state']}"
    )
    return {
        "conditional_id": conditional_id,
        "states": {
            "conditional": conditional["state"],
            "not_shared": refused["state"],
            "unconditional": unconditional["state"],
        },
        "items_asked": ASKED,
        "items_granted": [item for item in ASKED if item in grant["items"]],
        "masks": grant["masks"],
        "refusal_reason": refused["reason"],
    }


def person(seq: int) -> dict[str, Any]:
    """A synthetic resident of Nanming district, with a valid GB 11643 id number."""
    surnames, given = "王李张刘陈杨黄赵吴周", "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚"
    born = date(1950, 1, 1) + timedelta(days=(seq * 7919) % 20000)
    body = f"520102{born:%Y%m%d}{seq % 1000:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return {
        "身份证号": body + check,
        "姓名": surnames[seq % 10] + given[(seq * 7) % 20] + given[(seq * 3) % 20][: seq % 2],
        "出生日期": born.isoformat(),
        "住址": f"贵州省贵阳市南明区花果园街道{seq % 97 + 1}号",
    }


def masked(record: dict[str, Any]) -> dict[str, Any]:
    """What the grant lets through: the granted items, the id number kept 6 + 4."""
    out = {item: record[item] for item in GRANTED}
    first, last = MASKS[ID_ITEM]["first"], MASKS[ID_ITEM]["last"]
    text = out[ID_ITEM]
    out[ID_ITEM] = text[:first] + "*" * (len(text) - first - last) + text[len(text) - last :]
    return out


def shows_masked_digits(value: object) -> bool:
    """Whether an id number shows any character the grant's mask hides (its middle)."""
    if not isinstance(value, str):
        return value is not None
    first: int = MASKS[ID_ITEM]["first"]
    last: int = MASKS[ID_ITEM]["last"]
    return value[first : len(value) - last] != "*" * max(len(value) - first - last, 0)


@dataclass
class RecordLedger:
    """Records published, and what the subscriber's operator inbox handed over, by number.

    As the message ledger: arrivals are recorded as they come and judged at
    the end; delivered, lost, duplicated and unmasked are counted, never
    inferred from what the provider's node answered.
    """

    raw: dict[int, dict[str, Any]] = field(default_factory=dict)
    expected: dict[int, dict[str, Any]] = field(default_factory=dict)
    arrivals: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    after_revocation: set[int] = field(default_factory=set)  # numbers published after it
    counts: Counter[str] = field(default_factory=Counter)
    revoked: bool = False  # the subscriber's node saw the revocation
    settled: bool = False  # every node on the path had handed over what it held

    def arrive(self, received: dict[str, Any]) -> None:
        """One ``sub.records`` delivery as the subscriber's node read it: ``records`` (new),
        ``repeated`` (dropped by the node as repeats), ``refused`` (under no live grant)."""
        late = self.after_revocation
        for record in received["records"]:
            self.arrivals.setdefault(record["seq"], []).append(record["fields"])
        numbers = [r["seq"] for r in received["records"]]
        numbers += received["repeated"] + received["refused"]
        self.counts["after_revocation"] += sum(1 for seq in numbers if seq in late)
        self.counts["repeats_dropped"] += sum(1 for seq in received["repeated"] if seq not in late)
        self.counts["refused"] += sum(1 for seq in received["refused"] if seq not in late)

    def sample(self) -> dict[str, Any] | None:
        """The first record published under the grant, as it arrived."""
        first = min(self.expected, default=None)
        return self.arrivals.get(first, [None])[0] if first is not None else None

    def judge(self) -> None:
        """delivered: first arrival is what the grant lets through; every further arrival is a
        duplicate; anything else is corrupted; each arrival showing a digit the mask hides, or an
        item not granted, counts as unmasked / ungranted; lost: published under the grant, never
        delivered."""
        for seq, seen in self.arrivals.items():
            if seq in self.after_revocation:
                continue
            if self.expected.get(seq) == seen[0]:
                self.counts["delivered"] += 1
            else:
                self.counts["corrupted"] += 1
            self.counts["duplicated"] += len(seen) - 1
            for fields in seen:
                self.counts["unmasked"] += shows_masked_digits(fields.get(ID_ITEM))
                self.counts["ungranted_items"] += bool(set(fields) - set(GRANTED))
        self.counts["lost"] = sum(
            1 for seq, want in self.expected.items() if self.arrivals.get(seq, [None])[0] != want
        )


class MessageLedger(Protocol):
    """Where an application message that turns up among the records goes (the demo's
    message ledger, ``federation.Ledger``), so that it is judged with the other messages."""

    def arrive(self, receiver: str, sender: str, message_id: str, payload: bytes) -> None: ...


async def take_records(
    client: OperatorClient, records: RecordLedger, ledger: MessageLedger, wait: float
) -> int:
    """One poll of the subscriber's operator inbox; every delivery counted, then acked."""
    batch = await client.receive(limit=64, wait=wait)
    for item in batch:
        if item.records is not None:
            records.arrive(item.records)
        elif item.records_error is not None:
            records.counts["unreadable"] += 1
        else:  # a late application message: the message ledger judges it
            ledger.arrive(SUBSCRIBER, item.sender, item.message_id, item.payload)
    if batch:
        await client.ack(item.id for item in batch)
    return len(batch)


async def serve_records(
    clients: dict[str, OperatorClient], count: int, request_id: str, ledger: MessageLedger
) -> RecordLedger:
    """Publish ``count`` records in a few batches, take them off the subscriber's inbox,
    revoke, publish more, and see that none of those arrive."""
    provider, code = POPULATION
    subscriber = clients[SUBSCRIBER]
    records = RecordLedger()
    size = -(-count // RECORD_BATCHES)

    async def publish(batch: list[dict[str, Any]], *, granted: bool = True) -> dict[str, Any]:
        answer: dict[str, Any] = await clients[provider].sub_publish(code, batch, operator="王建国")
        numbers = range(answer["first_seq"], answer["last_seq"] + 1)
        for seq, record in zip(numbers, batch, strict=True):
            records.raw[seq] = record
            if granted:
                records.expected[seq] = masked(record)
            else:
                records.after_revocation.add(seq)
        if granted:
            records.counts["published"] += len(batch)
            records.counts["subscribers"] = max(
                records.counts["subscribers"], answer["subscribers"]
            )
        return answer

    async def receive_until_complete(deadline: float) -> None:
        quiet_after_done = 0
        while time.monotonic() < deadline:
            done = records.counts["published"] == count and set(records.expected) <= set(
                records.arrivals
            )
            if done and quiet_after_done:
                return
            if not await take_records(subscriber, records, ledger, 0.3 if done else 1.0):
                quiet_after_done += done

    async with progress(
        lambda: (
            f"records published {records.counts['published']:>4}/{count}"
            f"   received {len(records.arrivals):>4}/{count}"
        )
    ):
        receiver = asyncio.create_task(receive_until_complete(time.monotonic() + 30))
        for start in range(0, count, size):
            await publish([person(seq) for seq in range(start + 1, min(start + size, count) + 1)])
        await receiver

    # Revoked: the subscriber's node learns it; what is published afterwards must not arrive.
    await clients[provider].sub_decide(
        "incoming", request_id, "revoke", {"operator": "王建国", "reason": "核验工作已结束"}
    )
    records.revoked = (await request_state(subscriber, request_id, "revoked"))["state"] == "revoked"
    late = [person(seq) for seq in range(count + 1, count + AFTER_REVOCATION + 1)]
    answer = await publish(late, granted=False)
    records.counts["after_revocation_subscribers"] = answer["subscribers"]
    # Bounded settle: every node on the path has handed over what it held, then a last look.
    path = [provider, *hubs_between(provider, SUBSCRIBER)]

    async def path_empty() -> bool:
        for name in path:
            if (await clients[name].health())[1]["queued"]["count"]:
                return False
        return True

    with contextlib.suppress(RuntimeError):  # not drained in time: 'settled' says so
        records.settled = await until(path_empty, "the provider's path to drain", timeout=10)
    settle = time.monotonic() + 1.0
    while time.monotonic() < settle:
        await take_records(subscriber, records, ledger, 0.3)
    records.judge()
    log(
        f"records: {records.counts['delivered']} of {count} delivered masked, "
        f"revoked, {AFTER_REVOCATION} published after it, "
        f"{records.counts['after_revocation']} arrived"
    )
    return records


# --- the summary ------------------------------------------------------------------------------


def print_sharing(summary: dict[str, Any]) -> None:
    sub = summary["subscription"]
    states = sub["states"]
    levels = ", ".join(f"{n} {level}" for level, n in summary["catalog_levels"].items())
    masks = ", ".join(
        f"{item} {m['rule']} {m['first']}+{m['last']}" for item, m in sub["masks"].items()
    )
    print()
    print("catalog and subscriptions")
    print("-" * 52)
    rows = [
        ("catalog entries", f"{summary['catalog_entries']} ({levels})"),
        ("catalog converged", f"{summary['catalog_converged_s']} s (listed by every department)"),
        (
            "subscriptions",
            f"{sub['requested']} requested, {sub['granted']} granted, {sub['refused']} refused",
        ),
        (
            "conditional",
            f"{SUBSCRIBER} → {POPULATION[0]} 人口基本信息: {states['conditional']}, "
            f"asked {'、'.join(sub['items_asked'])}, "
            f"granted {'、'.join(sub['items_granted'])} ({masks})",
        ),
        (
            "unconditional",
            f"{OPEN_REQUESTER} → {ENTERPRISES[0]} 企业登记信息: {states['unconditional']}"
            " on arrival",
        ),
        (
            "not shared",
            f"{REFUSED_REQUESTER} → {CASE_FILES[0]} 门诊病历信息: {states['not_shared']}, "
            f"{sub['refusal_reason']}",
        ),
        *(
            (f"records {what}", summary[f"records_{what}"])
            for what in ("sent", "delivered", "lost", "duplicated", "unmasked")
        ),
        ("a record received", json.dumps(summary["records_sample"], ensure_ascii=False)),
        (
            "after revocation",
            f"{summary['records_after_revocation']} of "
            f"{summary['records_after_revocation_sent']} arrived",
        ),
        ("sharing", f"{summary['sharing_seconds']} s"),
    ]
    print_rows(rows)
