#!/usr/bin/env python3
"""A real federation on localhost: one daemon process per node, messages across every level.

    python3 dev.py demo [--json] [--messages N] [--records N] [--directory static|signed]
                        [--keep DIR]

What happens, in a temporary directory (or --keep DIR):

1. The PKI is generated with exchnode's CA store: a province root CA
   (520000), two city CAs (Guiyang 520100, Zunyi 520300), four county CAs.
   A department certificate (520102.tingyong) is issued and then revoked.
2. ``node init`` (the daemon's own verb, called in-process) issues every
   node's keys and certificate and writes its node.toml: 7 hubs (province,
   2 cities, 4 counties) and 7 departments at every level.  Trust material
   and the static directory of certificate chains are shared folders; with
   ``--directory signed`` the nodes learn each other's keys through the
   signed node directory instead, and the demo waits until it converged.
3. Each node starts as its own process, ``python -m node run``; the demo
   waits until every ``/health`` answers 200.
4. Every department sends to every other one through its node's operator
   API -- county to county in another city, county to province, city to
   county, province to county, and back -- and the receivers take the
   messages off their nodes' operator APIs.  Every message is counted at the
   receiving side by (sender, message id) and compared byte for byte with
   what was sent: lost and duplicated are counted, never inferred.  The first
   message of each pair asks for a signed receipt, which must come back.
5. The catalog and a subscription, through the same operator APIs.
   Departments at three levels publish catalog entries (人口基本信息 of a
   county's public security, conditional; 企业登记信息 of a city,
   unconditional; 门诊病历信息 of a county in the other city, not shared,
   with its legal basis; an indicator set of the province), and the demo
   waits until every department's node lists all of them (anti-entropy over
   the hierarchy).  A county department of the other city asks for three of
   the population items; the provider's operator grants two, with the id
   number masked (keep 6 + 4), and the requester sees "granted".  The
   province's request for the not-shared resource is refused with its legal
   basis; a city's request for the unconditional one is granted on arrival.
   The provider publishes ``--records`` records in four batches; the
   subscriber takes them off its operator inbox, and each is counted by its
   number: delivered (granted items only, masked, as computed here from what
   was published), lost, duplicated and unmasked are counted, never
   inferred.  Then the provider revokes the grant and publishes 20 more;
   once every node on the path has handed over what it held, none of them
   may have arrived.
6. A revoked node is refused in the TLS handshake, and a node claiming
   another node's name is refused by the hub.
7. Every daemon gets SIGTERM, must drain and exit 0; the folder is removed.

``--json`` ends the output with one JSON object on the last line
(nodes, sent, delivered, duplicated, lost, catalog_entries,
catalog_converged_s, subscription, records_sent, records_delivered,
records_lost, records_duplicated, records_after_revocation, seconds, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # node/ is a package of the source tree, not installed

from exchnode.ca_store import CAStore  # noqa: E402
from exchnode.errors import ExchnodeError  # noqa: E402
from exchnode.link import Item, TransferRequest  # noqa: E402
from exchnode.names import NATIONAL_DIVISION, NodeName, parent_hub  # noqa: E402
from exchnode.pki_verify import (  # noqa: E402
    TrustStore,
    load_certificates_pem,
    load_crls_pem,
    verify_node_certificate,
)
from exchnode.testing import free_port  # noqa: E402
from exchnode.tls import TlsFiles, make_context, write_verify_bundle  # noqa: E402
from exchnode.transport import LinkClient, LinkError  # noqa: E402
from node.client import OperatorClient, OperatorError  # noqa: E402
from node.scaffold import InitOptions, export_trust, init_node  # noqa: E402

PROVINCE = "520000"
CITIES = {"520100": ("520102", "520103"), "520300": ("520302", "520303")}
DEPARTMENTS = [
    "520000.tongji",  # province statistics bureau
    "520100.fagai",  # Guiyang development and reform commission
    "520300.jiaotong",  # Zunyi transport bureau
    "520102.gongan",  # Nanming district public security
    "520103.minzheng",  # Yunyan district civil affairs
    "520302.shebao",  # Honghuagang district social security
    "520303.weijian",  # Huichuan district health commission
]
REVOKED = "520102.tingyong"
LEVEL_NAMES = {1: "province", 2: "city", 3: "county"}
BATCH = 100  # messages per send-many call


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parent_of(name: str) -> str | None:
    """The parent hub, or None at the top of this federation (the province)."""
    parent = parent_hub(name)
    return None if parent == NATIONAL_DIVISION else parent


def hubs_between(sender: str, recipient: str) -> list[str]:
    """The hubs an envelope passes: up to the lowest common ancestor, then down."""

    def ancestors(name: str) -> list[str]:
        chain: list[str] = []
        current = parent_of(name)
        while current is not None:
            chain.append(current)
            current = parent_of(current)
        return chain

    up, down = ancestors(sender), ancestors(recipient)
    common = next(h for h in up if h in down)
    return up[: up.index(common) + 1] + list(reversed(down[: down.index(common)]))


def category(sender: str, recipient: str) -> str:
    a, b = NodeName.parse(sender), NodeName.parse(recipient)
    text = f"{LEVEL_NAMES[a.level]} → {LEVEL_NAMES[b.level]}"
    if a.level >= 2 and b.level >= 2:
        text += ", same city" if a.division[:4] == b.division[:4] else ", other city"
    return text


# --- setting up ------------------------------------------------------------------------


@dataclass
class Daemon:
    name: str
    config: Path
    log_path: Path
    link_port: int
    operator_url: str
    process: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None


def build(workdir: Path, now: datetime, directory_mode: str) -> dict[str, Daemon]:
    """The PKI, the shared trust and directory folders, and one node folder per node."""
    store = CAStore(workdir / "pki")
    year = timedelta(days=365)
    store.init_root(PROVINCE, now=now, lifetime=10 * year)
    for city, counties in CITIES.items():
        store.issue_ca(city, PROVINCE, now=now, lifetime=5 * year)
        for county in counties:
            store.issue_ca(county, city, now=now, lifetime=5 * year)
    # A department that is certified and then revoked: it must be refused.
    store.issue_node(REVOKED, "520102", workdir / "revoked", now=now, lifetime=year)
    store.revoke("520102", REVOKED, reason="key-compromise", now=now)
    export_trust(store, workdir / "trust")

    hubs = [PROVINCE, *CITIES, *(c for counties in CITIES.values() for c in counties)]
    names = hubs + DEPARTMENTS
    ports = {name: free_port() for name in names}
    operator_ports = {name: free_port() for name in names}
    daemons: dict[str, Daemon] = {}
    (workdir / "logs").mkdir()
    for name in names:
        peers: list[tuple[str, str, str]] = []
        parent = parent_of(name)
        if parent is not None:
            peers.append(("parent", parent, f"https://127.0.0.1:{ports[parent]}"))
        peers += [
            ("child", child, f"https://127.0.0.1:{ports[child]}")
            for child in names
            if parent_of(child) == name
        ]
        node = NodeName.parse(name)
        result = init_node(
            InitOptions(
                name=name,
                level=LEVEL_NAMES[node.level],
                directory=workdir / "nodes" / name,
                now=now,
                ca_dir=workdir / "pki",
                listen=f"127.0.0.1:{ports[name]}",
                operator=f"127.0.0.1:{operator_ports[name]}",
                peers=tuple(peers),
                trust=workdir / "trust",
                peer_directory=workdir / "directory",
                directory_mode=directory_mode,
            )
        )
        daemons[name] = Daemon(
            name,
            result.config,
            workdir / "logs" / f"{name}.log",
            link_port=ports[name],
            operator_url=f"http://127.0.0.1:{operator_ports[name]}",
        )
    # The revoked department's chain sits in the shared directory too: every node
    # must leave it out (its CRL entry), as a careless copy would not.
    shutil.copyfile(workdir / "revoked" / "chain.pem", workdir / "directory" / f"{REVOKED}.pem")
    return daemons


def start(daemons: dict[str, Daemon]) -> None:
    importlib.import_module("node.daemon")  # compile its bytecode once, not in 14 processes
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for daemon in daemons.values():
        with daemon.log_path.open("wb") as log_file:
            daemon.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "node", "run", "--config", str(daemon.config)],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )


def log_tail(daemon: Daemon, lines: int = 5) -> str:
    try:
        text = daemon.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(f"    {line}" for line in text[-lines:])


async def wait_ready(daemons: dict[str, Daemon], clients: dict[str, OperatorClient]) -> None:
    pending = set(daemons)
    deadline = time.monotonic() + 40
    while pending:
        for name in sorted(pending):
            daemon = daemons[name]
            assert daemon.process is not None
            if daemon.process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with status {daemon.process.returncode} while starting:\n"
                    + log_tail(daemon)
                )
            with contextlib.suppress(OperatorError):
                status, _ = await clients[name].health()
                if status == 200:
                    pending.discard(name)
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after 40 s: {', '.join(sorted(pending))}")
        if sys.stderr.isatty():
            sys.stderr.write(f"\r  {len(daemons) - len(pending)}/{len(daemons)} daemons serving")
            sys.stderr.write("\n" if not pending else "")
            sys.stderr.flush()
        if pending:
            await asyncio.sleep(0.1)


async def wait_directories(daemons: dict[str, Daemon], clients: dict[str, OperatorClient]) -> None:
    """Until every department's node knows every node (signed mode converges over the links)."""
    started = time.perf_counter()
    deadline = time.monotonic() + 30
    while True:
        known = {d: (await clients[d].health())[1]["directory"] for d in DEPARTMENTS}
        short = [d for d, info in known.items() if info["known"] < len(daemons)]
        if not short:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"directories incomplete after 30 s at {', '.join(short)}")
        await asyncio.sleep(0.1)
    mode = next(iter(known.values()))["mode"]
    log(
        f"{mode} directory: every department knows all {len(daemons)} nodes "
        f"({time.perf_counter() - started:.1f} s)"
    )


