"""The wheel, installed on its own: the commands, and two daemons exchanging a file.

A wheel of this tree is built, installed into a fresh virtual environment
outside the repository (dependencies from the package registry, pinned by
constraints.txt), and everything below runs with that environment's
``exchnode`` only: an empty working directory holding a ``node.py`` and an
empty ``exchnode/`` folder (neither may stand in for the installed daemon),
no PYTHONPATH, the environment's ``bin`` first on PATH.

* Every command's ``--help``, found by walking ``exchnode --help`` and the
  help of each group and verb it lists (the daemon's ``exchnode node`` tree
  included), so a new verb is covered without editing this file.
* An operator's first exchange: a root CA, a city CA and two node certificates
  from ``exchnode pki``, handed over as the operator guide says (identity
  files, trust folder, peers' chains), ``exchnode node init`` of a city hub and
  a department beneath it, ``exchnode node run`` of both, ``exchnode send``
  at the department and ``exchnode receive`` at the hub, the same bytes out as
  in, the web console's page, script and style sheet served from the wheel, then
  SIGTERM and exit status 0 for both.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from exchnode.testing import free_port

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: Not copied into the build tree: the environment, caches, and earlier builds.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
)


@dataclass(frozen=True, slots=True)
class Installed:
    """A virtual environment with the wheel, and where and how to run its commands."""

    venv: Path
    work: Path  # the empty working directory (but for the decoys)
    env: dict[str, str]

    def run(
        self, *argv: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            argv,
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and completed.returncode != 0:
            pytest.fail(
                f"{' '.join(argv)} exited {completed.returncode}:\n"
                f"{completed.stdout}\n{completed.stderr}"
            )
        return completed


def _pip_env() -> dict[str, str]:
    """This environment (the registry's settings) without anything that points into the repo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.pop("VIRTUAL_ENV", None)
    return env


def _step(argv: list[str], timeout: float, cwd: Path) -> None:
    completed = subprocess.run(
        argv, cwd=cwd, env=_pip_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert completed.returncode == 0, (
        f"{' '.join(argv)} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}"
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools builds in the source tree (build/, *.egg-info), and the
    # working tree is not this test's to write in.  The build requirements (setuptools,
    # wheel) come into pip's isolated build environment from the registry.
    source = base / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    dist = base / "dist"
    _step(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), "."],
        timeout=180,
        cwd=source,
    )
    (wheel,) = dist.glob("exchnode-*.whl")
    venv = base / "venv"
    _step([sys.executable, "-m", "venv", str(venv)], timeout=120, cwd=base)
    constraints = str(REPO / "constraints.txt")
    python = str(venv / "bin" / "python")
    _step(
        [python, "-m", "pip", "install", "--quiet", "-c", constraints, str(wheel)],
        timeout=240,
        cwd=base,
    )
    work = base / "work"
    work.mkdir()
    # Decoys: the daemon is exchnode.node, run as 'python -P -m exchnode.node'; neither of
    # these may be what runs.
    (work / "node.py").write_text("raise SystemExit('node.py of the working directory ran')\n")
    (work / "exchnode").mkdir()
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(base / "home"),
        "LANG": "C.UTF-8",
    }
    return Installed(venv, work, env)


def test_the_wheel_is_what_runs(installed: Installed) -> None:
    """Even with the working directory first on sys.path (python -c), the decoys lose."""
    probe = (
        "import importlib.util, json, exchnode; "
        "print(json.dumps([exchnode.__file__, importlib.util.find_spec('exchnode.node').origin]))"
    )
    completed = installed.run("python", "-c", probe)
    site = str(installed.venv.resolve())
    for origin in json.loads(completed.stdout):
        assert str(Path(origin).resolve()).startswith(site), origin


# --- every command's --help ---------------------------------------------------------------


