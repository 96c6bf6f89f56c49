"""A hub run as several processes (``[store] workers = N``): worker 0 supervises the others.

Theory of operation
-------------------
One Python process uses one core.  A hub on PostgreSQL can run as N worker
processes on the one database (``exchnode.aio.WorkerShare``): all listen on
the hub's link address (``SO_REUSEPORT``, the kernel spreads the
connections), each takes the transfers its links bring, and each forwards
the queues of the next hops it owns.  The process the operator (or systemd)
starts, ``exchnode node run``, is **worker 0**: the daemon as with one
process -- operator API, services, the inbox, the audit log's heads -- and
the :class:`Supervisor` of workers 1..N-1, which it starts once it serves:

* each worker is ``python -P -m exchnode.node run --config X --worker i``,
  with this interpreter, writing its JSON log lines (each with ``worker``)
  to the same stdout and stderr: no hop through worker 0, so they survive
  worker 0's end and cost it nothing;
* a worker that exits while the hub runs is started again after a short
  backoff (0.5 s, doubling to 30 s, back to 0.5 s once it ran a minute),
  each exit and start logged;
* on SIGTERM or SIGINT worker 0 drains: it sends the workers SIGTERM, waits
  for them within the drain timeout (then SIGKILL), then drains itself;
  SIGHUP is passed on (each reloads its CRLs and ``[[peers]]``);
* a worker must not outlive worker 0: it holds the read end of a pipe whose
  only write end worker 0 holds; when worker 0 ends, however it ends, the
  pipe reads end-of-file and the worker drains and exits;
* the state directory's lock (``daemon.state_lock``) is worker 0's; each
  worker inherits the locked file itself (the same open file, so the same
  lock): a second hub cannot start on the directory while any worker of this
  one lives, and a worker started by hand, without them, refuses to run
  (:func:`inherited_fds`).

Only worker 0 talks to systemd (``NOTIFY_SOCKET`` is not passed on): READY
once it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchnode.errors import UsageError

from .config import DaemonConfig

__all__ = ["WORKER_FDS_ENV", "Inherited", "Supervisor", "inherited_fds"]

#: how worker 0 tells a worker which inherited descriptors are the lock and the pipe
WORKER_FDS_ENV = "EXCHNODE_WORKER_FDS"
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: a worker that ran this long before it exited is restarted after the first backoff again
STEADY_SECONDS = 60.0
#: the longest a drain waits for a worker just started to handle SIGTERM before sending it
HANDLER_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class Inherited:
    """What worker 0 passed a worker: the state directory's locked file, the pipe's read end."""

    lock: int
    parent: int


def inherited_fds(config: DaemonConfig, index: int) -> Inherited:
    """The descriptors worker 0 passed worker ``index``, checked; UsageError if there are none.

    A worker started by hand would run beside (or without) the hub's worker 0
    with no one to stop it: refused, saying who starts workers.
    """
    count = config.store.workers
    if index == 0:
        raise UsageError("worker 0 is 'exchnode node run' itself: leave out --worker")
    if not 1 <= index < count:
        raise UsageError(
            f"{config.path}: store.workers is {count}: there is no worker {index} to run"
        )
    by_hand = UsageError(
        f"worker {index} of {config.name} is started by worker 0 ('exchnode node run "
        f"--config {config.path}'), not by hand"
    )
    text = os.environ.pop(WORKER_FDS_ENV, "")
    try:
        lock_text, parent_text = text.split(",")
        inherited = Inherited(int(lock_text), int(parent_text))
        held = os.fstat(inherited.lock)
        pipe = os.fstat(inherited.parent)
        expected = os.stat(config.state_dir / "daemon.lock")
    except (ValueError, OSError):
        raise by_hand from None
    if (held.st_dev, held.st_ino) != (expected.st_dev, expected.st_ino) or not stat.S_ISFIFO(
        pipe.st_mode
    ):
        raise by_hand
    return inherited


def worker_command(config: DaemonConfig, index: int) -> list[str]:
    """How worker 0 starts worker ``index``: this interpreter, the installed daemon."""
    return [
        sys.executable,
        "-P",
        "-m",
        "exchnode.node",
        "run",
        "--config",
        str(config.path.resolve()),
        "--worker",
        str(index),
    ]


async def _until_it_handles_sigterm(pid: int, timeout: float) -> None:
    """Wait (bounded) until process ``pid`` has a SIGTERM handler: a worker just started.

    A worker told to stop in the first moments of its interpreter, before any
    handler exists, would die of SIGTERM's default action, and the hub's drain
    would end with a worker "not drained" though it had taken nothing.  So the
    signal waits until the worker can take it (``SigCgt`` in ``/proc/PID/status``;
    ``early_signals`` installs the handler first thing).  Where ``/proc`` cannot
    say (another system, the process gone), it goes at once.
    """
    mask = 1 << (signal.SIGTERM - 1)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            status = await asyncio.to_thread(Path(f"/proc/{pid}/status").read_text)
            caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
            if int(caught.split()[1], 16) & mask:
                return
        except (OSError, StopIteration, ValueError, IndexError):
            return
        if asyncio.get_running_loop().time() >= deadline:
            return
        await asyncio.sleep(0.02)


def _status(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


class Supervisor:
    """Workers 1..N-1 of this hub, started, restarted and stopped by worker 0 (module doc).

    ``lock_fd``: the state directory's locked file, passed on to every worker;
    ``on_change``: called with the workers' pids whenever one starts or ends.
    """

    def __init__(
        self,
        config: DaemonConfig,
        lock_fd: int,
        log: Any,
        on_change: Callable[[dict[int, int]], None] | None = None,
    ) -> None:
        self.config = config
        self.count = config.store.workers
        self._lock_fd = lock_fd
        self._log = log
        self._on_change = on_change
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stopping = False
        self._pipe: tuple[int, int] | None = None
        self.restarts = 0

    def pids(self) -> dict[int, int]:
        """The running workers' pids, by index."""
        return {index: process.pid for index, process in sorted(self._processes.items())}

    def start(self) -> None:
        """Start workers 1..N-1 (each kept running by a task of its own)."""
        read, write = os.pipe()  # both close-on-exec: the read end is passed on explicitly
        self._pipe = (read, write)
        loop = asyncio.get_running_loop()
        for index in range(1, self.count):
            self._tasks[index] = loop.create_task(self._keep(index), name=f"worker-{index}")

    def _environment(self) -> dict[str, str]:
        assert self._pipe is not None
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)  # only worker 0 tells systemd it is ready or stopping
        env[WORKER_FDS_ENV] = f"{self._lock_fd},{self._pipe[0]}"
        return env

    async def _keep(self, index: int) -> None:
        assert self._pipe is not None
        loop = asyncio.get_running_loop()
        backoff = FIRST_BACKOFF
        while not self._stopping:
            started = loop.time()
            try:
                process = await asyncio.create_subprocess_exec(
                    *worker_command(self.config, index),
                    stdin=subprocess.DEVNULL,
                    pass_fds=(self._lock_fd, self._pipe[0]),
                    env=self._environment(),
                )
            except OSError as exc:
                self._log.error(
                    "worker not started", child_worker=index, error=exc.strerror or str(exc)
                )
            else:
                self._processes[index] = process
                self._changed()
                self._log.info("worker started", child_worker=index, pid=process.pid)
                code = await process.wait()
                self._processes.pop(index, None)
                self._changed()
                if self._stopping:
                    return
                if loop.time() - started >= STEADY_SECONDS:
                    backoff = FIRST_BACKOFF
                self.restarts += 1
                self._log.warning(
                    "worker exited; restarting it",
                    child_worker=index,
                    pid=process.pid,
                    status=_status(code),
                    restart_in=backoff,
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.pids())

    def send(self, signum: int) -> None:
        """Pass ``signum`` on to every running worker (SIGHUP: reload)."""
        for process in self._processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    async def stop(self, timeout: float) -> bool:
        """SIGTERM to every worker, wait up to ``timeout``, SIGKILL the rest; all drained?"""
        self._stopping = True
        running = dict(self._processes)
        for process in running.values():
            await _until_it_handles_sigterm(process.pid, min(timeout, HANDLER_WAIT))
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        clean = True
        if running:
            waits = [asyncio.ensure_future(p.wait()) for p in running.values()]
            _, late = await asyncio.wait(waits, timeout=timeout)
            if late:
                clean = False
                for index, process in running.items():
                    if process.returncode is None:
                        self._log.error("worker did not drain in time; killed", child_worker=index)
                        with contextlib.suppress(ProcessLookupError):
                            process.kill()
                await asyncio.wait(late, timeout=5.0)
            for index, process in running.items():
                if process.returncode is not None and process.returncode != 0:
                    clean = False
                    self._log.warning(
                        "worker stopped", child_worker=index, status=_status(process.returncode)
                    )
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._close_pipe()
        return clean

    def _close_pipe(self) -> None:
        if self._pipe is not None:
            for fd in self._pipe:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pipe = None

    def kill(self) -> None:
        """Worker 0 is failing without a drain: end the workers now (they would follow anyway)."""
        self._stopping = True
        for process in self._processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        for task in self._tasks.values():
            task.cancel()
        self._close_pipe()
