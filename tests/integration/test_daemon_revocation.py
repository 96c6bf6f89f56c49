"""Revocation travels between running daemons (issue 12, item 2).

A department is revoked at the CA, and its new CRL is given to the PROVINCE
node only (``exchnode node admin crl add``).  Within one directory refresh,
and with no restart anywhere, the department's own county hub refuses it and
so does another city: their TLS handshakes fail, the county hub takes none of
its transfers, and both have it on their audit record.  The province keeps
the CRL across a restart; health lists each CRL's issuer, number and next
update, and warns ``crl_warning_hours`` before a CRL runs out.  SIGHUP (and
``admin crl reload``) reads ``[trust] crls`` again, and what it finds travels
the same way.  A CRL that fails the one CRL check is refused whole, with its
reason, and nothing is taken.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.aio import LinkClient, LinkError, TlsFiles, make_context, write_verify_bundle
from exchnode.audit import Role
from exchnode.pki import TrustStore, load_certificates_pem, load_crls_pem, verify_node_certificate
from tests.integration.daemons import DaemonFederation, node_cli, until
from tests.integration.test_daemon_catalog import ok_json, one_line_error
from tests.integration.test_daemon_roles import audit_records, call, find

pytestmark = pytest.mark.timeout(300)

PROVINCE, CITY, COUNTY = "520000", "520100", "520102"
DEPT = "520102.gongan"  # revoked at the province's CA store, CRL given to the province only
OTHER_CITY = "522300"
FAGAI = "520100.fagai"  # revoked later, its CRL found by SIGHUP
NAMES = [PROVINCE, CITY, COUNTY, DEPT, OTHER_CITY, FAGAI]
#: [timers] directory_refresh of every node: the bound a revocation must travel within
REFRESH = 4.0
ADMIN = "张工"


def configure(fed: DaemonFederation, name: str, **timers: float) -> None:
    path = fed.config_path(name)
    text = path.read_text("utf-8")
    for key, value in timers.items():
        commented = f"# {key} = "
        assert commented in text, key  # the scaffold documents every timer
        start = text.index(commented)
        end = text.index("\n", start)
        text = text[:start] + f"{key} = {value}" + text[end:]
    path.write_text(text, "utf-8")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(
        tmp_path_factory.mktemp("revocation"), NAMES, directory_mode="signed"
    )
    for name in NAMES:
        configure(federation, name, directory_refresh=REFRESH, log_repeat_interval=2.0)
    # One node warns long before its CRLs run out (they are valid 7 days): every CRL it holds.
    path = federation.config_path(OTHER_CITY)
    text = path.read_text("utf-8")
    marker = "# a directory of *.pem, or a list of files\n"
    path.write_text(text.replace(marker, marker + "crl_warning_hours = 200\n", 1), "utf-8")
    with federation.serving(*NAMES):
        yield federation


# --- helpers --------------------------------------------------------------------------------


def operator_call(
    fed: DaemonFederation, name: str, method: str, path: str, body: bytes | None = None
) -> tuple[int, Any]:
    token = (fed.folder(name) / "operator.token").read_text().strip()
    return call(fed, token, method, path, None if body is None else json.loads(body), name=name)


def send(fed: DaemonFederation, sender: str, recipient: str, payload: bytes) -> tuple[int, Any]:
    token = (fed.folder(sender) / "operator.token").read_text().strip()
    request = urllib.request.Request(
        fed.operator_url(sender) + f"/v1/send?to={recipient}",
        data=payload,
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def received(fed: DaemonFederation, name: str) -> list[bytes]:
    status, answer = operator_call(fed, name, "GET", "/v1/receive?max=50&wait=0&ack=1")
    assert status == 200, answer
    return [base64.b64decode(item["payload"]) for item in answer["deliveries"]]


def health(fed: DaemonFederation, name: str) -> dict[str, Any]:
    status, body = fed.health(name)
    assert status == 200, body
    return body


def hello_as(fed: DaemonFederation, me: str, target: str) -> str:
    """A hello to ``target`` with ``me``'s real keys: "ok", or how it was refused."""
    root = fed.root
    roots = load_certificates_pem((root / "trust" / "roots.pem").read_bytes())
    cas = load_certificates_pem((root / "trust" / "cas.pem").read_bytes())
    crls = [
        c
        for p in sorted((root / "trust" / "crls").glob("*.pem"))
        for c in load_crls_pem(p.read_bytes())
    ]
    verify = write_verify_bundle(root / f"hello-{me}.pem", roots, crls)
    identity = fed.folder(me) / "identity"
    files = TlsFiles(identity / "chain.pem", identity / "signing.key", verify)
    trust = TrustStore(roots, crls)

    def authenticate(certificate: x509.Certificate) -> str:
        return str(verify_node_certificate(certificate, cas, trust, datetime.now(UTC)).name)

    async def go() -> str:
        client = LinkClient(
            target, fed.url(target), make_context(files, server=False), authenticate, timeout=10
        )
        try:
            await client.hello()
            return "ok"
        except LinkError as exc:
            if exc.refused == "not-a-neighbour":
                return "ok"  # its certificate passed; it is only not admitted (SPEC §15.2)
            return f"refused: HTTP {exc.status}" if exc.status else "refused: connection"
        finally:
            await client.close()
            await asyncio.sleep(0.1)  # let the TLS transports the peer closed finish closing

    return asyncio.run(go())


