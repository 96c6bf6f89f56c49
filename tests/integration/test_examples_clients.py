"""The integrators' examples run against live nodes: curl (examples/curl) and Java (examples/java).

Two daemons -- a hub and one of its departments -- started once for the module.
Each example sends from the department to the hub, receives and acknowledges
at the hub, asks the status at the department and publishes a catalog entry
there; what it did is then checked from the nodes' side, through their own
API: the hub holds nothing more for its application (acknowledged), the
department has the hub's receipt for the message, and the entry is in the
department's catalog with the operator named on its audit record.

The Java client is compiled with the machine's ``javac`` (JDK 17+) and run with
``java``.  Without a JDK the test is skipped -- unless ``EXCHNODE_REQUIRE_JDK=1``
(CI's ``.ci/run`` sets it), where a missing JDK fails the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemons import REPO, DaemonFederation

pytestmark = pytest.mark.timeout(180)

HUB = "520102"
GONGAN = "520102.gongan"
OPERATOR = "张三"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(tmp_path_factory.mktemp("clients"), [HUB, GONGAN])
    with federation.serving(HUB, GONGAN):
        yield federation


def token_file(fed: DaemonFederation, name: str, role: str = "operator") -> Path:
    return fed.folder(name) / f"{role}.token"


def api(fed: DaemonFederation, name: str, path: str, role: str = "operator") -> Any:
    """GET ``path`` on ``name``'s API with ``role``'s token: the JSON answer."""
    token = token_file(fed, name, role).read_text().strip()
    request = urllib.request.Request(
        fed.operator_url(name) + path, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=40) as answer:
        return json.loads(answer.read())


def check_from_the_nodes(fed: DaemonFederation, message_id: str, code: str) -> None:
    """What an example did, as the nodes hold it."""
    # Acknowledged at the hub: nothing is waiting for its application any more.
    assert api(fed, HUB, "/v1/receive?max=10&wait=0")["deliveries"] == []
    # The department has the hub's signed receipt for the message.
    status = api(fed, GONGAN, f"/v1/status/{message_id}?wait=10&recipient={HUB}")
    assert status["delivered_to"] == [HUB], status
    assert status["settled"] is True
    # The entry is in the department's catalog, signed by the node ...
    (record,) = api(fed, GONGAN, f"/v1/catalog?code={code}")["records"]
    assert (record["provider"], record["code"], record["status"]) == (GONGAN, code, "published")
    assert record["entry"]["data_items"][0]["name"] == "身份证号"
    # ... and on its audit record with the operator the example named (verify: stored now).
    assert api(fed, GONGAN, "/v1/audit/verify", role="auditor")["ok"] is True
    records = api(fed, GONGAN, "/v1/audit/records?limit=10000", role="auditor")["records"]
    assert any(
        r.get("action") == "catalog.publish"
        and r["actor"] == {"role": "operator", "name": OPERATOR}
        and r["subject"]["value"] == code
        for r in records
    ), [r.get("action") for r in records]


def test_the_curl_example_sends_receives_acks_and_publishes(fed: DaemonFederation) -> None:
    code = "101001/000001"
    text = "hello from the curl example"
    env = dict(os.environ) | {
        "SENDER_URL": fed.operator_url(GONGAN),
        "SENDER_TOKEN_FILE": str(token_file(fed, GONGAN)),
        "RECEIVER_URL": fed.operator_url(HUB),
        "RECEIVER_TOKEN_FILE": str(token_file(fed, HUB)),
        "TO": HUB,
        "OPERATOR": OPERATOR,
        "CODE": code,
        "TEXT": text,
    }
    script = REPO / "examples" / "curl" / "exchange.sh"
    ran = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, timeout=120, check=False
    )
    out = ran.stdout.decode()
    assert ran.returncode == 0, out + ran.stderr.decode()
    message_id = re.search(r'send: .*"message_id": "([0-9a-f]+)"', out)
    assert message_id is not None, out
    assert f"payload: {text}" in out
    assert '"acked": 1' in out
    assert f'"delivered_to": ["{HUB}"]' in out
    check_from_the_nodes(fed, message_id.group(1), code)


def jdk() -> tuple[str, str] | None:
    javac, java = shutil.which("javac"), shutil.which("java")
    return (javac, java) if javac and java else None


def test_the_java_client_sends_receives_acks_and_publishes(
    fed: DaemonFederation, tmp_path: Path
) -> None:
    tools = jdk()
    if tools is None:
        if os.environ.get("EXCHNODE_REQUIRE_JDK") == "1":
            pytest.fail("EXCHNODE_REQUIRE_JDK=1 but javac or java is not on PATH")
        pytest.skip("no JDK (javac, java) on this machine")
    javac, java = tools
    source = REPO / "examples" / "java" / "ExchnodeExample.java"
    compiled = subprocess.run(
        [javac, "-Xlint:all", "-Werror", "-d", str(tmp_path), str(source)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stderr.decode()

    def run(command: str, name: str, *argv: str) -> str:
        ran = subprocess.run(
            [java, "-cp", str(tmp_path), "ExchnodeExample", command,
             "--url", fed.operator_url(name), "--token-file", str(token_file(fed, name)), *argv],
            capture_output=True,
            timeout=90,
            check=False,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout.decode() + ran.stderr.decode()
        return ran.stdout.decode("utf-8")

    code = "101001/000002"
    text = "你好 from Java \"quoted\""
    sent = run("send", GONGAN, "--to", HUB, "--text", text, "--key", "java-example-1")
    match = re.fullmatch(rf"sent ([0-9a-f]+) to \[{HUB}\]\n", sent)
    assert match is not None, sent
    message_id = match.group(1)
    # The same idempotency key again: the first message, nothing new sent.
    again = run("send", GONGAN, "--to", HUB, "--text", text, "--key", "java-example-1")
    assert again == sent

    received = run("receive", HUB, "--wait", "30")
    assert f"received {message_id} from {GONGAN} (text/plain; charset=utf-8): {text}\n" in received
    assert received.endswith("acknowledged 1\n"), received

    published = run("publish", GONGAN, "--operator", OPERATOR, "--code", code)
    assert published == f"published {code} version 1 of {GONGAN}\n"
    status = run("status", GONGAN, "--message-id", message_id, "--wait", "10")
    assert status == f"settled true, delivered to [{HUB}], failed for []\n"
    check_from_the_nodes(fed, message_id, code)

    refused = subprocess.run(
        [java, "-cp", str(tmp_path), "ExchnodeExample", "send", "--url", fed.operator_url(GONGAN),
         "--token-file", str(token_file(fed, GONGAN, "auditor")), "--to", HUB, "--text", "x"],
        capture_output=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "[forbidden, HTTP 403]" in refused.stderr.decode()
