"""A hub daemon run as two worker processes on one PostgreSQL store (issue 14).

The county hub 520102 runs with ``[store] workers = 2``: ``exchnode node run``
is worker 0, which starts worker 1 (``--worker 1``) and supervises it; both
listen on the hub's one link address.  Its two departments run on SQLite.  By
the hash of their names worker 0 forwards the queue to 520102.minzheng and
worker 1 the queue to 520102.gongan (``WorkerShare.owner``), so a message to
gongan is always moved by worker 1.

In order (one set of daemons for the module): messages both ways arrive
exactly once; a directory request on a connection the kernel gave worker 1 is
answered (worker 0 answers it through the workers' socket) and the catalog
crosses the hub; SIGHUP reaches worker 1 too; worker 1 SIGKILLed in the middle
of a flow is restarted and the receiving application counts 0 lost, 0
duplicated; SIGTERM to worker 0 stops both; a worker whose worker 0 was
SIGKILLed drains and exits.  Without
the daemons: SQLite with two workers is refused naming
the key, by ``load_config`` and by ``node check``; a worker started by hand is
refused.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchnode.aio import TlsFiles, WorkerShare, make_context
from exchnode.audit import Role
from exchnode.testing import PostgresCluster
from tests.integration.daemons import DaemonFederation, config_refused, node_cli, until
from tests.postgres import throwaway_postgres

pytestmark = pytest.mark.timeout(120)

HUB = "520102"
GONGAN = "520102.gongan"
MINZHENG = "520102.minzheng"
NAMES = [HUB, GONGAN, MINZHENG]
DIRECTORY_CHANGES = "/exchnode/v1/directory/changes?feed=&seq=0&listing=0"


def hub_on_postgres(path: Path, conninfo: str, workers: int = 2) -> None:
    with path.open("a") as config:
        config.write(
            f'\n[store]\nbackend = "postgresql"\nconninfo = "{conninfo}"\n'
            f'schema = "hub_workers"\nworkers = {workers}\n'
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from throwaway_postgres()


@pytest.fixture(scope="module")
def fed(
    tmp_path_factory: pytest.TempPathFactory, cluster: PostgresCluster
) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(tmp_path_factory.mktemp("w"), NAMES, directory_mode="signed")
    hub_on_postgres(federation.config_path(HUB), cluster.conninfo())
    with federation.serving(*NAMES):
        worker_pid(federation)  # worker 1 started
        yield federation


def ready(fed: DaemonFederation) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(fed.config(HUB).ready_path.read_text())
    except (OSError, ValueError):
        return {}
    return document


def worker_pid(fed: DaemonFederation, other_than: int | None = None) -> int:
    """Worker 1's pid as worker 0 publishes it in ready.json (a new one: ``other_than``)."""

    def current() -> int | None:
        pid = ready(fed).get("workers", {}).get("1")
        return pid if pid is not None and pid != other_than else None

    pid: int = until(current, "worker 1 running", timeout=30)
    return pid


def serving_events(fed: DaemonFederation) -> list[dict[str, Any]]:
    return [e for e in fed.log_events(HUB) if e.get("event") == "worker serving"]


def send(fed: DaemonFederation, sender: str, recipient: str, payloads: list[bytes]) -> None:
    messages = [{"to": [recipient], "payload": base64.b64encode(p).decode()} for p in payloads]
    status, _, body = fed.http(
        sender,
        "/v1/send-many",
        secret=fed.token(sender, Role.OPERATOR),
        body={"messages": messages},
    )
    assert status == 200, body


def receive(fed: DaemonFederation, name: str, wait: float = 1.0) -> list[bytes]:
    status, _, body = fed.http(
        name,
        f"/v1/receive?max=100&wait={wait}&ack=true",
        secret=fed.token(name, Role.OPERATOR),
    )
    assert status == 200, body
    return [base64.b64decode(d["payload"]) for d in json.loads(body)["deliveries"]]


def collect(fed: DaemonFederation, name: str, expected: set[bytes], timeout: float = 40) -> Counter:
    """Everything ``name`` receives until all of ``expected`` came (and a moment more)."""
    got: Counter[bytes] = Counter()
    deadline = time.monotonic() + timeout
    while not expected <= set(got):
        assert time.monotonic() < deadline, f"missing: {len(expected - set(got))}"
        got.update(receive(fed, name))
    got.update(receive(fed, name, wait=1.0))  # nothing else comes
    return got


