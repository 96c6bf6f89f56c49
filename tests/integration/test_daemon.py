"""The reference daemon (node/): config validation, init, real processes on loopback.

Every daemon here is a separate ``python -m exchnode.node run`` process with its own
SQLite store and mutual TLS; the shell verbs run as processes too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from exchnode.aio import Delivery, Node, NodeConfig
from exchnode.errors import UsageError
from exchnode.node.config import ConfigError, load_config
from exchnode.node.inbox import Inbox
from exchnode.node.operator import OperatorApi
from exchnode.node.scaffold import InitOptions, export_trust, init_node
from tests.integration.daemons import NODE, DaemonFederation, node_cli, node_env

pytestmark = pytest.mark.timeout(120)

HUB = "520102"
GONGAN = "520102.gongan"
MINZHENG = "520102.minzheng"

MINIMAL = """
[node]
name = "520102.gongan"
level = "county"

[[peers]]
name = "520102"
relation = "parent"
url = "https://127.0.0.1:7443"
"""


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def added(section: str) -> tuple[str, str]:
    """A change to MINIMAL: ``section`` added (before its peers)."""
    return ("[[peers]]", f"{section}\n[[peers]]")


# --- configuration ------------------------------------------------------------------


def test_minimal_config_loads_with_paths_relative_to_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    config = load_config(write_config(tmp_path, MINIMAL))
    assert config.name == GONGAN
    assert config.identity.chain == tmp_path / "identity" / "chain.pem"
    assert config.trust.crls == (tmp_path / "trust" / "crls",)
    assert config.store_path == tmp_path / "state" / "store.sqlite"
    assert config.operator.url == "http://127.0.0.1:7480"
    assert [(p.name, p.relation.value) for p in config.peers] == [(HUB, "parent")]


def test_the_node_settings_map_onto_node_config_one_to_one(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'level = "county"',
        'level = "county"\nlisten = "127.0.0.1:7444"\n'
        '[directory]\nmode = "signed"\nadvertise = "https://10.0.0.9:7444"\n'
        "[limits]\ntransfer_items = 7\n[timers]\ninbox_rescan = 3\ndrain_timeout = 5",
        1,
    )
    config = load_config(write_config(tmp_path, text))
    node = config.node_config
    assert node.peers == config.peers
    assert node.listen == ("127.0.0.1", 7444)
    assert node.advertise == "https://10.0.0.9:7444"
    assert node.limits.transfer_items == 7
    assert node.timers == config.timers
    assert node.timers.inbox_rescan == 3.0
    default = NodeConfig()  # what node.toml does not set is the library's
    assert (node.backoff, node.seal_policy, node.open_policy) == (
        default.backoff,
        default.seal_policy,
        default.open_policy,
    )


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (('level = "county"', 'level = "city"'), "node.level", "does not match"),
        (('name = "520102.gongan"', 'name = "52010.x"'), "node.name", "6 digits"),
        (('level = "county"', 'level = "county"\nlisten = "nope"'), "node.listen", "host:port"),
        (('relation = "parent"', 'relation = "boss"'), "peers[0].relation", "one of"),
        (('url = "https://127.0.0.1:7443"', 'url = "http://x:1"'), "peers[0].url", "https"),
        (('name = "520102"', 'name = "520102.x"'), "peers", "must be a hub"),
        (added("[limits]\nmax_queue_items = 5"), "limits.max_queue_items", "unknown setting"),
        (added('[limits]\ntransfer_items = "many"'), "limits.transfer_items", "must be an integer"),
        (added("[limits]\ntransfer_items = 0"), "limits.transfer_items", "positive"),
        (added("[limits]\ntransfer_bytes = 9999999999"), "limits", "max_transfer_bytes"),
        (added("[timers]\nlink_timeout = -1"), "timers.link_timeout", "positive"),
        (added('[operator]\nlisten = "0.0.0.0:7480"'), "operator.listen", "loopback"),
        (added('[directory]\nmode = "hub-synced"'), "directory.mode", "one of static, signed"),
        (
            added('[identity]\npassphrase_file = "p"\npassphrase_env = "P"'),
            "identity.passphrase_env",
            "not both",
        ),
        (added("[trust]\nroots = 5"), "trust.roots", "list of paths"),
        (added("[nodes]"), "nodes", "unknown section"),
        (
            added('[directory]\nmode = "signed"\ncertificates = "d"'),
            "directory.certificates",
            "only for mode",
        ),
        (
            added('[directory]\nmode = "static"\nadvertise = "https://a:1"'),
            "directory.advertise",
            "only for mode",
        ),
        (
            (
                'level = "county"',
                'level = "county"\nlisten = "0.0.0.0:7443"\n[directory]\nmode = "signed"',
            ),
            "directory.advertise",
            "required when node.listen is the wildcard",
        ),
        (
            added('[directory]\nmode = "signed"\nadvertise = "tcp://x"'),
            "directory.advertise",
            "https://host:port",
        ),
    ],
)
def test_config_errors_name_file_and_key(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    old, new = change
    assert old in MINIMAL
    path = write_config(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message
    assert "\n" not in message


def test_config_missing_name_and_broken_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"node\.name: is required"):
        load_config(write_config(tmp_path, '[node]\nlevel = "city"\n'))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write_config(tmp_path, "[node\n"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")


def test_remote_operator_api_needs_explicit_permission(tmp_path: Path) -> None:
    text = MINIMAL + '\n[operator]\nlisten = "0.0.0.0:7480"\nallow_remote = true\n'
    assert load_config(write_config(tmp_path, text)).operator.host == "0.0.0.0"


def test_run_with_a_bad_config_is_one_line_and_status_1(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL.replace('"county"', '"province"'))
    completed = node_cli("run", "--config", str(path))
    assert completed.returncode == 1
    lines = completed.stderr.decode().splitlines()
    assert lines == [
        f"python -m exchnode.node: error: {path}: node.level: 'province' does not match "
        "520102.gongan, a county department"
    ]


def test_run_names_the_missing_identity_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL)
    completed = node_cli("run", "--config", str(path))
    assert completed.returncode == 1
    (line,) = completed.stderr.decode().splitlines()
    assert f"identity.chain: {tmp_path / 'identity' / 'chain.pem'} does not exist" in line
    assert "exchnode pki issue-node 520102.gongan" in line


# --- init --------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def exchnode(*argv: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """``python -m exchnode.cli ARGV`` as a process, from ``/``; its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "exchnode.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        **options,
    )


