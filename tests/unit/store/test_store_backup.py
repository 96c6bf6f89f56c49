"""``SqliteStore.backup``: a consistent copy of a store in use, taken in steps.

The store holds its file's exclusive lock, so a copy can only come through
its own connection; these pin that the copy is a whole store, that writes
made while it runs are in it, and that the node's calls are not held up for
the whole copy (the lock is let go between steps).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from exchnode.errors import StoreError, UsageError
from exchnode.store import SqliteStore
from tests.unit.store.test_store import NOW, make


def _filled(path: Path, count: int, size: int = 4000) -> SqliteStore:
    store = SqliteStore(path)
    store.accept([make(n, size=size) for n in range(count)], NOW)
    return store


def test_the_copy_is_a_store_holding_every_entry(tmp_path: Path) -> None:
    with _filled(tmp_path / "s.db", 300) as store:
        store.set_meta("k", b"v")
        store.backup(tmp_path / "copy.db", pages=8)
    with SqliteStore(tmp_path / "copy.db") as copy:
        assert len(copy.pending("520102", NOW, 1000, 10**9)) == 300
        assert copy.get_meta("k") == b"v"


def test_writes_during_the_copy_are_in_it_and_do_not_wait_for_the_whole_copy(
    tmp_path: Path,
) -> None:
    with _filled(tmp_path / "s.db", 2000) as store:
        waits: list[float] = []
        written: list[tuple[float, int]] = []  # (when the commit returned, envelope)
        done = threading.Event()

        def writer() -> None:
            n = 10_000
            while not done.is_set():
                started = time.monotonic()
                store.accept([make(n)], NOW)
                finished = time.monotonic()
                waits.append(finished - started)
                written.append((finished, n))
                n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        started = time.monotonic()
        try:
            store.backup(tmp_path / "copy.db", pages=4)
            ended = time.monotonic()
        finally:
            done.set()
            thread.join()
        took = ended - started
    with SqliteStore(tmp_path / "copy.db") as copy:
        entries = copy.pending("520102", NOW, 100_000, 10**10)
        in_copy = {int.from_bytes(e.message_id, "big") for e in entries}
    assert set(range(2000)) <= in_copy
    order = [n for _, n in written]
    copied = [n for n in order if n in in_copy]
    # Consistent: the copy holds the writes up to some point, none after it.
    assert copied == order[: len(copied)]
    # ... and that point lies inside the copy's run: writes made while it ran are in it.
    before = sum(1 for finished, _ in written if finished < started)
    assert len(copied) > before + 1, "no write made while the copy ran is in it"
    # The writer waited one step at a time, never for the whole copy.
    assert max(waits) < took / 2


def test_refuses_an_existing_target_and_bad_pages(tmp_path: Path) -> None:
    (tmp_path / "there.db").write_bytes(b"mine")
    with _filled(tmp_path / "s.db", 1) as store:
        with pytest.raises(StoreError, match=r"there\.db"):
            store.backup(tmp_path / "there.db")
        with pytest.raises(UsageError, match="pages"):
            store.backup(tmp_path / "x.db", pages=0)
    assert (tmp_path / "there.db").read_bytes() == b"mine"
    assert not (tmp_path / "x.db").exists()
