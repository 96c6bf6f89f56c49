"""Signals between the workers of one hub sharing a PostgreSQL store: LISTEN/NOTIFY.  I/O.

Why: the workers of a hub share one database but not one memory.  A worker
takes a transfer from whichever neighbour's link it holds and queues the
envelopes for their next hops; the worker that *owns* a next hop (and only
it) forwards that queue, and only the delivering worker hands the inbox to
the services (``exchnode.aio.WorkerShare``).  The owner must learn that its
queue grew without polling the database: the accepting transaction sends a
notification (``pg_notify``) on the owner's channel, which PostgreSQL
delivers to its listening session *when that transaction commits* -- never
for a transaction rolled back, never before the rows are visible -- and the
owner's listener wakes its forwarder.  A worker listens on its own channel
only, and is not told what it queued itself: a signal costs nothing where
the worker that takes an envelope also forwards it.

Payloads: ``Signal.payload`` (``exchnode.store._signals``).  A notification
can be lost when the listening session drops; the listener then reconnects
and reports ``None`` ("anything may have changed"), on which a worker wakes
everything it owns, and the node also wakes its queues now and then
(``NodeTimers.worker_poll``) as a last resort.  A signal is a hint: the store stays the truth.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import psycopg
from psycopg import sql

from exchnode.store._postgres_schema import Connection
from exchnode.store._signals import Signal

__all__ = ["SignalListener", "channel", "send_signals"]


def channel(schema: str, worker: int) -> str:
    """Worker ``worker``'s channel on a store's schema: it hears only what it owns, and the
    workers of another hub on the same server hear nothing of it."""
    return f"exchnode.{schema}.{worker}"


def send_signals(conn: Connection, schema: str, signals: Iterable[tuple[int, Signal]]) -> None:
    """Queue ``(worker, signal)`` pairs in the transaction under way; sent if it commits."""
    pairs = sorted({(channel(schema, worker), signal.payload()) for worker, signal in signals})
    if pairs:
        conn.execute(
            "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS s(c, p)",
            ([c for c, _ in pairs], [p for _, p in pairs]),
        )


class SignalListener:
    """A thread holding one session that LISTENs on a store's channel, calling back per signal.

    ``callback`` runs in the listener's thread: with a :class:`Signal`, or
    with None after every (re)connection, when notifications may have been
    missed.  A lost session is re-opened after ``retry_s``; the error is
    given to ``on_error`` (never raised: the node keeps running on its
    periodic wake-ups meanwhile).  :meth:`close` stops the thread within
    about ``poll_s``.
    """

    def __init__(
        self,
        conninfo: str,
        schema: str,
        worker: int,
        callback: Callable[[Signal | None], None],
        *,
        on_error: Callable[[str], None] = lambda _message: None,
        retry_s: float = 1.0,
        poll_s: float = 0.5,
        connect_timeout_s: int = 10,
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel(schema, worker)
        self._callback = callback
        self._on_error = on_error
        self._retry_s = retry_s
        self._poll_s = poll_s
        self._connect_timeout_s = connect_timeout_s
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"signals-{schema}", daemon=True)
        self._thread.start()

    def wait_listening(self, timeout_s: float) -> bool:
        """True once the session listens (signals sent from now on are heard)."""
        return self._listening.wait(timeout_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=self._connect_timeout_s,
                    application_name="exchnode-signals",
                ) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self._listening.set()
                    self._callback(None)
                    while not self._stopping.is_set():
                        for notice in conn.notifies(timeout=self._poll_s):
                            signal = Signal.parse(notice.payload)
                            if signal is not None:
                                self._callback(signal)
            except psycopg.Error as exc:
                self._listening.clear()
                # The class of the error only: a server's message may quote the conninfo.
                self._on_error(f"the signal session was lost ({type(exc).__name__}); reconnecting")
                self._stopping.wait(self._retry_s)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(self._poll_s * 4 + self._connect_timeout_s)
