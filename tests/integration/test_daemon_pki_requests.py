"""A node whose keys never left it, running; a CRL file replaced under it (issue 15, item 6).

End to end with the operator's commands: ``exchnode pki csr`` in the
department's own identity folder, ``pki sign`` at the CA store, ``pki
install`` back beside the keys; the department then runs on it and exchanges
with its hub.  Its ``/health`` warns of what runs out within the thresholds.
Then the CA revokes it and the CA operator replaces the CRL file in the shared
trust folder while both nodes run: without SIGHUP or any command, the hub
reads the file again, audits the reload, applies the CRL to its live TLS
contexts, and refuses the department's handshake.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.audit import Role
from exchnode.cli import main as exchnode_main
from exchnode.pki import load_certificates_pem
from tests.integration.daemons import DaemonFederation, until
from tests.integration.test_daemon_revocation import health, hello_as, received, send
from tests.integration.test_daemon_roles import audit_records, find

pytestmark = pytest.mark.timeout(180)

HUB, DEPT = "520100", "520100.fagai"
POLL = 0.5  # [trust] crl_poll_seconds of both nodes
MARKER = "# a directory of *.pem, or a list of files\n"


def exchnode(*argv: str) -> None:
    assert exchnode_main(list(argv)) == 0, argv


def add_trust_settings(fed: DaemonFederation, name: str, *lines: str) -> None:
    path = fed.config_path(name)
    text = path.read_text("utf-8")
    assert MARKER in text
    path.write_text(text.replace(MARKER, MARKER + "".join(f"{line}\n" for line in lines), 1))


def replace_atomically(path: Path, data: bytes) -> None:
    """As a careful CA operator copies a CRL: a temporary file renamed over the old one."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(
        tmp_path_factory.mktemp("csr"), [HUB, DEPT], library_calendar=True
    )
    # The department's keys as 'node init' made them (at the CA) go; its own come instead.
    identity = federation.folder(DEPT) / "identity"
    shutil.rmtree(identity)
    signed = federation.root / "signed"
    exchnode("pki", "csr", DEPT, "--out", str(identity))
    request = identity / "request.csr"
    store = str(federation.root / "pki")
    exchnode("pki", "sign", str(request), "--issuer", HUB, "--dir", store, "--out", str(signed))
    exchnode("pki", "install", str(signed), "--keys", str(identity))
    # The hub's static directory learns the department's new chain, as its operator copies it.
    shutil.copyfile(identity / "chain.pem", federation.root / "directory" / f"{DEPT}.pem")
    add_trust_settings(federation, HUB, f"crl_poll_seconds = {POLL}")
    add_trust_settings(
        federation, DEPT, f"crl_poll_seconds = {POLL}", "certificate_warning_days = 400"
    )
    with federation.serving(HUB, DEPT):
        yield federation


def test_a_node_with_a_requested_certificate_exchanges(fed: DaemonFederation) -> None:
    until(lambda: send(fed, DEPT, HUB, b"from my own keys")[0] == 200, "dept sends", 30)
    until(lambda: b"from my own keys" in received(fed, HUB), "hub receives", 30)
    until(lambda: send(fed, HUB, DEPT, b"and back")[0] == 200, "hub sends", 30)
    until(lambda: b"and back" in received(fed, DEPT), "dept receives", 30)


def test_health_warns_of_what_runs_out(fed: DaemonFederation) -> None:
    trust = health(fed, DEPT)["trust"]
    roles = {item["role"]: item for item in trust["certificates"]}
    assert roles["own"]["subject"] == f"CN={DEPT},OU=node,O=exchnode"
    # 365-day certificates (its own, its CA's) under a 400-day threshold; the root's 10 years not.
    assert roles["own"]["state"] == "expiring"
    assert roles["root"]["state"] == "current"
    warned = {(w["certificate"], w["subject"]) for w in trust["warnings"] if "certificate" in w}
    assert ("own", f"CN={DEPT},OU=node,O=exchnode") in warned
    assert ("root", "CN=520000,OU=ca,O=exchnode") not in warned
    lines = [e for e in fed.log_events(DEPT) if e.get("event") == "certificate needs attention"]
    assert any(line["certificate"] == "own" for line in lines)
    # The working-day calendar, from the library by default, says where it comes from.
    (calendar,) = [e for e in fed.log_events(DEPT) if e.get("event") == "working-day calendar"]
    assert calendar["source"].startswith("chinese-calendar ")
    # The hub keeps the default 30 days: nothing to say.
    assert [w for w in health(fed, HUB)["trust"]["warnings"] if "certificate" in w] == []


def test_a_revoked_peer_is_refused_once_the_crl_file_is_replaced(fed: DaemonFederation) -> None:
    assert hello_as(fed, DEPT, HUB) == "ok"
    (mine,) = load_certificates_pem((fed.folder(DEPT) / "identity" / "node.crt").read_bytes())
    serial = str(mine.serial_number)  # 'node init' issued another one at the CA, never used
    _, crl = fed.store.revoke(HUB, serial, reason="key-compromise", now=datetime.now(UTC))
    replace_atomically(
        fed.root / "trust" / "crls" / f"{HUB}.crl.pem", crl.public_bytes(Encoding.PEM)
    )
    started = time.monotonic()
    until(lambda: hello_as(fed, DEPT, HUB) != "ok", "the hub refuses the revoked department", 15)
    assert time.monotonic() - started < 10 * POLL + 5
    reloads = find(audit_records(fed, HUB), "crl.reload")
    by_files = [r for r in reloads if r["detail"].get("kind") == "file-change"]
    assert by_files, reloads
    assert by_files[-1]["actor"] == {"role": Role.NODE.value, "name": HUB}
    assert by_files[-1]["outcome"]["status"] == "ok"
    digest = crl.fingerprint(hashes.SHA256()).hex()
    applied = find(audit_records(fed, HUB), "crl.applied")
    assert any(r["detail"].get("digest") == digest for r in applied), applied


def test_a_crl_file_that_does_not_read_keeps_the_crls_in_use(fed: DaemonFederation) -> None:
    path = fed.root / "trust" / "crls" / f"{HUB}.crl.pem"
    good = path.read_bytes()
    replace_atomically(path, b"-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n")
    until(
        lambda: any(
            r["detail"].get("kind") == "file-change" and r["outcome"]["status"] == "refused"
            for r in find(audit_records(fed, HUB), "crl.reload")
        ),
        "a refused reload on the record",
        15,
    )
    # The revocation in use stays (health lists the CRL the node checks peers against).
    (held,) = [c for c in health(fed, HUB)["trust"]["crls"] if f"CN={HUB}," in c["issuer"]]
    assert held["revoked"] == 1
    replace_atomically(path, good)
