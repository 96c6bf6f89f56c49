"""The three roles of GB/T 39477 on the daemon's local API: administrator, operator, auditor.

A department node runs as a real process (its parent hub is configured but
not started, so it has a link to retry).  Each role's token reaches its own
part of the API and nothing else (403 naming the role needed); no route lets
any role change or delete audit records; every administrative action, and
every call refused for the wrong role, is an audit record naming the role
and the person; the start puts the configuration's digest on the record.
Then, on a second node, a config from before the roles: the missing roles are
said at start, and an edited config shows up as ``changed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchnode.audit import Role
from exchnode.errors import UsageError
from exchnode.node.client import OperatorClient, OperatorError
from exchnode.node.config import load_config
from exchnode.node.roles import AREAS, PEOPLE, Credentials, area_of
from exchnode.pki import write_private_file
from tests.integration.daemons import TOKEN_FILES, DaemonFederation, config_refused, node_cli
from tests.integration.test_daemon_catalog import ok_json, one_line_error
from tests.integration.test_daemon_errors import api_in_process

pytestmark = pytest.mark.timeout(180)

HUB = "520102"
NODE = "520102.gongan"
ADMIN = "张工"
AUDITOR_NAME = "赵审计"
A_REQUEST = "00" * 16


# --- helpers -----------------------------------------------------------------------------


def token(fed: DaemonFederation, role: Role, name: str = NODE) -> str:
    return fed.token(name, role)


def call(
    fed: DaemonFederation,
    credential: Role | str | None,
    method: str,
    path: str,
    body: Any = None,
    name: str = NODE,
) -> tuple[int, Any]:
    """One request; ``credential`` is a role (its token), a raw token, or None (no header)."""
    secret = token(fed, credential, name) if isinstance(credential, Role) else credential
    status, _, raw = fed.http(name, path, secret=secret, body=body, method=method)
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        if status < 400:  # an answer that is no JSON: a failure of the test
            raise
        return status, raw.decode("utf-8", "replace")


def audit_records(fed: DaemonFederation, name: str = NODE) -> list[dict[str, Any]]:
    """Every record of the node's log, as the auditor reads it (after a sync: verify)."""
    status, report = call(fed, Role.AUDITOR, "GET", "/v1/audit/verify", name=name)
    assert status == 200, report
    assert report["ok"], report["findings"]
    status, page = call(fed, Role.AUDITOR, "GET", "/v1/audit/records?limit=10000", name=name)
    assert status == 200, page
    assert page["next"] is None
    records: list[dict[str, Any]] = page["records"]
    return records


def find(records: list[dict[str, Any]], action: str, **want: Any) -> list[dict[str, Any]]:
    return [r for r in records if r["action"] == action and all(r[k] == v for k, v in want.items())]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(tmp_path_factory.mktemp("roles"), [HUB, NODE])
    with federation.serving(NODE):
        yield federation


# --- the table and the credentials, in process ------------------------------------------------


def test_every_area_admits_exactly_one_role_and_audit_is_the_auditors() -> None:
    for area in AREAS:
        assert area.role is None or area.role in PEOPLE
    assert area_of("/v1/audit/verify").role is Role.AUDITOR  # type: ignore[union-attr]
    assert area_of("/v1/admin/peers/520100/retry").role is Role.ADMINISTRATOR  # type: ignore[union-attr]
    assert area_of("/v1/send-many").role is Role.OPERATOR  # type: ignore[union-attr]
    assert area_of("/v1/sub/incoming/ab/approve").role is Role.OPERATOR  # type: ignore[union-attr]
    assert area_of("/v1/auditx") is None  # a prefix matches whole segments only
    assert area_of("/health").role is None  # type: ignore[union-attr]