def subcommands(help_text: str) -> list[str]:
    """The choices argparse lists under a sub-command metavar (``  VERB``, ``  GROUP``)."""
    found: list[str] = []
    lines = help_text.splitlines()
    for index, line in enumerate(lines):
        if re.fullmatch(r"  (?:[A-Z][A-Z_]*|\{[^}]*\})", line):
            for choice in lines[index + 1 :]:
                if not choice.strip():
                    break
                match = re.match(r"    (\S+)", choice)
                if match:
                    found.append(match.group(1))
    return found


def _same_help(text: str) -> str:
    """Help text with the command's spelling left out: 'exchnode X' = 'exchnode node X'."""
    return " ".join(text.replace("exchnode node ", "exchnode ").split())


def test_subcommands_are_read_from_argparse_help() -> None:
    text = "\n".join(
        [
            "usage: exchnode node [-h] VERB ...",
            "",
            "verbs:",
            "  VERB",
            "    init      write a starter config",
            "              and certificate",
            "    corrections",
            "              open corrections",
            "",
            "Examples:",
            "    run --config node.toml",
        ]
    )
    assert subcommands(text) == ["init", "corrections"]


def test_every_verb_answers_help(installed: Installed) -> None:
    seen: dict[str, tuple[str, ...]] = {}  # normalised help -> the first command that showed it
    commands: list[tuple[str, ...]] = []
    level: list[tuple[str, ...]] = [("exchnode",)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        while level:
            results = list(pool.map(lambda c: installed.run(*c, "--help"), level))
            following: list[tuple[str, ...]] = []
            for command, completed in zip(level, results, strict=True):
                spelled = " ".join(command)
                assert completed.stdout.startswith("usage: "), (spelled, completed.stdout)
                assert completed.stderr == "", (spelled, completed.stderr)
                commands.append(command)
                key = _same_help(completed.stdout)
                if key in seen:  # an alias (exchnode send = exchnode node send): walked once
                    continue
                seen[key] = command
                following += [(*command, verb) for verb in subcommands(completed.stdout)]
            level = following
    spelled = {" ".join(c) for c in commands}
    # The walk found the tree, not a few lines that happen to look like it.
    for expected in (
        "exchnode pki issue-node",
        "exchnode envelope",
        "exchnode node init",
        "exchnode node run",
        "exchnode send",
        "exchnode receive",
    ):
        assert expected in spelled, sorted(spelled)
    assert any(c[:2] == ("exchnode", "node") and len(c) == 4 for c in commands), sorted(spelled)
    assert len(commands) >= 40, sorted(spelled)


# --- two daemons ---------------------------------------------------------------------------

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)


@dataclass
class Daemon:
    name: str
    folder: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path


def _log_of(daemon: Daemon) -> str:
    daemon.log.flush()
    return daemon.log_path.read_text("utf-8", errors="replace")


def _wait_ready(installed: Installed, daemon: Daemon, timeout: float = 40) -> None:
    ready = installed.work / daemon.folder / "state" / "ready.json"
    deadline = time.monotonic() + timeout
    while True:
        if daemon.process.poll() is not None:
            pytest.fail(f"{daemon.name} exited {daemon.process.returncode}:\n{_log_of(daemon)}")
        if ready.exists():
            try:
                url = json.loads(ready.read_text())["operator_url"] + "/health"
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return
            except (OSError, ValueError, KeyError, urllib.error.URLError):
                pass  # written but not serving yet, or read while being written
        if time.monotonic() > deadline:
            pytest.fail(f"{daemon.name} not ready after {timeout} s:\n{_log_of(daemon)}")
        time.sleep(0.1)


@pytest.fixture
def daemons(installed: Installed) -> Iterator[list[Daemon]]:
    """Daemons the test starts; whatever is still running at the end is killed."""
    running: list[Daemon] = []
    yield running
    for daemon in running:
        if daemon.process.poll() is None:
            daemon.process.kill()
        daemon.process.wait(10)
        daemon.log.close()


