"""Refusals leave a trace on running daemons (issue 12, item 5).

A county hub runs with one configured department (520102.gongan, whose
daemon is not running: the tests use its keys) and one department that
believes the hub is its parent but is not configured there (520102.minzheng,
running).  Against the hub: a certificate outside its CA's division, a
transfer whose declared sender is not its certificate's, an envelope whose
signer cannot be verified yet, a handshake OpenSSL refuses (a revoked
department), and the unconfigured department's calls.  Each is an audit
record at once, and a flood of one kind is one more record per interval
with the count, not one per refusal; each is a warning line (as rate-limited);
nothing of any of them is stored; and health shows the refused peer as
``refused`` with the reason -- at the hub, and at the refused department,
which learns it from the hub's 403.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.aio import LinkClient, LinkError, TlsFiles, make_context, write_verify_bundle
from exchnode.core import Outgoing, PeerIdentity, Sealer, StaticDirectory
from exchnode.federation import Item, Status, TransferRequest
from exchnode.node.client import OperatorClient
from exchnode.node.scaffold import export_trust
from exchnode.pki import (
    TrustStore,
    load_certificates_pem,
    load_crls_pem,
    read_node_certificate,
    verify_node_certificate,
    write_private_key,
)
from exchnode.pki._issue import _make_node_certificate
from exchnode.pki._profile import node_subject
from exchnode.testing import seeded_identity
from tests.integration.daemons import DaemonFederation, until
from tests.integration.test_daemon_roles import audit_records, find

pytestmark = pytest.mark.timeout(240)

HUB, GONGAN, MINZHENG = "520102", "520102.gongan", "520102.minzheng"
REVOKED = "520102.tingyong"
FOREIGN = "522301.waishi"  # never run: its presence gives the federation a 522300 CA
NAMES = [HUB, GONGAN, MINZHENG, REVOKED, FOREIGN]
INTERVAL = 3.0  # [timers] log_repeat_interval of the hub: one record per key per interval


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(tmp_path_factory.mktemp("refusals"), NAMES)
    federation.store.revoke("520100", REVOKED, reason="key-compromise", now=datetime.now(UTC))
    export_trust(federation.store, federation.root / "trust")  # the hub starts with that CRL
    hub = federation.config_path(HUB)
    text = hub.read_text("utf-8")
    unconfigured = (
        f'[[peers]]\nname = "{MINZHENG}"\nrelation = "child"\nurl = "{federation.url(MINZHENG)}"\n'
    )
    assert unconfigured in text
    text = text.replace(unconfigured, "")
    text = text.replace("# log_repeat_interval = 60.0", f"log_repeat_interval = {INTERVAL}")
    hub.write_text(text + '\n[admission]\npolicy = "none"\n', "utf-8")  # admits no one
    department = federation.config_path(MINZHENG)
    text = department.read_text("utf-8")
    assert "# refresh = 60.0" in text
    department.write_text(text.replace("# refresh = 60.0", "refresh = 1.0"), "utf-8")
    with federation.serving(HUB, MINZHENG):
        yield federation


# --- helpers --------------------------------------------------------------------------------


def health(fed: DaemonFederation, name: str) -> dict[str, Any]:
    status, body = fed.health(name)
    assert status == 200, body
    return body


def refusals(fed: DaemonFederation, action: str, reason: str) -> list[dict[str, Any]]:
    return [
        r
        for r in find(audit_records(fed, HUB), action)
        if r["outcome"] == {"status": "refused", "code": reason}
    ]


def counted(records: list[dict[str, Any]]) -> int:
    return sum(int(r["detail"]["count"]) for r in records)


def nothing_stored(fed: DaemonFederation) -> None:
    hub = health(fed, HUB)
    assert hub["queued"]["count"] == 0
    assert hub["inbox"]["count"] == 0
    assert hub["counters"]["accepted"] == 0
    assert not [
        r for r in find(audit_records(fed, HUB), "accept") if r["outcome"]["status"] == "ok"
    ]


class Credentials:
    """A TLS client to the hub with some chain and key (a node's own, or minted)."""

    def __init__(self, fed: DaemonFederation, chain: Path, key: Path) -> None:
        root = fed.root
        roots = load_certificates_pem((root / "trust" / "roots.pem").read_bytes())
        self.cas = load_certificates_pem((root / "trust" / "cas.pem").read_bytes())
        crls = [
            crl
            for path in sorted((root / "trust" / "crls").glob("*.pem"))
            for crl in load_crls_pem(path.read_bytes())
        ]
        self.trust = TrustStore(roots, crls)
        verify = write_verify_bundle(root / "client-verify.pem", roots, crls)
        self.files = TlsFiles(chain, key, verify)
        self.url = fed.url(HUB)

    def authenticate(self, certificate: x509.Certificate) -> str:
        return str(
            verify_node_certificate(certificate, self.cas, self.trust, datetime.now(UTC)).name
        )

    def transfers(self, sender: str, items: list[Item], times: int = 1) -> list[Any]:
        """``times`` transfers; each one's response, or the LinkError that refused it."""

        async def go() -> list[Any]:
            client = LinkClient(
                HUB, self.url, make_context(self.files, server=False), self.authenticate, timeout=10
            )
            out: list[Any] = []
            try:
                for _ in range(times):
                    try:
                        out.append(
                            await client.transfer(
                                TransferRequest(sender, os.urandom(16), tuple(items))
                            )
                        )
                    except LinkError as exc:
                        out.append(exc)
            finally:
                await client.close()
                await asyncio.sleep(0.1)  # let the TLS transports the hub closed finish closing
            return out

        return asyncio.run(go())


def own(fed: DaemonFederation, name: str) -> Credentials:
    identity = fed.folder(name) / "identity"
    return Credentials(fed, identity / "chain.pem", identity / "signing.key")


A_ITEM = Item(b"\x00", (HUB,))


# --- the tests --------------------------------------------------------------------------------


def test_a_certificate_outside_its_cas_division_is_recorded_and_shown(
    fed: DaemonFederation,
) -> None:
    # The 522300 CA issues a certificate for a department of 520102: a valid chain (TLS takes
    # it), but outside that CA's division (SPEC §3.5).
    store = fed.store
    ca = store.load("522300")
    signing, encryption = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
    now = datetime.now(UTC)
    leaf = _make_node_certificate(
        node_subject(GONGAN),
        signing.public_key(),
        encryption.public_key(),
        ca.certificate,
        store.load_key(ca, None),
        424242,
        now - timedelta(minutes=10),
        now + timedelta(days=30),
    )
    folder = fed.root / "outside"
    folder.mkdir()
    (folder / "chain.pem").write_bytes(
        leaf.public_bytes(Encoding.PEM) + ca.certificate.public_bytes(Encoding.PEM)
    )
    write_private_key(folder / "signing.key", signing)
    (refused,) = Credentials(fed, folder / "chain.pem", folder / "signing.key").transfers(
        GONGAN, [A_ITEM]
    )
    assert isinstance(refused, LinkError)
    assert (refused.status, refused.refused) == (403, "name-constraint")

    (record,) = until(lambda: refusals(fed, "link.refused", "name-constraint"), "the record")
    assert record["category"] == "connection"
    assert record["subject"] == {"kind": "node", "value": GONGAN}
    assert record["detail"] == {"count": 1, "kind": "certificate"}
    peer = health(fed, HUB)["peers"][GONGAN]
    assert peer["state"] == "refused"
    assert peer["refused"]["reason"] == "name-constraint"
    assert peer["refused"]["refused_by"] == HUB
    nothing_stored(fed)


def test_a_flood_of_wrong_senders_is_one_record_per_interval_with_the_count(
    fed: DaemonFederation,
) -> None:
    flood = 25
    started = time.monotonic()
    answers = own(fed, GONGAN).transfers(MINZHENG, [A_ITEM], times=flood)
    assert all(isinstance(a, LinkError) and a.refused == "sender-mismatch" for a in answers)
    assert time.monotonic() - started < INTERVAL  # the flood fits in one interval
    # At once: the first, counted 1.  After the interval: the rest, in one record.
    first = until(lambda: refusals(fed, "link.refused", "sender-mismatch"), "the first record")
    assert first[0]["detail"] == {"count": 1, "kind": "sender"}
    assert first[0]["subject"] == {"kind": "node", "value": GONGAN}
    records = until(
        lambda: (
            (r := refusals(fed, "link.refused", "sender-mismatch")) and counted(r) == flood and r
        ),
        "the count",
        timeout=4 * INTERVAL,
    )
    assert len(records) == 2, records
    assert [r["detail"]["count"] for r in records] == [1, flood - 1]
    # Warned, as rate-limited: two lines for twenty-five refusals.
    warned = [
        e
        for e in fed.log_events(HUB)
        if e.get("event", "").startswith("peer refused") and e.get("reason") == "sender-mismatch"
    ]
    assert [e["count"] for e in warned] == [1, flood - 1]
    assert all(e["level"] == "warning" for e in warned)
    peer = health(fed, HUB)["peers"][GONGAN]
    assert (peer["state"], peer["refused"]["reason"]) == ("refused", "sender-mismatch")
    assert peer["refused"]["count"] == flood
    nothing_stored(fed)


def test_a_handshake_openssl_refuses_is_recorded_by_address(fed: DaemonFederation) -> None:
    answers = own(fed, REVOKED).transfers(REVOKED, [A_ITEM], times=5)
    assert all(isinstance(a, LinkError) and a.status is None for a in answers)
    records = until(
        lambda: (r := refusals(fed, "link.refused", "revoked")) and counted(r) == 5 and r,
        "the handshake records",
        timeout=4 * INTERVAL,
    )
    assert records[0]["subject"] == {"kind": "none", "value": ""}
    assert records[0]["detail"] == {"address": "127.0.0.1", "count": 1, "kind": "handshake"}
    assert len(records) == 2
    shown = [r for r in health(fed, HUB)["refusals"] if r["address"] == "127.0.0.1"]
    assert [(r["reason"], r["kind"], r["refused_by"]) for r in shown] == [
        ("revoked", "handshake", HUB)
    ]
    nothing_stored(fed)


def test_items_whose_signer_cannot_be_verified_are_deferred_on_the_record(
    fed: DaemonFederation,
) -> None:
    # Signed in GONGAN's name with a key nobody certified: unknown-signer, deferred.
    hub_chain = load_certificates_pem((fed.folder(HUB) / "identity" / "chain.pem").read_bytes())
    contents = read_node_certificate(hub_chain[0])
    hub = PeerIdentity(contents.name, contents.signing_key, contents.encryption_key, hub_chain[0])
    impostor = seeded_identity(GONGAN, seed="impostor")
    envelope = Sealer(impostor, StaticDirectory([hub])).seal(Outgoing([HUB], b"x"), time.time())
    (answer,) = own(fed, GONGAN).transfers(GONGAN, [Item(envelope.data, (HUB,))] * 3)
    assert [r.status for r in answer.results] == [Status.DEFERRED] * 3
    records = until(
        lambda: (r := refusals(fed, "defer", "unknown-signer")) and counted(r) == 3 and r,
        "the records",
        timeout=4 * INTERVAL,
    )
    assert [r["category"] for r in records] == ["envelope", "envelope"]
    assert records[0]["subject"] == {"kind": "node", "value": GONGAN}
    assert [r["detail"] for r in records] == [
        {"count": 1, "kind": "signer"},  # at once
        {"count": 2, "kind": "signer"},  # the rest of the interval
    ]
    warned = [e for e in fed.log_events(HUB) if e.get("event", "").startswith("items deferred")]
    assert [e["count"] for e in warned] == [1, 2]
    nothing_stored(fed)


def test_an_unconfigured_department_is_refused_on_the_record_and_both_healths_say_so(
    fed: DaemonFederation,
) -> None:
    records = until(
        lambda: refusals(fed, "link.refused", "not-a-neighbour"), "the hub's record", 30
    )
    assert records[0]["subject"] == {"kind": "node", "value": MINZHENG}
    assert records[0]["detail"]["kind"] == "neighbour"
    shown = [r for r in health(fed, HUB)["refusals"] if r["peer"] == MINZHENG]
    assert [(r["reason"], r["refused_by"]) for r in shown] == [("not-a-neighbour", HUB)]

    # The department learns it from the hub's 403 to its hello (the hub admits no one here,
    # SPEC §15.2) and to any other call of the hub's endpoints: here, also a catalog search
    # beyond what it holds, which asks its parent; not "unknown", "refused" and why.
    async def search_beyond() -> None:
        async with OperatorClient.for_config(fed.config(MINZHENG)) as client:
            await client.catalog_search(beyond="1", scope="52")

    asyncio.run(search_beyond())

    def refused_at_department() -> dict[str, Any] | None:
        peer: dict[str, Any] = health(fed, MINZHENG)["peers"][HUB]
        return peer if peer["state"] == "refused" else None

    peer = until(refused_at_department, "the department's health", 30)
    assert peer["refused"]["reason"] == "not-a-neighbour"
    assert peer["refused"]["refused_by"] == HUB
    assert peer["refused"]["kind"] == "link"
    assert find(audit_records(fed, MINZHENG), "link.refused-by")
    nothing_stored(fed)