def test_credentials_are_one_per_role() -> None:
    a, o, u = "a" * 20, "o" * 20, "u" * 20
    credentials = Credentials({Role.ADMINISTRATOR: a, Role.OPERATOR: o, Role.AUDITOR: u})
    assert credentials.role_of(a) is Role.ADMINISTRATOR
    assert credentials.role_of(u) is Role.AUDITOR
    assert credentials.role_of(o) is Role.OPERATOR
    assert credentials.role_of(u[:-1] + "x") is None
    assert credentials.role_of("") is None
    with pytest.raises(UsageError, match="auditor and operator tokens are the same"):
        Credentials({Role.OPERATOR: o, Role.AUDITOR: o})
    with pytest.raises(UsageError, match="fewer than 16"):
        Credentials({Role.AUDITOR: "short"})
    with pytest.raises(UsageError, match="not a role a person holds"):
        Credentials({Role.NODE: a})
    old = Credentials({Role.OPERATOR: o})  # a config from before the roles
    assert old.roles == (Role.OPERATOR,)
    assert old.role_of(a) is None


@pytest.mark.asyncio
async def test_no_route_changes_the_audit_log_and_every_route_has_its_role() -> None:
    api = api_in_process()  # every service the daemon serves, metrics and console included
    await api.start()
    try:
        endpoints = api.endpoints()
    finally:
        await api.close()
    audit_routes = [(m, p) for m, p in endpoints if p.startswith("/v1/audit")]
    assert audit_routes  # the auditor reads ...
    assert {m for m, _ in audit_routes} <= {"GET", "HEAD"}  # ... and nothing writes
    for _, path in endpoints:
        area = area_of(path)
        assert area is not None, path
    admin = {p for _, p in endpoints if area_of(p).role is Role.ADMINISTRATOR}  # type: ignore[union-attr]
    assert "/v1/admin/peers/{name}/retry" in admin
    assert not any(p.startswith(("/v1/sub", "/v1/catalog", "/v1/audit")) for p in admin)


def test_old_config_loads_with_only_the_operator_credential(tmp_path: Path) -> None:
    fed = DaemonFederation(tmp_path, [NODE])
    path = fed.config_path(NODE)
    text = fed.config_text(
        NODE,
        'administrator_token_file = "administrator.token"',
        'auditor_token_file = "auditor.token"',
    )
    for role, file_name in TOKEN_FILES.items():
        assert (fed.folder(NODE) / file_name).stat().st_mode & 0o777 == 0o600, role
    tokens = {token(fed, role) for role in PEOPLE}
    assert len(tokens) == 3
    old = _strip_role_files(text)
    path.write_text(old)
    config = load_config(path)
    assert set(config.operator.token_files()) == {Role.OPERATOR}
    # Two roles pointing at one file would be one credential for both: refused.
    config_refused(
        path,
        old.replace("[operator]\n", '[operator]\nauditor_token_file = "operator.token"\n'),
        r"operator\.auditor_token_file: .* each role needs",
    )


def _strip_role_files(text: str) -> str:
    return "\n".join(
        line
        for line in text.splitlines()
        if not line.startswith(("administrator_token_file", "auditor_token_file"))
    )


def test_client_presents_the_credential_its_path_needs(tmp_path: Path) -> None:
    files = {}
    for role in PEOPLE:
        files[role] = tmp_path / f"{role.value}.token"
        write_private_file(files[role], f"{role.value}-token-0123456789\n".encode())
    client = OperatorClient("http://127.0.0.1:9", credentials=dict(files))
    for path, role in (
        ("/v1/audit/verify", Role.AUDITOR),
        ("/v1/admin/peers", Role.ADMINISTRATOR),
        ("/v1/send", Role.OPERATOR),
        ("/v1/sub/incoming/ab/approve", Role.OPERATOR),
    ):
        assert client._headers("GET", path) == {
            "Authorization": f"Bearer {role.value}-token-0123456789"
        }
    assert client._headers("GET", "/health") == {}
    only_operator = OperatorClient(
        "http://127.0.0.1:9",
        credentials={Role.OPERATOR: files[Role.OPERATOR]},
        config_path=tmp_path / "node.toml",
    )
    with pytest.raises(OperatorError, match=r"needs the auditor role, and .* auditor_token_file"):
        only_operator._headers("GET", "/v1/audit/verify")


# --- a running daemon ------------------------------------------------------------------------