def pki(*argv: str) -> None:
    """``exchnode pki ARGV``, which must succeed."""
    done = exchnode("pki", *argv)
    assert done.returncode == 0, done.stderr


def test_init_with_a_ca_writes_0600_keys_and_a_loadable_config(tmp_path: Path) -> None:
    pki("init-root", "520000", "--dir", str(tmp_path / "pki"))
    pki("issue-ca", "520100", "--issuer", "520000", "--dir", str(tmp_path / "pki"))
    folder = tmp_path / "fagai"
    completed = node_cli(
        "init",
        "--name",
        "520100.fagai",
        "--level",
        "city",
        "--dir",
        str(folder),
        "--ca-dir",
        str(tmp_path / "pki"),
        "--parent",
        "520100=https://127.0.0.1:7443",
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout.decode()
    assert "issued the certificate of 520100.fagai by CA 520100" in out
    for secret in ("identity/signing.key", "identity/encryption.key", "operator.token"):
        assert _mode(folder / secret) == 0o600, secret
    config = load_config(folder / "node.toml")
    config.check_files()
    assert config.name == "520100.fagai"
    assert [(p.name, p.relation.value, p.url) for p in config.peers] == [
        ("520100", "parent", "https://127.0.0.1:7443")
    ]
    assert (folder / "directory" / "520100.fagai.pem").is_file()
    assert (folder / "trust" / "crls" / "520100.crl.pem").is_file()
    # Every setting init leaves at its default is written, commented, for the operator.
    text = (folder / "node.toml").read_text()
    assert "# transfer_items = 1024" in text
    assert "# drain_timeout = 10.0" in text

    again = node_cli("init", "--name", "520100.fagai", "--level", "city", "--dir", str(folder))
    assert again.returncode == 1
    assert b"already exists" in again.stderr


def test_init_without_a_ca_says_what_the_ca_must_provide(tmp_path: Path) -> None:
    folder = tmp_path / "hub"
    completed = node_cli("init", "--name", "520100", "--level", "city", "--dir", str(folder))
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout.decode()
    assert "exchnode pki issue-node 520100 --issuer" in out
    assert _mode(folder / "operator.token") == 0o600
    assert not (folder / "identity" / "signing.key").exists()
    config = load_config(folder / "node.toml")
    with pytest.raises(ConfigError, match=r"identity\.chain"):
        config.check_files()


def test_init_refuses_a_level_that_does_not_match(tmp_path: Path) -> None:
    completed = node_cli(
        "init", "--name", "520102.gongan", "--level", "city", "--dir", str(tmp_path / "x")
    )
    assert completed.returncode == 1
    assert completed.stderr.decode().splitlines() == [
        "python -m exchnode.node: error: --level city does not match 520102.gongan, "
        "a county department"
    ]
    assert not (tmp_path / "x").exists()


# --- the operator API in process: phases, token, leases -------------------------------------


class _FakeNode:
    """Just enough of a Node for the operator API before the node runs."""

    name = GONGAN
    address = None

    def __init__(self) -> None:
        self.acked: list[str] = []
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()

    async def deliveries(self) -> AsyncIterator[Delivery]:
        while True:
            yield await self.queue.get()

    async def ack(self, deliveries: list[Delivery]) -> None:
        self.acked.extend(d.message_id.hex() for d in deliveries)


def _delivery(number: int) -> Delivery:
    return Delivery(
        sender=MINZHENG,
        message_id=bytes([number]) * 16,
        kind="data",
        content_type="text/plain",
        payload=b"p%d" % number,
        created_ms=0,
        expires_ms=1,
        receipt_requested=False,
        seq=number,
        opened=cast(Any, None),
        _ack=cast(Any, None),
    )


@pytest.mark.asyncio
async def test_operator_api_health_503_while_starting_and_token_required() -> None:
    api = OperatorApi(
        cast(Node, _FakeNode()),
        host="127.0.0.1",
        port=0,
        token="t" * 32,
        lease_seconds=60,
        max_body_bytes=1024,
        capacity=8,
    )
    host, port = await api.start()
    base = f"http://{host}:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/health") as response:
                assert response.status == 503
                assert (await response.json())["status"] == "starting"
            async with session.post(base + "/v1/send?to=520102", data=b"x") as response:
                assert response.status == 401
                assert (await response.json())["code"] == "unauthorized"
            headers = {"Authorization": "Bearer " + "t" * 31 + "u"}
            async with session.get(base + "/v1/receive", headers=headers) as response:
                assert response.status == 401
            headers = {"Authorization": "Bearer " + "t" * 32}
            async with session.get(base + "/v1/receive", headers=headers) as response:
                assert response.status == 503  # right token, but the node is not serving yet
    finally:
        await api.close()