def test_two_nodes_exchange_a_file(installed: Installed, daemons: list[Daemon]) -> None:
    run, work = installed.run, installed.work
    hub, department = "520100", "520100.tongji"
    # The CA operator: a province root, the city's CA, one certificate per node.
    run("exchnode", "pki", "init-root", "520000", "--dir", "pki")
    run("exchnode", "pki", "issue-ca", "520100", "--issuer", "520000", "--dir", "pki")
    for name in (hub, department):
        issue = ["exchnode", "pki", "issue-node", name, "--issuer", "520100", "--dir", "pki"]
        run(*issue, "--out", f"bundle-{name}")
    # What the operators receive: the trust material and the peers' chains, shared here.
    trust, peers = work / "trust", work / "peers"
    (trust / "crls").mkdir(parents=True)
    peers.mkdir()
    bundle = work / f"bundle-{hub}"
    shutil.copyfile(bundle / "root.crt", trust / "roots.pem")
    intermediates = _PEM_CERTIFICATE.findall((bundle / "chain.pem").read_bytes())[1:]
    assert intermediates, "chain.pem holds the node's certificate and its CA's"
    (trust / "cas.pem").write_bytes(b"".join(intermediates))
    for crl in (bundle / "crls").glob("*.pem"):
        shutil.copyfile(crl, trust / "crls" / crl.name)
    for name in (hub, department):
        shutil.copyfile(work / f"bundle-{name}" / "chain.pem", peers / f"{name}.pem")

    links = {hub: free_port(), department: free_port()}
    operators = {hub: free_port(), department: free_port()}
    neighbours = {
        hub: ("--child", f"{department}=https://127.0.0.1:{links[department]}"),
        department: ("--parent", f"{hub}=https://127.0.0.1:{links[hub]}"),
    }
    for name in (hub, department):
        folder = f"node-{name}"
        init = ["exchnode", "node", "init", "--name", name, "--level", "city", "--dir", folder]
        run(
            *init,
            *("--listen", f"127.0.0.1:{links[name]}"),
            *("--operator", f"127.0.0.1:{operators[name]}"),
            *neighbours[name],
            *("--trust", str(trust), "--peer-directory", str(peers)),
            *("--directory-mode", "static"),
        )
        for key in ("chain.pem", "signing.key", "encryption.key"):  # keys stay 0600
            shutil.copy(work / f"bundle-{name}" / key, work / folder / "identity" / key)

    for name in (hub, department):
        folder = f"node-{name}"
        log_path = work / f"{name}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            ["exchnode", "node", "run", "--config", f"{folder}/node.toml"],
            cwd=work,
            env=installed.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        daemons.append(Daemon(name, folder, process, log, log_path))
    for daemon in daemons:
        _wait_ready(installed, daemon)

    payload = os.urandom(48_000) + "政务数据 520100.tongji → 520100\n".encode()
    (work / "payload.bin").write_bytes(payload)
    sent = run(
        "exchnode", "send", "--config", f"node-{department}/node.toml", "--to", hub, "payload.bin"
    )
    message_id = sent.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", message_id), sent.stdout
    receive = ["exchnode", "receive", "--config", f"node-{hub}/node.toml", "--count", "1"]
    received = run(*receive, "--out", "inbox", "--timeout", "30", timeout=60)
    assert json.loads(received.stdout.splitlines()[0])["message_id"] == message_id
    assert (work / "inbox" / f"{department}.{message_id}").read_bytes() == payload

    # The web console's files are package data of exchnode.node: served from the wheel as is.
    console = f"http://127.0.0.1:{operators[hub]}/console"
    for name in ("console.html", "console.js", "console.css"):
        path = "/" if name == "console.html" else f"/{name}"
        with urllib.request.urlopen(console + path, timeout=5) as response:
            assert response.read() == (REPO / "node" / name).read_bytes(), name

    for daemon in daemons:
        daemon.process.send_signal(signal.SIGTERM)
    for daemon in daemons:
        try:
            status = daemon.process.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{daemon.name} did not stop on SIGTERM:\n{_log_of(daemon)}")
        assert status == 0, f"{daemon.name} exited {status}:\n{_log_of(daemon)}"


# --- the systemd unit ----------------------------------------------------------------------

UNIT = REPO / "deploy" / "systemd" / "exchnode-node@.service"