def test_each_role_reaches_only_its_own_part(fed: DaemonFederation) -> None:
    approve = f"/v1/sub/incoming/{A_REQUEST}/approve"
    entry_body = {"operator": "x", "entries": []}
    admin_body = {"administrator": "x"}
    retry, reload = f"/v1/admin/peers/{HUB}/retry", "/v1/admin/credentials/reload"
    refused = [
        # (credential, method, path, body, role needed)
        (Role.AUDITOR, "POST", approve, {"operator": AUDITOR_NAME}, "operator"),
        (Role.AUDITOR, "POST", f"/v1/sub/incoming/{A_REQUEST}/revoke", None, "operator"),
        (Role.AUDITOR, "POST", "/v1/catalog/publish", entry_body, "operator"),
        (Role.AUDITOR, "GET", "/v1/admin/config", None, "administrator"),
        (Role.AUDITOR, "POST", retry, admin_body, "administrator"),
        (Role.AUDITOR, "POST", "/v1/send?to=520102", None, "operator"),
        (Role.OPERATOR, "GET", "/v1/audit/records", None, "auditor"),
        (Role.OPERATOR, "GET", "/v1/audit/verify", None, "auditor"),
        (Role.OPERATOR, "GET", "/v1/admin/config", None, "administrator"),
        (Role.OPERATOR, "POST", reload, admin_body, "administrator"),
        (Role.ADMINISTRATOR, "POST", approve, {"administrator": ADMIN}, "operator"),
        (Role.ADMINISTRATOR, "GET", "/v1/sub/incoming", None, "operator"),
        (Role.ADMINISTRATOR, "GET", "/v1/audit/records", None, "auditor"),
        (Role.ADMINISTRATOR, "GET", "/v1/receive", None, "operator"),
    ]  # fmt: skip
    for credential, method, path, body, needed in refused:
        status, answer = call(fed, credential, method, path, body)
        assert status == 403, (credential, path, answer)
        assert answer["code"] == "forbidden"
        assert f"needs the {needed} role" in answer["error"], answer
        assert f"this credential is the {credential.value}'s" in answer["error"]
    for credential in (None, "not-a-token-of-this-node", token(fed, Role.OPERATOR, NODE) + "x"):
        status, answer = call(fed, credential, "GET", "/v1/audit/verify")
        assert (status, answer["code"]) == (401, "unauthorized")
    # Each role's own part answers.
    assert call(fed, Role.AUDITOR, "GET", "/v1/audit/verify")[0] == 200
    assert call(fed, Role.OPERATOR, "GET", "/v1/catalog")[0] == 200
    assert call(fed, Role.OPERATOR, "GET", "/v1/sub/incoming")[0] == 200
    assert call(fed, Role.ADMINISTRATOR, "GET", "/v1/admin/peers")[0] == 200
    assert call(fed, None, "GET", "/health")[0] == 200


def test_no_role_can_change_or_delete_audit_records(fed: DaemonFederation) -> None:
    before = audit_records(fed)
    assert before
    attempts = [
        (method, path)
        for method in ("DELETE", "PUT", "POST", "PATCH")
        for path in ("/v1/audit/records", "/v1/audit/records/0", "/v1/audit", "/v1/audit/verify")
    ]
    for role in PEOPLE:
        for method, path in attempts:
            status, answer = call(fed, role, method, path, {"seq": 0, "action": "x"})
            if role is Role.AUDITOR:
                assert status in (404, 405), (role, method, path, answer)
            else:
                assert status == 403, (role, method, path, answer)
    after = audit_records(fed)
    assert after[: len(before)] == before  # nothing changed: only appended (the refusals)
    refusals = find(after[len(before) :], "api.forbidden")
    assert len(refusals) == 2 * len(attempts)  # the administrator's and the operator's tries


def test_forbidden_calls_are_on_the_record_with_role_and_person(fed: DaemonFederation) -> None:
    approve = f"/v1/sub/incoming/{A_REQUEST}/approve"
    call(fed, Role.AUDITOR, "POST", approve, {"operator": AUDITOR_NAME, "items": ["a"]})
    call(fed, Role.OPERATOR, "GET", "/v1/audit/records")
    call(fed, Role.ADMINISTRATOR, "POST", approve, {"administrator": ADMIN})
    records = audit_records(fed)
    by_auditor = find(records, "api.forbidden", actor={"role": "auditor", "name": AUDITOR_NAME})
    assert by_auditor, "the auditor's refused approval is not on the record"
    record = by_auditor[-1]
    assert record["category"] == "administration"
    assert record["outcome"] == {"status": "refused", "code": "forbidden"}
    assert record["detail"] == {"kind": "sub", "reason": "needs-operator"}
    by_operator = find(records, "api.forbidden", actor={"role": "operator", "name": "operator"})
    assert by_operator[-1]["detail"] == {"kind": "audit", "reason": "needs-auditor"}
    by_admin = find(records, "api.forbidden", actor={"role": "administrator", "name": ADMIN})
    assert by_admin[-1]["detail"] == {"kind": "sub", "reason": "needs-operator"}