def test_messages_cross_the_hub_both_ways_exactly_once(fed: DaemonFederation) -> None:
    assert WorkerShare(1, 2).owns(GONGAN)
    assert WorkerShare(0, 2).owns(MINZHENG)
    up = [f"up {i}".encode() for i in range(30)]
    down = [f"down {i}".encode() for i in range(30)]
    for i in range(0, 30, 5):
        send(fed, GONGAN, MINZHENG, up[i : i + 5])
        send(fed, MINZHENG, GONGAN, down[i : i + 5])
    assert collect(fed, MINZHENG, set(up)) == Counter(up)
    assert collect(fed, GONGAN, set(down)) == Counter(down)  # forwarded by worker 1
    workers = {event.get("worker") for event in fed.log_events(HUB)}
    assert workers == {0, 1}  # every line of the hub's log says whose it is


def _connection_holder(hub_port: int, local_port: int, pids: dict[int, int]) -> int | None:
    """Which worker holds the server side of the loopback connection from ``local_port``."""
    wanted = (f"0100007F:{hub_port:04X}", f"0100007F:{local_port:04X}")
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            inode = fields[9]
    if inode is None:
        return None
    for index, pid in pids.items():
        with_fds = Path(f"/proc/{pid}/fd")
        for fd in with_fds.iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return index
            except OSError:
                continue
    return None


