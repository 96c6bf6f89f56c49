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
3. Each node starts as its own process, ``python -m exchnode.node run``; the demo
   waits until every ``/health`` answers 200.
4. Every department sends to every other one through its node's operator
   API -- county to county in another city, county to province, city to
   county, province to county, and back -- and the receivers take the
   messages off their nodes' operator APIs.  Every message is counted at the
   receiving side by (sender, message id) and compared byte for byte with
   what was sent: lost and duplicated are counted, never inferred.  The first
   message of each pair asks for a signed receipt, which must come back.
5. The catalog and a subscription, through the same operator APIs
   (``federation_sharing.py``).
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
7. Every node verifies its own audit log end to end (``GET /v1/audit/verify``:
   records, chain and signed tree heads); all must pass.  Then the oversight
   report is built from those verified logs and every node's catalog, the
   way ``exchnode audit report`` builds it (``node.audit_report.collect``),
   and printed last: per department and level, resources by share type,
   requests and their answers, records provided and used, stale resources,
   zombie nodes.
8. Every daemon gets SIGTERM, must drain and exit 0; the folder is removed.

The steps live here, except step 5 (``federation_sharing.py``); the
federation's shape and the log and progress lines are in
``federation_support.py``.

``--json`` ends the output with one JSON object on the last line
(nodes, sent, delivered, duplicated, lost, catalog_entries,
catalog_converged_s, subscription, records_sent, records_delivered,
records_lost, records_duplicated, records_after_revocation, oversight (the
report's totals, levels, stale and zombie counts), seconds, ...).
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# The demo's other parts, federation_support and federation_sharing, sit beside this
# script: run as a script, its own folder is on sys.path, so they import by bare name.
from federation_sharing import (
    RECORD_BATCHES,
    RecordLedger,
    print_sharing,
    publish_catalog,
    serve_records,
    subscribe,
)
from federation_support import (
    CITIES,
    DEPARTMENTS,
    LEVEL_NAMES,
    PROVINCE,
    REVOKED,
    log,
    parent_of,
    print_rows,
    progress,
)

from exchnode.aio import LinkClient, LinkError, TlsFiles, make_context, write_verify_bundle
from exchnode.audit import LogStatus, OversightBuilder, OversightReport
from exchnode.core import NodeName
from exchnode.errors import ExchnodeError
from exchnode.federation import Item, TransferRequest
from exchnode.node.audit_report import collect as collect_audit
from exchnode.node.client import OperatorClient, OperatorError
from exchnode.node.config import DaemonConfig, load_config
from exchnode.node.scaffold import InitOptions, export_trust, init_node
from exchnode.pki import (
    CAStore,
    TrustStore,
    load_certificates_pem,
    load_crls_pem,
    verify_node_certificate,
)
from exchnode.testing import free_port

REPO = Path(__file__).resolve().parent.parent

BATCH = 100  # messages per send-many call


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
    # compile its bytecode once, not in 14 processes
    importlib.import_module("exchnode.node.daemon")
    env = dict(os.environ)
    for daemon in daemons.values():
        with daemon.log_path.open("wb") as log_file:
            daemon.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "exchnode.node", "run", "--config", str(daemon.config)],
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


def _path_to_root(name: str) -> list[str]:
    """``name`` and every hub above it, up to the province."""
    path = [name]
    while (parent := parent_of(path[-1])) is not None:
        path.append(parent)
    return path


async def wait_directories(daemons: dict[str, Daemon], clients: dict[str, OperatorClient]) -> None:
    """Until the province knows every node and every department its path to the root.

    A node's directory holds its subtree and its path (issue 13), not the
    network: a department learns any other node's keys when it first
    addresses it, through its hubs.  So what must converge before traffic is
    the province's view of its subtree (the whole federation here) and each
    department's path; the first send to a name looks it up.
    """
    started = time.perf_counter()
    deadline = time.monotonic() + 30
    while True:
        known = {d: (await clients[d].health())[1]["directory"] for d in (*DEPARTMENTS, PROVINCE)}
        short = [
            d
            for d, info in known.items()
            if info["known"] < (len(daemons) if d == PROVINCE else len(_path_to_root(d)))
        ]
        if not short:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"directories incomplete after 30 s at {', '.join(short)}")
        await asyncio.sleep(0.1)
    mode = known[PROVINCE]["mode"]
    took = time.perf_counter() - started
    log(
        f"{mode} directory: the province knows all {len(daemons)} nodes, every department its "
        f"path to the root; the rest is looked up through the hubs ({took:.1f} s)"
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


async def check_receipts(clients: dict[str, OperatorClient], ledger: Ledger) -> int:
    async def one(sender: str, message_id: str, recipient: str) -> bool:
        status = await clients[sender].status(message_id, [recipient], wait=15)
        digests = {r["envelope_digest"] for r in status["receipts"] if r["recipient"] == recipient}
        return recipient in status["delivered_to"] and ledger.digests[(sender, message_id)] in (
            digests
        )

    results = await asyncio.gather(*(one(*item) for item in ledger.receipts))
    return sum(results)


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
    # Each client holds every role's token its node's config names (administrator,
    # operator, auditor) and presents the one each path needs.
    clients = {
        name: OperatorClient.for_config(load_config(d.config)) for name, d in daemons.items()
    }
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
        async with progress(
            lambda: (
                f"sent {ledger.counts['sent']:>5}/{total}"
                f"   received {ledger.counts['arrived']:>5}/{total}"
            )
        ):
            deadline = time.monotonic() + 45
            receivers = [
                asyncio.create_task(receive_all(clients[d], d, want, ledger, deadline))
                for d in DEPARTMENTS
            ]
            await asyncio.gather(*(send_all(clients[d], d, per_pair, ledger) for d in DEPARTMENTS))
            await asyncio.gather(*receivers)
            traffic_seconds = time.perf_counter() - traffic_started
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
        audit = await verify_audit_logs(clients)
        oversight = await oversight_report(clients, load_config(daemons[PROVINCE].config))

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
        "audit": audit,
        "oversight": oversight,
    }