def test_administrator_actions_are_on_the_record(fed: DaemonFederation) -> None:
    config = str(fed.config_path(NODE))
    shown = ok_json(node_cli("admin", "peers", "--config", config, "--json"))
    assert [(p["name"], p["relation"]) for p in shown] == [(HUB, "parent")]
    assert shown[0]["state"] in {"down", "unknown"}  # the hub is not running
    retried = node_cli("admin", "retry", HUB, "--config", config, "--administrator", ADMIN)
    assert retried.returncode == 0, retried.stderr.decode()
    assert f"retrying the link to {HUB} now" in retried.stdout.decode()
    err = one_line_error(
        node_cli("admin", "retry", "520103", "--config", config, "--administrator", ADMIN)
    )
    assert "520103 is not a neighbour of 520102.gongan" in err
    # The person is required, as for the operator's decisions.
    status, answer = call(fed, Role.ADMINISTRATOR, "POST", f"/v1/admin/peers/{HUB}/retry", {})
    assert status == 400
    assert "administrator" in answer["error"]

    records = audit_records(fed)
    actor = {"role": "administrator", "name": ADMIN}
    ok = find(records, "peer.retry", actor=actor, subject={"kind": "node", "value": HUB})
    assert ok
    assert ok[-1]["category"] == "administration"
    assert ok[-1]["outcome"] == {"status": "ok", "code": ""}
    refused = find(records, "peer.retry", actor=actor, subject={"kind": "node", "value": "520103"})
    assert refused[-1]["outcome"] == {"status": "refused", "code": "unknown-peer"}


def test_configuration_without_secrets_and_on_the_record(fed: DaemonFederation) -> None:
    status, body = call(fed, Role.ADMINISTRATOR, "GET", "/v1/admin/config")
    assert status == 200
    digest = hashlib.sha256(fed.config_path(NODE).read_bytes()).hexdigest()
    assert body["digest"] == body["file_digest"] == digest
    assert body["file_changed"] is False
    assert body["state_at_start"] == "new"
    assert body["credentials"] == ["administrator", "operator", "auditor"]
    assert body["peers"] == [{"name": HUB, "relation": "parent", "url": fed.url(HUB)}]
    text = json.dumps(body)
    for role in PEOPLE:
        assert token(fed, role) not in text
    secret = (fed.folder(NODE) / "masking.secret").read_bytes()
    assert secret.hex() not in text
    shown = node_cli("admin", "config", "--config", str(fed.config_path(NODE)))
    assert shown.returncode == 0, shown.stderr.decode()
    text_lines = shown.stdout.decode().splitlines()
    assert f"digest {digest} (new at start)" in text_lines
    assert "node.toml on disk is what runs" in text_lines
    assert "roles: administrator (yes), operator (yes), auditor (yes)" in text_lines
    status, identity = call(fed, Role.ADMINISTRATOR, "GET", "/v1/admin/identity")
    assert status == 200
    assert identity["certificate"]["days_left"] > 300
    assert re.fullmatch(r"[0-9a-f]{32}", identity["signing_key_id"])

    records = audit_records(fed)
    (loaded,) = find(records, "config.loaded")
    assert loaded["category"] == "configuration"
    assert loaded["actor"] == {"role": "node", "name": NODE}
    assert loaded["detail"] == {"digest": digest}
    assert loaded["outcome"] == {"status": "ok", "code": "new"}
    (certificate,) = find(records, "certificate.loaded")
    assert certificate["category"] == "key"
    assert certificate["detail"] == {"key_id": identity["signing_key_id"]}
    assert certificate["subject"] == {
        "kind": "certificate",
        "value": identity["certificate"]["serial"],
    }
    first = find(records, "credential.changed", actor={"role": "node", "name": NODE})
    assert sorted(r["detail"]["kind"] for r in first) == ["administrator", "auditor", "operator"]