@pytest.mark.asyncio
async def test_inbox_leases_expire_and_ack_is_once() -> None:
    node = _FakeNode()
    clock = [0.0]
    inbox = Inbox(cast(Node, node), capacity=8, lease_seconds=5, clock=lambda: clock[0])
    task = asyncio.get_running_loop().create_task(inbox.run())
    try:
        for number in (1, 2, 3):
            node.queue.put_nowait(_delivery(number))
        first = await inbox.take(2, wait=1)
        assert [d.seq for d in first] == [1, 2]
        assert [d.seq for d in await inbox.take(5, wait=0)] == [3]
        assert await inbox.take(5, wait=0) == []  # all leased
        clock[0] = 6.0  # the leases ran out unacknowledged: offered again, oldest first
        again = await inbox.take(5, wait=0)
        assert [d.seq for d in again] == [1, 2, 3]
        key = f"{MINZHENG}:{(bytes([1]) * 16).hex()}"
        assert await inbox.ack([key, key]) == (1, [])
        assert await inbox.ack([key]) == (0, [key])
        assert node.acked == [(bytes([1]) * 16).hex()]
        assert inbox.held == 2
    finally:
        task.cancel()
        await inbox.close()


# --- real daemons ------------------------------------------------------------------------------


def send(
    federation: DaemonFederation, name: str, to: str, *argv: str, stdin: bytes | None = None
) -> Any:
    """``python -m exchnode.node send --config <name's config> --to TO ARGV``."""
    return node_cli(
        "send", "--config", str(federation.config_path(name)), "--to", to, *argv, stdin=stdin
    )


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[DaemonFederation]:
    fed = DaemonFederation(tmp_path, [HUB, GONGAN, MINZHENG])
    try:
        yield fed
    finally:
        fed.kill_all()


