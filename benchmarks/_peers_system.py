"""What ``benchmarks/peers.py`` does to the machine: installing the peers, processes, CPU, cleanup.

Private to the peers benchmark.  Three things live here because they touch the
system and must be right even when a run fails half-way:

* **Installing a peer** (:func:`ensure_program`): the Debian package, with
  ``apt-get``, only when its program is missing, saying so on stderr.  A fresh
  CI machine has neither broker, and a benchmark that silently compared
  against nothing would be worse than one that says why a column is empty:
  when ``apt-get`` is impossible (not root, no apt, no network) the caller
  gets :class:`Unavailable` with the reason and the rest of the run goes on.
  A package whose maintainer script starts its system service (where no
  ``policy-rc.d`` forbids it) gets that service stopped again: this benchmark
  runs its own brokers on private ports and leaves none behind.
* **Process groups** (:class:`Group`): every broker, and Erlang's ``epmd``, is
  started in a session of its own, so that killing the session kills the
  shell wrapper, ``beam.smp`` and its helpers (``erl_child_setup``,
  ``inet_gethost``) at once, and :func:`session_cpu` can add up the CPU of
  every process in it, children included.  Every group started is registered
  with ``atexit``: whatever way the benchmark ends (an error, Ctrl-C, SIGTERM),
  no broker outlives it, and no folder made with :func:`make_folder` either.
* **CPU from /proc**: user + system ticks of a session's live processes, plus
  what they reaped from exited children (``cutime``/``cstime``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


class Unavailable(Exception):
    """A peer cannot run on this machine; the message says why (it goes into the table).

    ``kind`` says what is missing: ``"install"``, the broker, and apt-get
    could not install it (no apt-get, not root, no network: a machine's
    limit); ``"client"``, its Python client (the ``bench`` extra);
    ``"broken"``, an installation that lacks a part it should have.
    """

    def __init__(self, message: str, kind: str = "install") -> None:
        super().__init__(message)
        self.kind = kind


def note(message: str) -> None:
    print(f"peers: {message}", file=sys.stderr, flush=True)


# --- installing a peer ------------------------------------------------------------------


def find_program(name: str, extra_dirs: Iterable[str] = ()) -> Path | None:
    """``name`` on PATH, else in the sbin folders (root's PATH lacks them in some shells)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin", *extra_dirs):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _apt_get(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def ensure_program(program: str, package: str, service: str | None = None) -> Path:
    """The path of ``program``; installs Debian's ``package`` first if it is missing.

    Raises :class:`Unavailable` when the program is missing and cannot be
    installed here.  ``service`` names the package's init script, stopped
    again if installing started it.
    """
    found = find_program(program)
    if found is not None:
        return found
    if shutil.which("apt-get") is None:
        raise Unavailable(f"{program} is not installed and there is no apt-get here")
    if os.geteuid() != 0:
        raise Unavailable(f"{program} is not installed and apt-get needs root")
    note(f"{program} is not on PATH: apt-get install -y {package} (once per machine)")
    before = _pids()
    install = ["install", "-y", "--no-install-recommends", package]
    try:
        done = _apt_get(install, 900)
        if done.returncode != 0:  # a fresh machine may have no package lists yet
            note(f"apt-get install failed ({_last_line(done.stderr)}); apt-get update, then again")
            _apt_get(["update"], 600)
            done = _apt_get(install, 900)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Unavailable(f"apt-get install {package} failed: {error}") from error
    if done.returncode != 0:
        raise Unavailable(f"apt-get install {package} failed: {_last_line(done.stderr)}")
    if service is not None:
        _stop_started_service(service, program, before)
    found = find_program(program)
    if found is None:
        raise Unavailable(
            f"apt-get installed {package} but {program} is still not found", kind="broken"
        )
    note(f"installed {package}: {found}")
    return found


def _pids() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit()}


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    return ""


def _stop_started_service(service: str, program: str, before: set[int]) -> None:
    """Stop the system service that installing just started: this run's brokers are private."""
    marker = "rabbit" if "rabbit" in program else program
    started = [pid for pid in _pids() - before if marker in _cmdline(pid)]
    if not started:
        return
    note(
        f"installing started the system's {service} service ({len(started)} processes): stopping it"
    )
    for command in (["invoke-rc.d", service, "stop"], ["systemctl", "stop", service]):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            if (
                subprocess.run(command, capture_output=True, timeout=120, check=False).returncode
                == 0
            ):
                return
    note(f"could not stop the system's {service} service; stop it by hand")


# --- process groups -----------------------------------------------------------------------


_LIVE: dict[int, Group] = {}


class Group:
    """A program started in a session of its own, with everything it starts; killed as one."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str],
        log: Path,
        cwd: Path,
    ) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.sid = self.process.pid
        _LIVE[self.sid] = self

    def alive(self) -> bool:
        return self.process.poll() is None

    def members(self) -> list[int]:
        """The processes of the session still running (the wrapper, the VM and its helpers)."""
        return [pid for pid, stat in _stats() if _field(stat, 3) == self.sid]

    def cpu_seconds(self) -> float:
        """User + system seconds of the session's processes, and of children they reaped."""
        total = 0
        for _, stat in _stats():
            if _field(stat, 3) == self.sid:
                total += sum(_field(stat, i) for i in (11, 12, 13, 14))
        return total / TICK

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def kill(self, timeout: float = 15.0) -> None:
        """SIGKILL to the whole session, then wait until none of its processes is left.

        No graceful stop: the broker's data goes with its temporary folder, and
        a broker that cannot shut down must not keep the benchmark waiting.
        """
        _LIVE.pop(self.sid, None)
        deadline = time.monotonic() + timeout
        while True:
            for pid in [self.sid, *self.members()]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.2)
            if self.process.poll() is not None and not self.members():
                return
            if time.monotonic() > deadline:
                note(f"{self.name}: processes {self.members()} survived SIGKILL")
                return


def _stats() -> list[tuple[int, list[int]]]:
    """(pid, the numeric fields after the command name) of every process, from /proc/PID/stat."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        rest = raw[raw.rindex(b")") + 2 :].split()  # the name may hold spaces and parentheses
        out.append((int(entry), [int(x) if x.lstrip(b"-").isdigit() else 0 for x in rest]))
    return out


def _field(fields: list[int], index: int) -> int:
    """A field of /proc/PID/stat after the name: 0 = state, 1 = ppid, 3 = session, 11.. = times."""
    return fields[index] if index < len(fields) else 0


_FOLDERS: set[Path] = set()


def make_folder(prefix: str, base: Path) -> Path:
    """A temporary folder under ``base``, removed by :func:`remove_folder` or at exit."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    _FOLDERS.add(folder)
    return folder


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    _FOLDERS.discard(folder)


def kill_all() -> None:
    """Every group still running, then every folder still there: however the benchmark ends."""
    for group in list(_LIVE.values()):
        group.kill()
    for folder in list(_FOLDERS):
        remove_folder(folder)


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the callers' cleanup, then atexit


atexit.register(kill_all)
if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    # Outside the event loop (installing, starting brokers); inside it, peers.py cancels.
    signal.signal(signal.SIGTERM, _on_sigterm)