def test_a_directory_request_on_worker_1_is_answered_by_worker_0(fed: DaemonFederation) -> None:
    """GONGAN asks the hub for its directory page on connections until one lands on worker 1:
    answered there through worker 0's socket, for GONGAN (a child: its path, not a 403)."""
    config = fed.config(GONGAN)
    context = make_context(
        TlsFiles(config.identity.chain, config.identity.signing_key, config.verify_bundle_path),
        server=False,
    )
    hub = fed.config(HUB)
    port = hub.listen[1]
    pids = {0: int(ready(fed)["pid"]), 1: worker_pid(fed)}
    holders = []
    for _ in range(200):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            holder = None
            for _ in range(50):  # the server side is accepted by now; seen in /proc at once
                holder = _connection_holder(port, tls.getsockname()[1], pids)
                if holder is not None:
                    break
                time.sleep(0.01)
            holders.append(holder)
            if holder != 1:
                continue
            request = f"GET {DIRECTORY_CHANGES} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n"
            tls.sendall(request.encode() + b"\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"application/vnd.exchnode.directory+msgpack" in head
            assert HUB.encode() in body  # the hub's signed page
            return
    raise AssertionError(f"no connection landed on worker 1: {Counter(holders)}")


def test_the_catalog_crosses_the_hub(fed: DaemonFederation, tmp_path: Path) -> None:
    entry = {
        "code": "101001/000001",
        "name": "人口基本信息",
        "provider_code": "11520102MB0000001X",
        "summary": "户籍人口的基本信息",
        "format": "database",
        "data_items": [{"name": "身份证号", "type": "C"}],
        "share_type": "unconditional",
        "share_conditions": "",
        "share_methods": ["subscription_push"],
        "update_cycle": "daily",
        "publish_date": "2026-01-05",
    }
    path = tmp_path / "entry.json"
    path.write_text(json.dumps(entry, ensure_ascii=False), encoding="utf-8")
    published = node_cli(
        "catalog", "publish", "--config", str(fed.config_path(MINZHENG)), str(path), "--json"
    )
    assert published.returncode == 0, published.stderr.decode()

    def found() -> Any:
        listed = node_cli(
            "catalog", "list", "--config", str(fed.config_path(GONGAN)), "--beyond",
            "--code", entry["code"], "--json",
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr.decode()
        return json.loads(listed.stdout)

    (record,) = until(found, "minzheng's entry seen from gongan through the hub", timeout=40)
    assert record["provider"] == MINZHENG


def test_sighup_reaches_the_workers(fed: DaemonFederation) -> None:
    until(lambda: serving_events(fed), "worker 1 serving")
    os.kill(int(ready(fed)["pid"]), signal.SIGHUP)

    def reloaded(worker: int) -> set[str]:
        events = fed.log_events(HUB)
        return {e["event"] for e in events if e.get("worker") == worker} & {
            "crls reloaded",
            "peers reloaded",
        }

    until(lambda: reloaded(1) == {"crls reloaded", "peers reloaded"}, "worker 1 reloaded")
    until(lambda: reloaded(0) == {"crls reloaded", "peers reloaded"}, "worker 0 reloaded")


def test_worker_1_killed_mid_flow_is_restarted_and_nothing_is_lost_or_doubled(
    fed: DaemonFederation,
) -> None:
    first = worker_pid(fed)
    payloads = [f"flow {i}".encode() for i in range(200)]
    killed = threading.Event()

    def kill_soon() -> None:
        time.sleep(0.4)
        os.kill(first, signal.SIGKILL)
        killed.set()

    killer = threading.Thread(target=kill_soon)
    killer.start()
    for i in range(0, len(payloads), 10):  # to gongan: worker 1 forwards every one
        send(fed, MINZHENG, GONGAN, payloads[i : i + 10])
        time.sleep(0.05)
    killer.join()
    assert killed.is_set()
    second = worker_pid(fed, other_than=first)  # restarted by worker 0
    got = collect(fed, GONGAN, set(payloads), timeout=60)
    assert got == Counter(payloads), (
        f"lost {len(set(payloads) - set(got))}, doubled {sum(1 for n in got.values() if n > 1)}"
    )
    restarted = [e for e in fed.log_events(HUB) if e.get("event") == "worker exited; restarting it"]
    assert restarted
    assert restarted[-1]["status"] == "killed by SIGKILL"
    assert restarted[-1]["pid"] == first
    assert second != first


def test_sigterm_to_worker_0_stops_every_worker(fed: DaemonFederation) -> None:
    worker = worker_pid(fed)
    until(lambda: serving_events(fed), "worker 1 serving")
    assert fed.stop(HUB, timeout=30) == 0
    until(lambda: not Path(f"/proc/{worker}").exists(), "worker 1 gone", timeout=10)
    events = fed.log_events(HUB)
    assert any(e.get("event") == "stopped" and e.get("worker") == 1 for e in events)


def test_a_worker_whose_worker_0_dies_drains_and_exits(fed: DaemonFederation) -> None:
    if HUB in fed.processes:  # run alone, not after the test that stops the hub
        previous = worker_pid(fed)
        until(lambda: serving_events(fed), "worker 1 serving")
        assert fed.stop(HUB, timeout=30) == 0
        until(lambda: not Path(f"/proc/{previous}").exists(), "worker 1 gone", timeout=10)
    stale = ready(fed).get("workers", {}).get("1")  # ready.json outlives the hub it described
    serving = len(serving_events(fed))
    fed.start(HUB)
    fed.wait_ready(HUB)
    worker = worker_pid(fed, other_than=stale)
    until(lambda: len(serving_events(fed)) > serving, "worker 1 serving")
    hub = fed.processes.pop(HUB)
    hub.kill()  # no drain, no signal to the workers: only the pipe's end tells them
    hub.wait(10)
    try:
        until(lambda: not Path(f"/proc/{worker}").exists(), "worker 1 gone", timeout=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)  # an orphan must not outlive a failed test
    events = [e for e in fed.log_events(HUB) if e.get("worker") == 1]
    assert [e["event"] for e in events][-3:] == ["worker 0 is gone; draining", "node stopped",
                                                 "stopped"]  # fmt: skip


def test_a_hub_stopped_while_its_worker_starts_drains_cleanly(fed: DaemonFederation) -> None:
    # systemctl restart just after a start: the worker gets SIGTERM before its loop handles
    # signals; it used to die of it, and worker 0 exited 1 for a drain that lost nothing.
    if HUB in fed.processes:
        until(lambda: serving_events(fed), "worker 1 serving")
        assert fed.stop(HUB, timeout=30) == 0
    started, logged = len(worker_starts(fed)), len(fed.log_events(HUB))
    fed.start(HUB)
    fed.wait_ready(HUB)
    until(lambda: len(worker_starts(fed)) > started, "worker 1 started")
    assert fed.stop(HUB, timeout=30) == 0  # at once: worker 1's interpreter is still starting
    since = [e["event"] for e in fed.log_events(HUB)[logged:]]
    assert "a worker did not drain cleanly" not in since, since
    assert since[-1] == "stopped"


def worker_starts(fed: DaemonFederation) -> list[dict[str, Any]]:
    return [e for e in fed.log_events(HUB) if e.get("event") == "worker started"]


def test_a_worker_started_by_hand_is_refused(fed: DaemonFederation) -> None:
    done = node_cli("run", "--config", str(fed.config_path(HUB)), "--worker", "1", timeout=60)
    assert done.returncode == 1
    assert b"is started by worker 0" in done.stderr


def test_sqlite_with_two_workers_is_refused_naming_the_key(tmp_path: Path) -> None:
    federation = DaemonFederation(tmp_path, [HUB])
    path = federation.config_path(HUB)
    text = path.read_text()
    config_refused(path, text + "\n[store]\nworkers = 2\n", r"store\.workers: 2 worker processes")
    checked = node_cli("check", "--config", str(path))
    assert checked.returncode == 1
    assert b"store.workers" in checked.stdout + checked.stderr


def test_admission_on_hello_with_two_workers_is_refused_naming_the_key(
    tmp_path: Path, cluster: PostgresCluster
) -> None:
    federation = DaemonFederation(tmp_path, [HUB])
    path = federation.config_path(HUB)
    hub_on_postgres(path, cluster.conninfo())
    assert federation.config(HUB).admission.policy == "none"  # the default with workers
    text = path.read_text()
    config_refused(
        path,
        text + '[admission]\npolicy = "division"\n',
        r"admission\.policy: 'division' admits children on their hello",
    )
