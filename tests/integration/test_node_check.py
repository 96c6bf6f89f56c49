"""``exchnode node check --config``: a config validated without starting (issue 15, item 2).

One county hub from ``node init``: checked as written (ok), then broken in
three ways at once -- another node's signing key, a CA's certificate among the
peers' chains, its link
port held by another process -- and each is one line of the one run; while
its daemon runs, the state directory's lock and the ports are named; and
``run`` on a taken port says which setting names it, not an errno.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemons import DaemonFederation, node_cli

pytestmark = pytest.mark.timeout(120)

HUB, GONGAN = "520102", "520102.gongan"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> DaemonFederation:
    return DaemonFederation(tmp_path_factory.mktemp("check"), [HUB, GONGAN])


@pytest.fixture
def holding(fed: DaemonFederation) -> Iterator[socket.socket]:
    """Another process's listener on the hub's link port (here: the test's)."""
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", fed.ports[HUB]))
        held.listen()
        yield held


def check(config: Path) -> tuple[int, list[str], list[str]]:
    done = node_cli("check", "--config", str(config))
    return done.returncode, done.stdout.decode().splitlines(), done.stderr.decode().splitlines()


def test_a_config_as_init_wrote_it_is_ok(fed: DaemonFederation) -> None:
    config = fed.config_path(HUB)
    assert check(config) == (
        0,
        [
            f"{config}: ok: 1 root(s), 1 CA(s), 2 current CRL(s), 1 peer(s), "
            "1 peer chain(s) in the directory"
        ],
        [],
    )


def test_every_problem_is_one_line_of_one_run(
    fed: DaemonFederation, holding: socket.socket, tmp_path: Path
) -> None:
    config = fed.config_path(HUB)
    identity = fed.folder(HUB) / "identity"
    kept = tmp_path / "signing.key"
    shutil.copyfile(identity / "signing.key", kept)
    impostor = fed.root / "directory" / "impostor.pem"  # a CA's certificate, no node's
    shutil.copyfile(fed.root / "trust" / "roots.pem", impostor)
    try:
        shutil.copyfile(fed.folder(GONGAN) / "identity" / "signing.key", identity / "signing.key")
        status, out, err = check(config)
    finally:
        shutil.copyfile(kept, identity / "signing.key")
        impostor.unlink()
    prog = "python -m exchnode.node: error: "
    assert status == 1
    assert out == []
    assert err == [
        f"{prog}{config}: identity: signing key {identity / 'signing.key'} does not match the "
        f"certificate of {HUB}",
        f"{prog}{config}: directory.certificates: {impostor}: CA certificate 520000 is not a "
        "node certificate (OU=ca) [malformed-certificate] (run would leave it out)",
        f"{prog}{config}: [node] listen 127.0.0.1:{fed.ports[HUB]} is already in use (another "
        "process listens there)",
    ]


def test_a_running_daemon_is_named(fed: DaemonFederation) -> None:
    config = fed.config_path(HUB)
    with fed.serving(HUB):
        pid = fed.processes[HUB].pid
        status, _, err = check(config)
    assert status == 1
    assert [line.split(": error: ", 1)[1] for line in err] == [
        f"{fed.folder(HUB) / 'state'} is in use by another daemon (pid {pid}, or the workers "
        "it started, which hold it until they have drained); stop it first",
        f"{config}: [node] listen 127.0.0.1:{fed.ports[HUB]} is already in use (another "
        "process listens there)",
        f"{config}: [operator] listen 127.0.0.1:{fed.operator_ports[HUB]} is already in use "
        "(another process listens there)",
    ]
    assert check(config)[0] == 0  # stopped: ok again


def test_run_on_a_taken_port_names_the_setting(
    fed: DaemonFederation, holding: socket.socket
) -> None:
    ran = node_cli("run", "--config", str(fed.config_path(HUB)), timeout=60)
    assert ran.returncode == 1
    lines = ran.stderr.decode().splitlines()
    assert lines[-1] == (
        f"python -m exchnode.node: error: {fed.config_path(HUB)}: [node] listen "
        f"127.0.0.1:{fed.ports[HUB]} is already in use (another process listens there)"
    ), ran.stderr.decode()
    assert "Traceback" not in ran.stderr.decode()
