"""Daemon processes on loopback for tests: a CA store, node folders from ``node init``, processes.

The topology follows the names, as in ``federation.py``: a department's parent
is the hub of its division, a hub's the hub one level up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exchnode.audit import Role
from exchnode.core import NATIONAL_DIVISION, NodeName, parent_hub
from exchnode.node.config import ConfigError, DaemonConfig, load_config
from exchnode.node.scaffold import InitOptions, export_trust, init_node
from exchnode.pki import CAStore
from exchnode.testing import free_port

REPO = Path(__file__).resolve().parents[2]
#: the installed daemon, as the launcher runs it
NODE = (sys.executable, "-P", "-m", "exchnode.node")
LEVELS = {1: "province", 2: "city", 3: "county"}
#: each person's bearer token, as ``node init`` writes it in the node's folder
TOKEN_FILES = {
    Role.ADMINISTRATOR: "administrator.token",
    Role.OPERATOR: "operator.token",
    Role.AUDITOR: "auditor.token",
}


def parent_of(name: str) -> str | None:
    """The parent hub, or None at the top of this federation (the province)."""
    parent = parent_hub(name)
    return None if parent == NATIONAL_DIVISION else parent


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "error"
    return env


def node_cli(*argv: str, stdin: bytes | None = None, timeout: float = 60) -> Any:
    """``python -m exchnode.node ARGV`` as a process; the CompletedProcess (bytes)."""
    return subprocess.run(
        [*NODE, *argv],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
        cwd="/",  # paths in a config resolve against its own folder, never the cwd
        env=node_env(),
    )


def until(check: Callable[[], Any], what: str, timeout: float = 40.0) -> Any:
    """Poll ``check`` until it answers something truthy, and return that; fail naming ``what``.

    Daemons are separate processes: what a test waits for (a grant, a refusal's
    record, a key becoming known) shows only in what they answer, so it is asked
    again until the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def drop_triggers(db: sqlite3.Connection) -> None:
    """What the owner of a store's file can do first: drop the triggers that refuse edits."""
    for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
        db.execute(f"DROP TRIGGER {trigger}")


def rewrite_audit_record(store: Path, old: bytes, new: bytes) -> int:
    """Tamper with a stopped node's log as one holding its file could; the seq rewritten.

    The first audit record whose bytes hold ``old`` gets ``new`` in its place.
    The store's triggers refuse any UPDATE of a stored record, so they are
    dropped first: what is left to catch the change is the log's own check.
    """
    with contextlib.closing(sqlite3.connect(store)) as db, db:
        drop_triggers(db)
        seq, data = next(
            (seq, data)
            for seq, data in db.execute("SELECT seq, data FROM audit_records ORDER BY seq")
            if old in data
        )
        db.execute("UPDATE audit_records SET data = ? WHERE seq = ?", (data.replace(old, new), seq))
    return int(seq)


def config_refused(path: Path, text: str, problem: str) -> ConfigError:
    """``text`` written to ``path`` as a config: loading it must fail with ``problem``."""
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem) as caught:
        load_config(path)
    return caught.value


class DaemonFederation:
    """A PKI under ``root/pki`` and one node folder per name, all issued by ``node init``."""

    def __init__(
        self,
        root: Path,
        names: list[str],
        directory_mode: str = "static",
        *,
        library_calendar: bool = False,
    ) -> None:
        """``library_calendar``: count working days with chinese-calendar, as a node does by
        default; without it the nodes count weekends only (``calendar = "none"``), so a test's
        deadline never runs past the library's last year whatever day the test runs."""
        self.root = root
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.store = CAStore(root / "pki")
        year = timedelta(days=365)
        cas = sorted({self._ca_of(name) for name in names})
        self.store.init_root("520000", now=self.now, lifetime=10 * year)
        for division in cas:
            if division != "520000":
                self.store.issue_ca(division, "520000", now=self.now, lifetime=year)
        export_trust(self.store, root / "trust")
        self.ports = {name: free_port() for name in names}
        self.operator_ports = {name: free_port() for name in names}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        for name in names:
            peers = []
            parent = parent_of(name)
            if parent in names:
                peers.append(("parent", parent, self.url(parent)))
            peers += [("child", c, self.url(c)) for c in names if parent_of(c) == name]
            init_node(
                InitOptions(
                    name=name,
                    level=LEVELS[NodeName.parse(name).level],
                    directory=self.folder(name),
                    now=self.now,
                    ca_dir=root / "pki",
                    listen=f"127.0.0.1:{self.ports[name]}",
                    operator=f"127.0.0.1:{self.operator_ports[name]}",
                    peers=tuple(peers),
                    trust=root / "trust",
                    peer_directory=root / "directory",
                    directory_mode=directory_mode,
                )
            )
            if not library_calendar:
                self._weekends_only(name)

    def _weekends_only(self, name: str) -> None:
        path = self.config_path(name)
        text = path.read_text("utf-8")
        assert "\n[sharing]\n" in text
        path.write_text(text.replace("\n[sharing]\n", '\n[sharing]\ncalendar = "none"\n', 1))

    @staticmethod
    def _ca_of(name: str) -> str:
        division = NodeName.parse(name).division
        return "520000" if division.endswith("0000") else division[:4] + "00"

    def folder(self, name: str) -> Path:
        return self.root / "nodes" / name

    def config_path(self, name: str) -> Path:
        return self.folder(name) / "node.toml"

    def config(self, name: str) -> DaemonConfig:
        return load_config(self.config_path(name))

    def config_text(self, name: str, *holding: str) -> str:
        """The config ``node init`` wrote for ``name``; it must hold each of ``holding``."""
        text = self.config_path(name).read_text()
        for line in holding:
            assert line in text, line
        return text

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.ports[name]}"

    def operator_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.operator_ports[name]}"

    def log_path(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def token(self, name: str, role: Role) -> str:
        """The bearer token of ``role`` on node ``name``."""
        return (self.folder(name) / TOKEN_FILES[role]).read_text().strip()

    def http(
        self,
        name: str,
        path: str,
        *,
        secret: str | None = None,
        body: Any = None,
        method: str | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request to ``name``'s operator API (JSON ``body``, bearer ``secret``).

        Status, headers and body as they came, error statuses included: the
        callers check refusals as closely as answers.
        """
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(
            self.operator_url(name) + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    # --- processes ---------------------------------------------------------------

    def start(self, *names: str) -> None:
        for name in names:
            with self.log_path(name).open("ab") as log:
                self.processes[name] = subprocess.Popen(
                    [*NODE, "run", "--config", str(self.config_path(name))],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    cwd="/",
                    env=node_env(),
                )

    def health(self, name: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.operator_url(name) + "/health", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def wait_ready(self, *names: str, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                process = self.processes[name]
                if process.poll() is not None:
                    raise AssertionError(
                        f"{name} exited {process.returncode}:\n{self.log_path(name).read_text()}"
                    )
                try:
                    if self.health(name)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} not ready:\n{self.log_path(name).read_text()}")
                time.sleep(0.05)

    def stop(self, name: str, timeout: float = 20) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return process.wait(timeout)

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
        self.processes.clear()

    @contextlib.contextmanager
    def serving(self, *names: str) -> Iterator[DaemonFederation]:
        """``names`` started and ready; on the way out, whatever still runs is killed."""
        try:
            self.start(*names)
            self.wait_ready(*names)
            yield self
        finally:
            self.kill_all()

    def log_events(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path(name).read_text().splitlines()]