def revoke(fed: DaemonFederation, name: str) -> x509.CertificateRevocationList:
    _, crl = fed.store.revoke(CITY, name, reason="key-compromise", now=datetime.now(UTC))
    return crl


def refused_records(fed: DaemonFederation, name: str, reason: str) -> list[dict[str, Any]]:
    return [
        r
        for r in find(audit_records(fed, name), "link.refused")
        if r["outcome"] == {"status": "refused", "code": reason}
    ]


def crl_of(body: dict[str, Any], division: str) -> dict[str, Any]:
    (crl,) = [c for c in body["trust"]["crls"] if f"CN={division}" in c["issuer"]]
    return dict(crl)


# --- the tests --------------------------------------------------------------------------------


def test_a_crl_given_to_the_province_reaches_every_node_within_one_refresh(
    fed: DaemonFederation,
) -> None:
    # Before: the department's messages reach the other city, and both hubs take its TLS.
    until(lambda: send(fed, DEPT, OTHER_CITY, b"before")[0] == 200, "keys known", 60)
    until(lambda: b"before" in received(fed, OTHER_CITY), "delivered before", 60)
    assert hello_as(fed, DEPT, OTHER_CITY) == "ok"
    assert hello_as(fed, DEPT, COUNTY) == "ok"

    crl = revoke(fed, DEPT)
    pem = fed.root / "revocation.crl.pem"
    pem.write_bytes(crl.public_bytes(Encoding.PEM))
    config = str(fed.config_path(PROVINCE))
    added = node_cli("admin", "crl", "add", str(pem), "--config", config, "--administrator", ADMIN)
    started = time.monotonic()
    assert added.returncode == 0, added.stderr.decode()
    assert "520100" in added.stdout.decode()

    # Within one directory refresh, no restart: the other city and the county hub refuse it.
    until(lambda: hello_as(fed, DEPT, OTHER_CITY) != "ok", "other city refuses", REFRESH)
    until(lambda: hello_as(fed, DEPT, COUNTY) != "ok", "county hub refuses", REFRESH)
    elapsed = time.monotonic() - started
    assert elapsed < REFRESH, elapsed

    # Its own hub takes none of its transfers now; the message stays with the department.
    assert send(fed, DEPT, OTHER_CITY, b"after")[0] == 200
    time.sleep(REFRESH)
    assert b"after" not in received(fed, OTHER_CITY)
    dept = health(fed, DEPT)
    assert dept["queued"]["count"] >= 1
    assert dept["peers"][COUNTY]["state"] in {"refused", "down"}

    # On the record at both, with the reason; the county hub also cut the open link.
    until(lambda: refused_records(fed, OTHER_CITY, "revoked"), "other city's record", 10)
    until(lambda: refused_records(fed, COUNTY, "revoked"), "county hub's record", 10)
    # The county hub, dialling its child (directory pulls), learns the name: on the record
    # with it, and its health shows the department refused, and why.
    named = {"kind": "node", "value": DEPT}
    until(
        lambda: [r for r in refused_records(fed, COUNTY, "revoked") if r["subject"] == named],
        "the county hub's record naming the department",
        2 * REFRESH,
    )
    shown = health(fed, COUNTY)["peers"][DEPT]
    assert (shown["state"], shown["refused"]["reason"]) == ("refused", "revoked")
    assert shown["refused"]["refused_by"] == COUNTY
    applied = [e for e in fed.log_events(COUNTY) if e.get("event") == "revocation lists applied"]
    assert any(e.get("connections_cut", 0) >= 1 for e in applied), applied
    # The province's administrator is on the record with the CRL's fingerprint.
    (record,) = find(audit_records(fed, PROVINCE), "crl.add")
    assert record["actor"] == {"role": "administrator", "name": ADMIN}
    assert record["outcome"]["status"] == "ok"

    # Health: each CRL's issuer, number and next update; no warnings with 7-day CRLs.
    province = health(fed, PROVINCE)
    listed = crl_of(province, "520100")
    assert (
        listed["number"] == crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    )
    next_update = crl.next_update_utc
    assert next_update is not None
    assert listed["next_update"].endswith("+08:00")  # the one convention: ISO 8601, CST
    assert datetime.fromisoformat(listed["next_update"]) == next_update
    assert listed["state"] == "current"
    assert listed["revoked"] == 1
    assert province["trust"]["crl_warning_hours"] == 48.0
    assert province["trust"]["warnings"] == []
    # The other city, which warns 200 h ahead, warns of every one.
    other = health(fed, OTHER_CITY)["trust"]
    assert other["crl_warning_hours"] == 200.0
    assert {w["state"] for w in other["warnings"]} == {"expiring"}
    assert len(other["warnings"]) == len(other["crls"]) >= 3