def test_a_token_is_rotated_without_a_restart(fed: DaemonFederation) -> None:
    path = fed.folder(NODE) / TOKEN_FILES[Role.AUDITOR]
    old = token(fed, Role.AUDITOR)
    new = "rotated-auditor-token-" + os.urandom(8).hex()
    # A token equal to another role's is refused whole; the tokens in use stay.
    path.unlink()
    write_private_file(path, token(fed, Role.OPERATOR).encode() + b"\n")
    status, answer = call(
        fed, Role.ADMINISTRATOR, "POST", "/v1/admin/credentials/reload", {"administrator": ADMIN}
    )
    assert (status, answer["code"]) == (409, "invalid-credentials")
    assert "each role needs its own credential" in answer["error"]
    assert call(fed, old, "GET", "/v1/audit/verify")[0] == 200

    path.unlink()
    write_private_file(path, new.encode() + b"\n")
    config = str(fed.config_path(NODE))
    done = node_cli(
        "admin", "reload-credentials", "--config", config, "--administrator", ADMIN, "--json"
    )
    assert ok_json(done) == {
        "administrator": "unchanged",
        "operator": "unchanged",
        "auditor": "changed",
    }
    assert call(fed, old, "GET", "/v1/audit/verify")[0] == 401
    assert call(fed, new, "GET", "/v1/audit/verify")[0] == 200

    records = audit_records(fed)
    actor = {"role": "administrator", "name": ADMIN}
    (rotated,) = find(records, "credential.changed", actor=actor)
    assert rotated["category"] == "key"
    assert rotated["subject"] == {"kind": "setting", "value": "operator.auditor_token_file"}
    assert rotated["outcome"] == {"status": "ok", "code": "changed"}
    reloads = find(records, "credentials.reload", actor=actor)
    assert [r["outcome"]["status"] for r in reloads] == ["refused", "ok"]
    assert reloads[-1]["detail"] == {"count": 1}
    assert new not in json.dumps(records)


def test_a_config_from_before_the_roles_and_a_changed_config(tmp_path: Path) -> None:
    fed = DaemonFederation(tmp_path, [NODE])
    path = fed.config_path(NODE)
    try:
        fed.start(NODE)
        fed.wait_ready(NODE)
        assert fed.stop(NODE) == 0
        path.write_text(_strip_role_files(path.read_text()))
        fed.start(NODE)
        fed.wait_ready(NODE)
        missing = [e for e in fed.log_events(NODE) if e["event"] == "role without a credential"]
        assert sorted(e["role"] for e in missing) == ["administrator", "auditor"]
        assert {e["key"] for e in missing} == {
            "operator.administrator_token_file",
            "operator.auditor_token_file",
        }
        # Nobody reaches the auditor's part: the operator's token is refused there ...
        status, answer = call(fed, Role.OPERATOR, "GET", "/v1/audit/verify")
        assert status == 403
        assert "needs the auditor role" in answer["error"]
        # ... and the verb says what is missing before it asks.
        err = one_line_error(node_cli("audit", "verify", "--config", str(path)))
        assert "needs the auditor role" in err
        assert "auditor_token_file" in err
        assert call(fed, Role.OPERATOR, "GET", "/v1/catalog")[0] == 200
        assert fed.stop(NODE) == 0
    finally:
        fed.kill_all()
    page = ok_json(node_cli("audit", "records", "--offline", "--config", str(path), "--json"))
    loaded = [r for r in page["records"] if r["action"] == "config.loaded"]
    assert [r["outcome"]["code"] for r in loaded] == ["new", "changed"]
    assert loaded[1]["detail"]["digest"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded[0]["detail"]["digest"] != loaded[1]["detail"]["digest"]
    removed = [
        r
        for r in page["records"]
        if r["action"] == "credential.changed" and r["outcome"]["code"] == "removed"
    ]
    assert sorted(r["detail"]["kind"] for r in removed) == ["administrator", "auditor"]
    certificates = [r for r in page["records"] if r["action"] == "certificate.loaded"]
    assert [r["outcome"]["code"] for r in certificates] == ["new", "unchanged"]
