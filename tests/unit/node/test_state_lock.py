"""``node.daemon.state_lock``: one daemon per state directory, and ``check``'s shared probe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exchnode.errors import UsageError
from exchnode.node.daemon import state_lock


def test_the_daemon_writes_its_pid_and_a_second_one_is_refused(tmp_path: Path) -> None:
    with state_lock(tmp_path):
        assert (tmp_path / "daemon.lock").read_text() == f"{os.getpid()}\n"
        for shared in (False, True):
            with pytest.raises(UsageError) as refused, state_lock(tmp_path, shared=shared):
                pass
            assert str(refused.value) == (
                f"{tmp_path} is in use by another daemon (pid {os.getpid()}, or the workers it "
                "started, which hold it until they have drained); stop it first"
            )
    with state_lock(tmp_path):  # released
        pass


def test_readers_share_the_lock_write_nothing_and_keep_the_daemon_out(tmp_path: Path) -> None:
    with state_lock(tmp_path, shared=True):  # no daemon ever ran here: nothing to lock
        assert not (tmp_path / "daemon.lock").exists()
    with state_lock(tmp_path):
        pass
    with state_lock(tmp_path, shared=True), state_lock(tmp_path, shared=True):
        assert (tmp_path / "daemon.lock").read_text() == f"{os.getpid()}\n"  # left as it was
        with pytest.raises(UsageError), state_lock(tmp_path):
            pass