def test_the_added_crl_outlives_a_restart_of_the_province(fed: DaemonFederation) -> None:
    number = crl_of(health(fed, PROVINCE), "520100")["number"]
    assert fed.stop(PROVINCE) == 0
    kept = list((fed.folder(PROVINCE) / "state" / "crls").glob("*.crl.pem"))
    assert len(kept) == 1
    fed.start(PROVINCE)
    fed.wait_ready(PROVINCE)
    assert crl_of(health(fed, PROVINCE), "520100")["number"] == number


def test_a_node_restarted_after_learning_a_revocation_still_refuses(
    fed: DaemonFederation,
) -> None:
    # The other city learnt the revocation from the directory, not from its files: after a
    # restart its cache brings it back, and it must reach TLS again at once.
    assert hello_as(fed, DEPT, OTHER_CITY) != "ok"
    assert fed.stop(OTHER_CITY) == 0
    fed.start(OTHER_CITY)
    fed.wait_ready(OTHER_CITY)
    until(lambda: hello_as(fed, DEPT, OTHER_CITY) != "ok", "refused after the restart", REFRESH)


def test_a_crl_that_fails_the_check_is_refused_whole(fed: DaemonFederation) -> None:
    genuine = load_crls_pem((fed.root / "revocation.crl.pem").read_bytes())[0]
    der = bytearray(genuine.public_bytes(Encoding.DER))
    der[-3] ^= 0x01  # the signature
    forged = fed.root / "forged.crl.pem"
    forged.write_bytes(
        b"-----BEGIN X509 CRL-----\n" + base64.encodebytes(bytes(der)) + b"-----END X509 CRL-----\n"
    )
    config = str(fed.config_path(PROVINCE))
    err = one_line_error(
        node_cli("admin", "crl", "add", str(forged), "--config", config, "--administrator", ADMIN)
    )
    assert "bad-certificate-signature" in err
    assert "nothing was taken" in err
    junk = fed.root / "junk.pem"
    junk.write_text("not a CRL\n")
    err = one_line_error(
        node_cli("admin", "crl", "add", str(junk), "--config", config, "--administrator", ADMIN)
    )
    assert "pem" in err
    refused = [
        r
        for r in find(audit_records(fed, PROVINCE), "crl.add")
        if r["outcome"]["status"] == "refused"
    ]
    assert [r["outcome"]["code"] for r in refused] == ["bad-certificate-signature"]
    assert len(list((fed.folder(PROVINCE) / "state" / "crls").glob("*.pem"))) == 1


def test_sighup_reads_trust_crls_again_and_what_it_finds_travels(fed: DaemonFederation) -> None:
    assert hello_as(fed, FAGAI, CITY) == "ok"
    crl = revoke(fed, FAGAI)
    # The CA operator writes the fresh CRL where [trust] crls points (shared by these nodes,
    # but only the province is told to read it again).
    (fed.root / "trust" / "crls" / "520100.crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
    fed.processes[PROVINCE].send_signal(signal.SIGHUP)
    until(lambda: hello_as(fed, FAGAI, CITY) != "ok", "the city refuses fagai", 2 * REFRESH)
    until(
        lambda: any(e.get("event") == "crls reloaded" for e in fed.log_events(PROVINCE)),
        "reload logged",
        5,
    )
    # The administrator's verb does the same, on the record.
    config = str(fed.config_path(PROVINCE))
    answer = ok_json(
        node_cli("admin", "crl", "reload", "--config", config, "--administrator", ADMIN, "--json")
    )
    assert any("CN=520100" in c["issuer"] for c in answer["current"])
    assert find(audit_records(fed, PROVINCE), "crl.reload")
    status, shown = call(fed, Role.ADMINISTRATOR, "GET", "/v1/admin/crls", name=PROVINCE)
    assert status == 200
    assert crl_of({"trust": shown}, "520100")["revoked"] == 2