def test_three_daemons_exchange_a_file_with_send_and_receive(
    federation: DaemonFederation, tmp_path: Path
) -> None:
    federation.start(HUB, GONGAN, MINZHENG)
    federation.wait_ready(HUB, GONGAN, MINZHENG)
    payload = os.urandom(200_000)
    (tmp_path / "report.bin").write_bytes(payload)
    receiver = subprocess.Popen(
        [
            *NODE,
            "receive",
            "--config",
            str(federation.config_path(MINZHENG)),
            "--out",
            str(tmp_path / "inbox"),
            "--timeout",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
        env=node_env(),
    )
    sent = send(
        federation, GONGAN, MINZHENG, "--content-type", "application/octet-stream",
        "--wait", "--timeout", "30", str(tmp_path / "report.bin"),
    )  # fmt: skip
    out, err = receiver.communicate(timeout=60)
    assert receiver.returncode == 0, err.decode()
    assert sent.returncode == 0, sent.stderr.decode()
    message_id = sent.stdout.decode().strip()
    assert len(message_id) == 32
    assert sent.stderr.decode().splitlines() == [  # what it waited for, and the receipt
        f"waiting up to 30 s for the receipt of {MINZHENG} (each recipient's acknowledgement "
        "that its application took the message)",
        f"receipt from {MINZHENG}: delivered and acknowledged",
    ]

    (meta,) = [json.loads(line) for line in out.decode().splitlines()]
    assert meta["sender"] == GONGAN
    assert meta["message_id"] == message_id
    assert Path(meta["file"]) == tmp_path / "inbox" / f"{GONGAN}.{message_id}"
    assert Path(meta["file"]).read_bytes() == payload

    # Stdin to stdout, the other way.
    back = send(federation, MINZHENG, GONGAN, "-", stdin=b"thanks")
    assert back.returncode == 0, back.stderr
    got = node_cli("receive", "--config", str(federation.config_path(GONGAN)), "--timeout", "30")
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"thanks"

    # The message was acknowledged: the node's inbox is empty, and it is not offered again.
    status, health = federation.health(MINZHENG)
    assert status == 200
    assert health["inbox"]["count"] == 0
    again = node_cli("receive", "--config", str(federation.config_path(MINZHENG)), "--timeout", "1")
    assert again.returncode == 1
    assert b"timed out" in again.stderr


def test_health_reports_queues_peers_and_counters(federation: DaemonFederation) -> None:
    federation.start(HUB, GONGAN)
    federation.wait_ready(HUB, GONGAN)
    sent = send(federation, GONGAN, HUB, "-", stdin=b"to the hub's own application")
    assert sent.returncode == 0, sent.stderr
    deadline = time.monotonic() + 20
    while True:
        status, body = federation.health(HUB)
        if body.get("inbox", {}).get("count") == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200
    assert body["name"] == HUB
    assert body["status"] == "serving"
    assert body["inbox"]["count"] == 1
    assert body["counters"]["accepted"] == 1
    assert body["peers"][GONGAN]["state"] in {"up", "unknown"}
    assert body["peers"][MINZHENG]["state"] in {"down", "unknown"}  # never started
    assert set(body["queued"]) == {"count", "bytes"}
    assert body["link_url"] == federation.url(HUB)
    cli = node_cli("health", "--config", str(federation.config_path(HUB)))
    assert cli.returncode == 0
    assert json.loads(cli.stdout)["name"] == HUB


def test_sigterm_drains_and_exits_0_even_with_a_long_poll_open(
    federation: DaemonFederation,
) -> None:
    federation.start(GONGAN)
    federation.wait_ready(GONGAN)
    ready = federation.config(GONGAN).ready_path
    assert json.loads(ready.read_text())["name"] == GONGAN
    poll = subprocess.Popen(
        [*NODE, "receive", "--config", str(federation.config_path(GONGAN))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
        env=node_env(),
    )
    time.sleep(1.0)  # the long poll is waiting inside the daemon
    started = time.monotonic()
    assert federation.stop(GONGAN) == 0
    assert time.monotonic() - started < 10  # the open long poll did not hold the drain
    _, err = poll.communicate(timeout=30)
    assert poll.returncode == 1
    (line,) = err.decode().splitlines()  # one line, no traceback
    assert line.startswith("python -m exchnode.node: error: ")
    assert not ready.exists()
    events = federation.log_events(GONGAN)  # every line of the log is JSON
    names = [event["event"] for event in events]
    assert names.index("ready") < names.index("draining") < names.index("stopped")
    assert all("token" not in json.dumps(event).lower() for event in events)


def test_second_daemon_on_a_state_dir_is_refused_and_sigint_drains(
    federation: DaemonFederation,
) -> None:
    federation.start(HUB)
    federation.wait_ready(HUB)
    second = node_cli("run", "--config", str(federation.config_path(HUB)))
    assert second.returncode == 1
    (line,) = second.stderr.decode().splitlines()
    assert "is in use by another daemon (pid " in line
    assert federation.health(HUB)[0] == 200  # the first one is untouched
    process = federation.processes.pop(HUB)
    process.send_signal(signal.SIGINT)
    assert process.wait(20) == 0


def test_a_revoked_peer_is_left_out_of_the_directory(federation: DaemonFederation) -> None:
    revoked = "520102.tingyong"
    store, root = federation.store, federation.root
    store.issue_node(
        revoked, "520100", root / "revoked", now=federation.now, lifetime=timedelta(days=30)
    )
    (root / "directory" / f"{revoked}.pem").write_bytes(
        (root / "revoked" / "chain.pem").read_bytes()
    )
    store.revoke("520100", revoked, reason="key-compromise", now=federation.now)
    export_trust(store, root / "trust")  # the refreshed CRL reaches the nodes' trust folder
    federation.start(GONGAN)
    federation.wait_ready(GONGAN)
    refused = [
        e for e in federation.log_events(GONGAN) if e["event"] == "directory certificate left out"
    ]
    assert [(Path(e["file"]).name, e["code"]) for e in refused] == [(f"{revoked}.pem", "revoked")]
    sent = send(federation, GONGAN, revoked, "-", stdin=b"x")
    assert sent.returncode == 1
    (line,) = sent.stderr.decode().splitlines()
    assert "not in the directory" in line


def test_signed_directory_mode_finds_keys_through_the_hub(tmp_path: Path) -> None:
    federation = DaemonFederation(tmp_path, [HUB, GONGAN, MINZHENG], directory_mode="signed")
    try:
        text = federation.config_path(GONGAN).read_text()
        assert 'mode = "signed"' in text
        federation.start(HUB, GONGAN, MINZHENG)
        federation.wait_ready(HUB, GONGAN, MINZHENG)
        deadline = time.monotonic() + 30
        while True:  # the directories converge: each department holds itself and its hub
            known = [federation.health(n)[1]["directory"] for n in (GONGAN, MINZHENG)]
            if all(d["known"] >= 2 for d in known) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # A department holds its path, not the network (SPEC §14.13): the other department
        # is looked up through the hub when it is first addressed, by the send below.
        assert known == [{"mode": "signed", "known": 2}] * 2
        sent = send(federation, GONGAN, MINZHENG, "--receipt", "-", stdin=b"signed")
        assert sent.returncode == 0, sent.stderr
        got = node_cli(
            "receive", "--config", str(federation.config_path(MINZHENG)), "--timeout", "30"
        )
        assert (got.returncode, got.stdout) == (0, b"signed"), got.stderr
        message_id = sent.stdout.decode().strip()
        status = node_cli(
            "status", "--config", str(federation.config_path(GONGAN)), message_id, "--wait", "20"
        )
        assert json.loads(status.stdout)["delivered_to"] == [MINZHENG]  # the receipt came back
        for name in (HUB, GONGAN, MINZHENG):
            assert federation.stop(name) == 0
    finally:
        federation.kill_all()


def test_init_options_reject_bad_addresses(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--operator"):
        init_node(
            InitOptions(
                name="520100",
                level="city",
                directory=tmp_path / "n",
                now=datetime.now(UTC),
                operator="localhost",
            )
        )


# --- the launcher, for real ------------------------------------------------------------------


def test_real_launch_reaches_the_daemon_parser() -> None:
    # From / (not the checkout) and with no PYTHONPATH: the launcher must find node/ itself.
    completed = exchnode(
        "node", "init", "--help", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: exchnode node init")
    assert "--ca-dir" in completed.stdout


def test_daemon_errors_come_back_as_one_line_and_status() -> None:
    completed = exchnode("receive", "--config", "/nonexistent/node.toml")
    assert completed.returncode == 1
    assert completed.stderr.splitlines() == [
        "exchnode: error: /nonexistent/node.toml: no such config file"
    ]