async def verify_audit_logs(clients: dict[str, OperatorClient]) -> dict[str, dict[str, Any]]:
    """Every node checks its own audit log end to end: records, signed heads, chain."""
    log("verifying every node's audit log")

    async def one(name: str) -> tuple[str, dict[str, Any]]:
        report = await clients[name].audit_verify()
        return name, {"ok": report["ok"], "records": report["records"], "heads": report["heads"]}

    return dict(await asyncio.gather(*(one(name) for name in sorted(clients))))


async def oversight_report(
    clients: dict[str, OperatorClient], config: DaemonConfig
) -> OversightReport:
    """The oversight report of every node, as ``exchnode audit report`` builds it."""
    log("building the oversight report from every node's verified log and catalog")
    builder = OversightBuilder(calendar=config.sharing.calendar)
    await collect_audit(builder, clients)
    return builder.build(int(time.time() * 1000))


def oversight_summary(report: OversightReport) -> dict[str, Any]:
    """The report's key figures for the JSON summary."""
    totals = report.to_json()["totals"]
    keys = (
        "departments", "resources", "unconditional", "conditional", "not_shared", "shared_ratio",
        "requested", "granted", "refused", "expired", "pending", "conditional_answers",
        "answers_within_rule", "answers_over_rule", "records_published", "records_sent",
        "records_used",
    )  # fmt: skip
    return {
        **{key: totals[key] for key in keys},
        "levels": {row.label: row.figures.resources for row in report.levels},
        "stale_resources": len(report.stale),
        "zombie_nodes": len(report.zombies),
        "logs_read": sum(1 for n in report.nodes if n.log is LogStatus.VERIFIED),
        "logs_not_verified": [n.node for n in report.unread],
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
        "audit_logs_verified": sum(1 for a in result["audit"].values() if a["ok"]),
        "audit_records": sum(a["records"] for a in result["audit"].values()),
        "audit_heads": sum(a["heads"] for a in result["audit"].values()),
        "oversight": oversight_summary(result["oversight"]),
        "oversight_table": result["oversight"].table(),
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
        *((key, summary[key]) for key in ("sent", "delivered", "duplicated", "lost", "corrupted")),
        ("receipts", f"{summary['receipts_confirmed']} of {summary['receipts_requested']}"),
        ("hub custody steps", summary["hub_custody_steps"]),
        ("read by hubs", summary["hub_app_deliveries"]),
        ("revoked node", summary["refusals"].get("revoked")),
        ("spoofed name", summary["refusals"].get("spoof")),
        (
            "audit logs",
            f"{summary['audit_logs_verified']} of {summary['nodes']} verified end to end "
            f"({summary['audit_records']} records under {summary['audit_heads']} signed heads)",
        ),
        ("clean exits", f"{summary['clean_exits']} of {summary['processes']} (SIGTERM, drained)"),
        ("ready after", f"{summary['ready_seconds']} s"),
        (
            "traffic",
            f"{summary['traffic_seconds']} s ({summary['messages_per_second']} messages/s)",
        ),
    ]
    print_rows(rows)
    print_sharing(summary)
    print()
    print(f"{'seconds':<20} {summary['seconds']}")
    print()
    print(summary["oversight_table"])


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
        print(json.dumps({k: v for k, v in summary.items() if k != "oversight_table"}))
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
        and summary["audit_logs_verified"] == summary["nodes"]
        and summary["oversight"]["logs_read"] == summary["nodes"]
        and summary["oversight"]["requested"] == summary["subscription"]["requested"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
