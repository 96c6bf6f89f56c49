"""The event loop a node's process runs on: EXCHNODE_LOOP and uvloop."""

from __future__ import annotations

import asyncio

import pytest

from exchnode.aio import chosen_loop, loop_factory, loop_name, run
from exchnode.errors import UsageError


async def which() -> str:
    return loop_name()


def test_asyncio_when_asked() -> None:
    assert run(which(), choice="asyncio") == "asyncio"


def test_auto_takes_uvloop_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv("EXCHNODE_LOOP", raising=False)
    assert run(which()) == "uvloop"
    assert run(which(), choice="uvloop") == "uvloop"
    assert chosen_loop() == "uvloop"


def test_the_environment_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHNODE_LOOP", "asyncio")
    assert loop_factory() is asyncio.new_event_loop
    assert chosen_loop() == "asyncio"


def test_an_unknown_choice_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHNODE_LOOP", "tokio")
    with pytest.raises(UsageError, match="EXCHNODE_LOOP must be one of auto, uvloop, asyncio"):
        loop_factory()


def test_uvloop_required_but_missing_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_uvloop(name: str, *args: object, **kwargs: object) -> object:
        if name == "uvloop":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    with pytest.raises(UsageError, match="uvloop is not installed"):
        loop_factory("uvloop")
    assert loop_factory("auto") is asyncio.new_event_loop


@pytest.mark.asyncio
async def test_the_in_process_tests_run_on_the_loop_asked_for() -> None:
    """``EXCHNODE_LOOP=uvloop python3 dev.py test`` runs the in-process suite on uvloop."""
    import os

    wanted = "uvloop" if os.environ.get("EXCHNODE_LOOP") == "uvloop" else "asyncio"
    assert loop_name() == wanted
