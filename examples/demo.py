#!/usr/bin/env python3
"""The protocol core across levels: Guizhou province, two cities, four districts.

    python3 dev.py demo [--json] [--messages N] [--keep DIR]

What happens, with real keys and certificates written to a temporary directory:

1. A province root CA (520000) certifies two city CAs (Guiyang 520100, Zunyi
   520300), which certify four district CAs; these issue certificates to the
   hubs and to departments' front-end nodes at every level.
2. Every node loads its identity from its files and verifies every other
   node's certificate chain, revocation included, as the network will.
3. Departments exchange sealed envelopes in both directions across every
   level: district to district in another city, district to province, city
   to district.  Each envelope passes the hubs on its path, county → city →
   province → city → county; each hub verifies the sender's signature and
   cannot open the payload.  Recipients open each envelope once (a replay
   is refused) and return signed receipts, which the senders verify.
4. A department's certificate is revoked; its next envelope is refused.

The federation itself -- daemons, durable store-and-forward, mutual TLS --
is issue 3; this demo exercises the cryptographic core it will carry.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The hierarchy routes both demos' envelopes alike: the federation demo's helper sits
# beside this script, whose folder is on sys.path when it runs, so it imports by bare name.
from federation_support import hubs_between

from exchnode import (
    EnvelopeVerifier,
    Opener,
    Outgoing,
    ReceiptVerifier,
    ReplayWindow,
    Sealer,
    StaticDirectory,
    TrustStore,
    errors,
    issue_receipts,
    load_local_identity,
    verify_node_certificate,
)
from exchnode.core import NodeName
from exchnode.pki import CAStore, load_certificates_pem

CITIES = {"520100": ("520102", "520103"), "520300": ("520302", "520303")}
DEPARTMENTS = [
    "520000.tongji",  # province statistics bureau
    "520100.fagai",  # Guiyang development and reform commission
    "520102.gongan",  # Nanming district public security
    "520103.minzheng",  # Yunyan district civil affairs
    "520302.shebao",  # Honghuagang district social security
    "520303.weijian",  # Huichuan district health commission
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_pki(root: Path, now: datetime) -> CAStore:
    store = CAStore(root / "pki")
    year = timedelta(days=365)
    store.init_root("520000", now=now, lifetime=10 * year)
    for city, counties in CITIES.items():
        store.issue_ca(city, "520000", now=now, lifetime=5 * year)
        for county in counties:
            store.issue_ca(county, city, now=now, lifetime=5 * year)
    hubs = ["520000", *CITIES, *(c for counties in CITIES.values() for c in counties)]
    for name in hubs + DEPARTMENTS:
        issuer = NodeName.parse(name).division
        store.issue_node(name, issuer, root / "nodes" / name, now=now, lifetime=year)
    return store


def trust_of(store: CAStore) -> TrustStore:
    roots, _, crls = store.trust_material()
    return TrustStore(roots, crls)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="end with a JSON summary line")
    parser.add_argument("--messages", type=int, default=200, help="per ordered pair")
    parser.add_argument("--keep", help="write the PKI and node files here and keep them")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="exchnode-demo-"))
    try:
        summary = run(workdir, args.messages)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - started, 2)

    print()
    print(
        f"nodes                 {summary['nodes']} ({summary['hubs']} hubs, "
        f"{summary['departments']} departments, 4 levels of CA)"
    )
    print(f"envelopes sent        {summary['sent']}")
    print(f"delivered             {summary['delivered']}")
    print(
        f"duplicated            {summary['duplicated']}  (every replay refused: "
        f"{summary['replays_refused']})"
    )
    print(f"lost                  {summary['lost']}")
    print(
        f"hub verifications     {summary['hub_verifications']}  "
        f"(hubs that could read a payload: {summary['hub_reads']})"
    )
    print(f"receipts verified     {summary['receipts_verified']}")
    print(f"tampered refused      {summary['tampered_refused']}")
    print(f"revoked node refused  {summary['revoked_refused']}")
    print(f"seconds               {summary['seconds']}")
    if args.json:
        print(json.dumps(summary))
    ok = summary["lost"] == 0 and summary["duplicated"] == 0 and summary["hub_reads"] == 0
    return 0 if ok else 1


def run(workdir: Path, per_pair: int) -> dict[str, int]:
    now = datetime.now(UTC).replace(microsecond=0)
    log(f"building the PKI under {workdir} ...")
    store = build_pki(workdir, now)
    trust = trust_of(store)
    names = sorted(p.name for p in (workdir / "nodes").iterdir())
    identities = {
        name: load_local_identity(
            workdir / "nodes" / name / "chain.pem",
            workdir / "nodes" / name / "signing.key",
            workdir / "nodes" / name / "encryption.key",
            trust=trust,
            now=now,
        )
        for name in names
    }
    directory = StaticDirectory()
    for name in names:
        certs = load_certificates_pem((workdir / "nodes" / name / "chain.pem").read_bytes())
        directory.add(verify_node_certificate(certs[0], certs[1:], trust, now))
    log(f"{len(names)} nodes certified and verified to root 520000")

    t = now.timestamp()
    sealers = {d: Sealer(identities[d], directory) for d in DEPARTMENTS}
    openers = {d: Opener(identities[d], directory, replay=ReplayWindow()) for d in DEPARTMENTS}
    hubs = {h: EnvelopeVerifier(directory) for h in names if NodeName.parse(h).is_hub}
    hub_openers = {h: Opener(identities[h], directory) for h in hubs}
    receipts_verifier = ReceiptVerifier(directory)
    counts: Counter[str] = Counter()
    pairs = [(s, r) for s in DEPARTMENTS for r in DEPARTMENTS if s != r]
    for number, (sender, recipient) in enumerate(pairs, 1):
        items = [
            Outgoing(
                [recipient],
                json.dumps({"seq": i, "from": sender, "record": f"{sender}/{i}"}).encode(),
                kind="data",
                content_type="application/json",
            )
            for i in range(per_pair)
        ]
        sealed = sealers[sender].seal_batch(items, t)
        counts["sent"] += len(sealed)
        path = hubs_between(sender, recipient)
        opened = []
        for envelope in sealed:
            for hub in path:
                hubs[hub].verify(envelope.data, t)
                counts["hub_verifications"] += 1
                try:
                    hub_openers[hub].open(envelope.data, t)
                    counts["hub_reads"] += 1
                except errors.NotARecipientError:
                    pass
            opened.append(openers[recipient].open(envelope.data, t))
            try:
                openers[recipient].open(envelope.data, t)  # the same bytes again
                counts["duplicated"] += 1
            except errors.ReplayError:
                counts["replays_refused"] += 1
        counts["delivered"] += len(opened)
        by_id = {e.message_id: e for e in sealed}
        for data in issue_receipts(identities[recipient], opened, t):
            receipt = receipts_verifier.verify(data)
            if receipt.confirms(by_id[receipt.message_id].digest):
                counts["receipts_verified"] += 1
        log(
            f"[{number:2d}/{len(pairs)}] {sender:>16} → {recipient:<16} "
            f"{len(sealed)} delivered via {' → '.join(path)}"
        )

    tampered = bytearray(sealers[DEPARTMENTS[2]].seal(Outgoing([DEPARTMENTS[5]], b"x"), t).data)
    tampered[-80] ^= 1  # a byte of the ciphertext, as a hub on the path might change it
    try:
        openers[DEPARTMENTS[5]].open(bytes(tampered), t)
    except errors.RejectedError as exc:
        counts["tampered_refused"] += 1
        log(f"a byte flipped in transit: refused ({exc.code})")

    revoked = "520303.weijian"
    store.revoke("520303", revoked, reason="key-compromise", now=now)
    certs = load_certificates_pem((workdir / "nodes" / revoked / "chain.pem").read_bytes())
    try:
        verify_node_certificate(certs[0], certs[1:], trust_of(store), now + timedelta(seconds=1))
    except errors.CertificateRevokedError as exc:
        counts["revoked_refused"] += 1
        directory.remove(revoked)
        log(f"after revocation: {exc}")
    late = sealers[revoked].seal(Outgoing([DEPARTMENTS[0]], b"after revocation"), t)
    try:
        openers[DEPARTMENTS[0]].open(late.data, t)
    except errors.UnknownSignerError:
        counts["revoked_refused"] += 1

    hub_count = len(hubs)
    return {
        "nodes": len(names),
        "hubs": hub_count,
        "departments": len(names) - hub_count,
        "sent": counts["sent"],
        "delivered": counts["delivered"],
        "duplicated": counts["duplicated"],
        "lost": counts["sent"] - counts["delivered"],
        "replays_refused": counts["replays_refused"],
        "hub_verifications": counts["hub_verifications"],
        "hub_reads": counts["hub_reads"],
        "receipts_verified": counts["receipts_verified"],
        "tampered_refused": counts["tampered_refused"],
        "revoked_refused": counts["revoked_refused"],
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