def _service_section(text: str) -> dict[str, list[str]]:
    """The unit's ``[Service]`` keys, each with its values in order (a key may repeat)."""
    section, out = "", {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        if section == "[Service]":
            out.setdefault(key, []).append(value)
    return out


def _datagram(sock: socket.socket, wanted: str, timeout: float) -> str:
    """The first notification holding ``wanted`` (a line such as ``READY=1``)."""
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            got = sock.recv(4096).decode()
        except TimeoutError:
            pytest.fail(f"no {wanted} on NOTIFY_SOCKET within {timeout} s")
        if wanted in got.splitlines():
            return got


def test_the_systemd_unit_runs_the_node(
    installed: Installed, daemons: list[Daemon], tmp_path: Path
) -> None:
    """The unit's own command lines, with the substitutions its header documents.

    ``systemd-analyze verify`` judges the unit where systemd is installed; the
    daemon is then run as systemd would run it (ExecStartPre, ExecStart with a
    NOTIFY_SOCKET, ExecReload, KillSignal) and must say READY=1 once it serves
    and STOPPING=1 when it drains, and exit 0.
    """
    run, work = installed.run, installed.work
    name = "520100"
    etc, var = work / "unit" / "etc", work / "unit" / "var"
    run("exchnode", "pki", "init-root", "520000", "--dir", "unit-pki")
    run("exchnode", "pki", "issue-ca", name, "--issuer", "520000", "--dir", "unit-pki")
    run(
        "exchnode", "node", "init", "--name", name, "--level", "city", "--dir", str(etc / name),
        "--ca-dir", "unit-pki", "--listen", f"127.0.0.1:{free_port()}",
        "--operator", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    config = etc / name / "node.toml"
    text = config.read_text()
    assert 'state_dir = "state"' in text
    config.write_text(text.replace('state_dir = "state"', f'state_dir = "{var / name}"'))
    unit = UNIT.read_text()
    for path, here in (
        ("/opt/exchnode", installed.venv),
        ("/etc/exchnode", etc),
        ("/var/lib/exchnode", var),
    ):
        unit = unit.replace(path, str(here))
    unit = unit.replace("%i", name)
    service = _service_section(unit)
    assert service["Type"] == ["notify"]
    assert service["StateDirectory"] == [f"exchnode/{name}"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert {"NoNewPrivileges", "ProtectSystem", "PrivateTmp", "RestartSec"} <= set(service)
    if shutil.which("systemd-analyze"):
        written = tmp_path / f"exchnode-node@{name}.service"
        written.write_text(unit)
        verified = subprocess.run(
            ["systemd-analyze", "verify", str(written)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        said = [line for line in verified.stderr.splitlines() if written.name in line]
        assert said == [], verified.stderr
    (pre,) = service["ExecStartPre"]
    checked = run(*shlex.split(pre))
    assert checked.stdout.startswith(f"{config}: ok: "), checked.stdout

    notify_path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        (start,) = service["ExecStart"]
        log_path = work / "unit.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            shlex.split(start),
            cwd="/",
            env={**installed.env, "NOTIFY_SOCKET": str(notify_path)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        daemon = Daemon(name, str(etc / name), process, log, log_path)
        daemons.append(daemon)
        ready = _datagram(notify, "READY=1", 60)
        assert f"STATUS=serving {name} at https://127.0.0.1:" in ready
        operator = json.loads((var / name / "ready.json").read_text())["operator_url"]
        with urllib.request.urlopen(operator + "/health", timeout=5) as response:
            assert json.loads(response.read())["status"] == "serving"
        (reload,) = service["ExecReload"]
        run(*shlex.split(reload.replace("$MAINPID", str(process.pid))))
        deadline = time.monotonic() + 20
        while "reloading crls and peers" not in _log_of(daemon):
            assert time.monotonic() < deadline, _log_of(daemon)
            time.sleep(0.1)
        process.send_signal(getattr(signal, service["KillSignal"][0]))
        _datagram(notify, "STOPPING=1", 30)
        assert process.wait(30) == 0, _log_of(daemon)