# --- traffic -----------------------------------------------------------------------------


@dataclass
class Ledger:
    """What was sent, and what each receiver took, keyed by (sender, message id).

    Arrivals are recorded as they come and judged only after the traffic, so a
    message that overtakes its own send confirmation is not misjudged.
    """

    expected: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    digests: dict[tuple[str, str], str] = field(default_factory=dict)
    receipts: list[tuple[str, str, str]] = field(default_factory=list)  # sender, id, recipient
    arrivals: dict[tuple[str, str], list[tuple[str, bytes]]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    by_category: Counter[str] = field(default_factory=Counter)
    delivered_by_category: Counter[str] = field(default_factory=Counter)

    def arrive(self, receiver: str, sender: str, message_id: str, payload: bytes) -> None:
        seen = self.arrivals.setdefault((sender, message_id), [])
        if not seen:
            self.counts["arrived"] += 1
            self.counts[f"arrived:{receiver}"] += 1
        seen.append((receiver, payload))

    def judge(self) -> None:
        """delivered: first arrival is at the addressee with the bytes sent; every further
        arrival is a duplicate; anything else is corrupted; lost: sent, never delivered."""
        for key, seen in self.arrivals.items():
            if self.expected.get(key) == seen[0]:
                self.counts["delivered"] += 1
                self.delivered_by_category[category(key[0], seen[0][0])] += 1
            else:
                self.counts["corrupted"] += 1
            self.counts["duplicated"] += len(seen) - 1
        self.counts["lost"] = sum(
            1 for key, want in self.expected.items() if self.arrivals.get(key, [None])[0] != want
        )


def payload_for(sender: str, recipient: str, seq: int) -> bytes:
    record = {"from": sender, "to": recipient, "seq": seq}
    filler = hashlib.sha256(f"{sender}/{recipient}/{seq}".encode()).hexdigest() * 4
    record["data"] = filler[: 64 + seq % 192]
    return json.dumps(record, sort_keys=True).encode()


async def send_all(client: OperatorClient, sender: str, per_pair: int, ledger: Ledger) -> None:
    messages: list[dict[str, Any]] = []
    recipients = [d for d in DEPARTMENTS if d != sender]
    for seq in range(per_pair):
        for recipient in recipients:
            messages.append(
                {
                    "to": [recipient],
                    "payload": payload_for(sender, recipient, seq),
                    "content_type": "application/json",
                    "receipt": seq == 0,
                }
            )
    for start in range(0, len(messages), BATCH):
        chunk = messages[start : start + BATCH]
        sent = await client.send_many(chunk)
        for message, record in zip(chunk, sent, strict=True):
            key = (sender, record["message_id"])
            recipient = message["to"][0]
            ledger.expected[key] = (recipient, message["payload"])
            ledger.digests[key] = record["digest"]
            ledger.by_category[category(sender, recipient)] += 1
            if message["receipt"]:
                ledger.receipts.append((sender, record["message_id"], recipient))
        ledger.counts["sent"] += len(sent)


async def receive_all(
    client: OperatorClient, name: str, want: int, ledger: Ledger, deadline: float
) -> None:
    """Take messages off ``name``'s node until ``want`` distinct ones came, then one more
    quiet poll (a duplicate would show up there), or until the deadline."""
    quiet_after_done = 0
    while time.monotonic() < deadline:
        done = ledger.counts[f"arrived:{name}"] >= want
        if done and quiet_after_done:
            return
        batch = await client.receive(limit=512, wait=0.3 if done else 1.0)
        if not batch:
            quiet_after_done += done
            continue
        for item in batch:
            ledger.arrive(name, item.sender, item.message_id, item.payload)
        await client.ack(item.id for item in batch)


async def progress(text: Callable[[], str], stop: asyncio.Event) -> None:
    """Rewrite one progress line on a terminal until ``stop``."""
    if not sys.stderr.isatty():
        await stop.wait()
        return
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
        sys.stderr.write(f"\r  {text()}")
        sys.stderr.flush()
    sys.stderr.write("\n")


async def check_receipts(clients: dict[str, OperatorClient], ledger: Ledger) -> int:
    async def one(sender: str, message_id: str, recipient: str) -> bool:
        status = await clients[sender].status(message_id, [recipient], wait=15)
        digests = {r["envelope_digest"] for r in status["receipts"] if r["recipient"] == recipient}
        return recipient in status["delivered_to"] and ledger.digests[(sender, message_id)] in (
            digests
        )

    results = await asyncio.gather(*(one(*item) for item in ledger.receipts))
    return sum(results)


# --- the catalog and a subscription ---------------------------------------------------------

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
    """Every provider publishes; then wait until every department's node lists every entry."""
    started = time.perf_counter()
    published: set[tuple[str, str, int]] = set()
    for provider, entries in catalog_entries().items():
        records = await clients[provider].catalog_publish(entries, operator="目录管理员")
        published |= {(r["provider"], r["code"], r["version"]) for r in records}

    async def converged() -> bool:
        for name in DEPARTMENTS:
            held = await clients[name].catalog_search()
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


async def take_records(
    client: OperatorClient, records: RecordLedger, ledger: Ledger, wait: float
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
    clients: dict[str, OperatorClient], count: int, request_id: str, ledger: Ledger
) -> RecordLedger:
    """Publish ``count`` records in a few batches, take them off the subscriber's inbox,
    revoke, publish more, and see that none of those arrive."""
    provider, code = POPULATION
    subscriber = clients[SUBSCRIBER]
    records = RecordLedger()
    size = -(-count // RECORD_BATCHES)

    async def publish(batch: list[dict[str, Any]], *, granted: bool = True) -> dict[str, Any]:
        answer = await clients[provider].sub_publish(code, batch, operator="王建国")
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

    stop = asyncio.Event()
    shown = asyncio.get_running_loop().create_task(
        progress(
            lambda: (
                f"records published {records.counts['published']:>4}/{count}"
                f"   received {len(records.arrivals):>4}/{count}"
            ),
            stop,
        )
    )
    receiver = asyncio.create_task(receive_until_complete(time.monotonic() + 30))
    for start in range(0, count, size):
        await publish([person(seq) for seq in range(start + 1, min(start + size, count) + 1)])
    await receiver
    stop.set()
    await shown

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


# --- refusals ------------------------------------------------------------------------------


async def refusals(workdir: Path, daemons: dict[str, Daemon], now: datetime) -> dict[str, str]:
    """Attempt two transfers to county hub 520102 that must be refused; how each was refused."""
    roots = load_certificates_pem((workdir / "trust" / "roots.pem").read_bytes())
    cas = load_certificates_pem((workdir / "trust" / "cas.pem").read_bytes())
    crls = [
        crl
        for path in sorted((workdir / "trust" / "crls").glob("*.pem"))
        for crl in load_crls_pem(path.read_bytes())
    ]
    trust = TrustStore(roots, crls)
    verify = write_verify_bundle(workdir / "refusals-verify.pem", roots, crls)
    hub = "520102"
    hub_url = f"https://127.0.0.1:{daemons[hub].link_port}"

    def authenticate(certificate: Any) -> str:
        return str(verify_node_certificate(certificate, cas, trust, now).name)

    outcomes: dict[str, str] = {}
    attempts = {
        # The revoked department, with its own (valid-looking) keys: refused in the handshake.
        "revoked": (workdir / "revoked", REVOKED),
        # A valid department claiming another department's name: refused by the hub.
        "spoof": (workdir / "nodes" / "520102.gongan" / "identity", "520103.minzheng"),
    }
    for label, (folder, claimed) in attempts.items():
        files = TlsFiles(folder / "chain.pem", folder / "signing.key", verify)
        client = LinkClient(hub, hub_url, make_context(files, server=False), authenticate)
        request = TransferRequest(claimed, os.urandom(16), (Item(b"\x00", (hub,)),))
        try:
            await client.transfer(request)
            outcomes[label] = "ACCEPTED"
        except LinkError as exc:
            outcomes[label] = f"HTTP {exc.status}" if exc.status else "TLS handshake failed"
        except ExchnodeError as exc:
            outcomes[label] = f"refused: {exc}"
        finally:
            await client.close()
    return outcomes


# --- stopping --------------------------------------------------------------------------------


def stop_all(daemons: dict[str, Daemon], timeout: float = 20.0) -> None:
    for daemon in daemons.values():
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for daemon in daemons.values():
        if daemon.process is None:
            continue
        try:
            daemon.exit_code = daemon.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()
            daemon.exit_code = None  # did not drain in time


async def hub_stats(clients: dict[str, OperatorClient], hubs: list[str]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for hub in hubs:
        status, body = await clients[hub].health()
        if status != 200:
            totals["unhealthy"] += 1
            continue
        totals["accepted"] += body["counters"]["accepted"]
        totals["delivered_to_hub_apps"] += body["counters"]["delivered"] + body["inbox"]["count"]
    return totals


# --- the run ----------------------------------------------------------------------------------


async def exercise(
    workdir: Path, daemons: dict[str, Daemon], per_pair: int, record_count: int, now: datetime
) -> dict[str, Any]:
    token = {
        name: (d.config.parent / "operator.token").read_text().strip()
        for name, d in daemons.items()
    }
    clients = {name: OperatorClient(d.operator_url, token[name]) for name, d in daemons.items()}
    async with contextlib.AsyncExitStack() as stack:
        for client in clients.values():
            await stack.enter_async_context(client)
        started = time.perf_counter()
        await wait_ready(daemons, clients)
        ready_seconds = time.perf_counter() - started
        log(f"{len(daemons)} daemons serving after {ready_seconds:.1f} s")
        await wait_directories(daemons, clients)

        ledger = Ledger()
        total = len(DEPARTMENTS) * (len(DEPARTMENTS) - 1) * per_pair
        want = (len(DEPARTMENTS) - 1) * per_pair
        log(
            f"exchanging {total} messages: every department to every other, "
            f"{per_pair} per ordered pair"
        )
        traffic_started = time.perf_counter()
        stop = asyncio.Event()
        shown = asyncio.get_running_loop().create_task(
            progress(
                lambda: (
                    f"sent {ledger.counts['sent']:>5}/{total}"
                    f"   received {ledger.counts['arrived']:>5}/{total}"
                ),
                stop,
            )
        )
        deadline = time.monotonic() + 45
        receivers = [
            asyncio.create_task(receive_all(clients[d], d, want, ledger, deadline))
            for d in DEPARTMENTS
        ]
        await asyncio.gather(*(send_all(clients[d], d, per_pair, ledger) for d in DEPARTMENTS))
        await asyncio.gather(*receivers)
        traffic_seconds = time.perf_counter() - traffic_started
        stop.set()
        await shown
        receipts = await check_receipts(clients, ledger)
        hubs = [name for name in daemons if NodeName.parse(name).is_hub]
        totals = await hub_stats(clients, hubs)

        sharing_started = time.perf_counter()
        catalog = await publish_catalog(clients)
        subscription = await subscribe(clients)
        log(f"serving {record_count} records in {RECORD_BATCHES} batches, then revoking")
        records = await serve_records(clients, record_count, subscription["conditional_id"], ledger)
        sharing_seconds = time.perf_counter() - sharing_started
        refused = await refusals(workdir, daemons, now)

    ledger.judge()
    return {
        "ledger": ledger,
        "ready_seconds": ready_seconds,
        "traffic_seconds": traffic_seconds,
        "receipts": receipts,
        "hub_totals": totals,
        "refusals": refused,
        "catalog": catalog,
        "subscription": subscription,
        "records": records,
        "sharing_seconds": sharing_seconds,
    }


def run(workdir: Path, per_pair: int, record_count: int, directory_mode: str) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    log(f"building the PKI and {7 + len(DEPARTMENTS)} node folders under {workdir} ...")
    daemons = build(workdir, now, directory_mode)
    start(daemons)
    try:
        result = asyncio.run(exercise(workdir, daemons, per_pair, record_count, now))
    finally:
        stop_all(daemons)
    clean = sum(1 for d in daemons.values() if d.exit_code == 0)
    for daemon in daemons.values():
        if daemon.exit_code != 0:
            log(f"{daemon.name} exited with {daemon.exit_code} after SIGTERM:\n{log_tail(daemon)}")
    ledger: Ledger = result["ledger"]
    records: RecordLedger = result["records"]
    catalog, subscription = result["catalog"], result["subscription"]
    states = subscription["states"]
    hubs = sum(1 for name in daemons if NodeName.parse(name).is_hub)
    return {
        "nodes": len(daemons),
        "directory": directory_mode,
        "hubs": hubs,
        "departments": len(daemons) - hubs,
        "processes": len(daemons),
        "sent": ledger.counts["sent"],
        "delivered": ledger.counts["delivered"],
        "duplicated": ledger.counts["duplicated"],
        "lost": ledger.counts["lost"],
        "corrupted": ledger.counts["corrupted"],
        "receipts_requested": len(ledger.receipts),
        "receipts_confirmed": result["receipts"],
        "hub_custody_steps": result["hub_totals"]["accepted"],
        "hub_app_deliveries": result["hub_totals"]["delivered_to_hub_apps"],
        "revoked_refused": result["refusals"].get("revoked") == "TLS handshake failed",
        "spoof_refused": result["refusals"].get("spoof") == "HTTP 403",
        "clean_exits": clean,
        "ready_seconds": round(result["ready_seconds"], 2),
        "traffic_seconds": round(result["traffic_seconds"], 2),
        "messages_per_second": round(ledger.counts["sent"] / result["traffic_seconds"], 1),
        "by_category": {
            name: [ledger.by_category[name], ledger.delivered_by_category[name]]
            for name in sorted(ledger.by_category)
        },
        "refusals": result["refusals"],
        "catalog_entries": catalog["entries"],
        "catalog_levels": catalog["levels"],
        "catalog_converged_s": round(catalog["seconds"], 2),
        "subscription": {
            "requested": len(states),
            "granted": sum(1 for state in states.values() if state == "granted"),
            "refused": sum(1 for state in states.values() if state in ("refused", "not_shared")),
            "states": states,
            "items_asked": subscription["items_asked"],
            "items_granted": subscription["items_granted"],
            "masks": subscription["masks"],
            "refusal_reason": subscription["refusal_reason"],
            "revoked": records.revoked,
        },
        "records_sent": records.counts["published"],
        "records_subscribers": records.counts["subscribers"],
        "records_delivered": records.counts["delivered"],
        "records_lost": records.counts["lost"],
        "records_duplicated": records.counts["duplicated"],
        "records_corrupted": records.counts["corrupted"] + records.counts["unreadable"],
        "records_unmasked": records.counts["unmasked"],
        "records_sample": records.sample(),
        "records_ungranted_items": records.counts["ungranted_items"],
        "records_refused": records.counts["refused"],
        "records_after_revocation_sent": len(records.after_revocation),
        "records_after_revocation_subscribers": records.counts["after_revocation_subscribers"],
        "records_after_revocation": records.counts["after_revocation"],
        "after_revocation_settled": records.settled,
        "sharing_seconds": round(result["sharing_seconds"], 2),
    }


def print_summary(summary: dict[str, Any]) -> None:
    print()
    print(f"{'path (sender → recipient)':<34} {'sent':>6} {'delivered':>10}")
    print("-" * 52)
    for name, (sent, delivered) in summary["by_category"].items():
        print(f"{name:<34} {sent:>6} {delivered:>10}")
    print()
    rows = [
        (
            "nodes",
            f"{summary['nodes']} ({summary['hubs']} hubs, {summary['departments']} departments; "
            f"one process each; {summary['directory']} directory)",
        ),
        ("sent", summary["sent"]),
        ("delivered", summary["delivered"]),
        ("duplicated", summary["duplicated"]),
        ("lost", summary["lost"]),
        ("corrupted", summary["corrupted"]),
        ("receipts", f"{summary['receipts_confirmed']} of {summary['receipts_requested']}"),
        ("hub custody steps", summary["hub_custody_steps"]),
        ("read by hubs", summary["hub_app_deliveries"]),
        ("revoked node", summary["refusals"].get("revoked")),
        ("spoofed name", summary["refusals"].get("spoof")),
        ("clean exits", f"{summary['clean_exits']} of {summary['processes']} (SIGTERM, drained)"),
        ("ready after", f"{summary['ready_seconds']} s"),
        (
            "traffic",
            f"{summary['traffic_seconds']} s ({summary['messages_per_second']} messages/s)",
        ),
    ]
    for label, value in rows:
        print(f"{label:<20} {value}")
    print_sharing(summary)
    print()
    print(f"{'seconds':<20} {summary['seconds']}")


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
        ("records sent", summary["records_sent"]),
        ("records delivered", summary["records_delivered"]),
        ("records lost", summary["records_lost"]),
        ("records duplicated", summary["records_duplicated"]),
        ("records unmasked", summary["records_unmasked"]),
        ("a record received", json.dumps(summary["records_sample"], ensure_ascii=False)),
        (
            "after revocation",
            f"{summary['records_after_revocation']} of "
            f"{summary['records_after_revocation_sent']} arrived",
        ),
        ("sharing", f"{summary['sharing_seconds']} s"),
    ]
    for label, value in rows:
        print(f"{label:<20} {value}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="end with a JSON summary line")
    parser.add_argument("--messages", type=int, default=75, help="per ordered pair of departments")
    parser.add_argument(
        "--records", type=int, default=200, help="records served under the conditional grant"
    )
    parser.add_argument(
        "--directory",
        choices=["static", "signed"],
        default="signed",
        help="how nodes learn keys: a shared folder of chains, or the signed node directory",
    )
    parser.add_argument("--keep", help="work in this (new) directory and keep it")
    args = parser.parse_args(argv)
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    if args.records < 1:
        parser.error("--records must be at least 1")

    started = time.perf_counter()
    if args.keep:
        workdir = Path(args.keep).resolve()
        workdir.mkdir(parents=True, exist_ok=False)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="exchnode-federation-"))
    try:
        summary = run(workdir, args.messages, args.records, args.directory)
    except (RuntimeError, ExchnodeError, OSError) as exc:
        log(f"federation demo failed: {exc}")
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    print_summary(summary)
    if args.json:
        print(json.dumps(summary))
    ok = (
        summary["lost"] == 0
        and summary["duplicated"] == 0
        and summary["corrupted"] == 0
        and summary["delivered"] == summary["sent"]
        and summary["receipts_confirmed"] == summary["receipts_requested"]
        and summary["hub_app_deliveries"] == 0
        and summary["revoked_refused"]
        and summary["spoof_refused"]
        and summary["clean_exits"] == summary["processes"]
        and summary["subscription"]["states"]
        == {"conditional": "granted", "not_shared": "not_shared", "unconditional": "granted"}
        and summary["subscription"]["revoked"]
        and summary["records_delivered"] == summary["records_sent"]
        and summary["records_lost"] == 0
        and summary["records_duplicated"] == 0
        and summary["records_corrupted"] == 0
        and summary["records_unmasked"] == 0
        and summary["records_ungranted_items"] == 0
        and summary["records_after_revocation"] == 0
        and summary["after_revocation_settled"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
