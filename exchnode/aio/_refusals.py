"""Refusals between this node and its peers: on the record, warned, shown, and bounded (I/O edge).

Theory of operation
-------------------
A peer can be refused at several points, and each must leave a trace:

* **in the TLS handshake**, by OpenSSL (a revoked, expired or untrusted
  chain, a missing CRL): the server learns only the address the connection
  came from; a client learns the name of the neighbour it dialled;
* **after the handshake**, by exchnode: the certificate fails the node's own
  checks (``verify_node_certificate``: the division name constraints...),
  a transfer declares another sender than its certificate names, or the
  peer is not a configured neighbour;
* **per item**, an envelope whose signer is not known yet is deferred
  (``unknown-signer``, ``directory-expired``): not a refusal for good, but a
  neighbour that keeps sending what nobody can verify should be seen;
* **by the peer**: a neighbour answers this node's request with HTTP 403,
  whose text ends with the reason's code in brackets (``... [revoked]``).

Each becomes, per (peer or address, reason, where), **one audit record at
once** (``count`` 1) and a warning line; what follows within the interval
(``NodeTimers.log_repeat_interval``) is only counted, and at its end goes on
the record and in the log as **one** record and line with the count.  A
flood therefore costs at most one record per (peer, reason) per interval,
and the keys held per interval are bounded too: beyond
:data:`MAX_KEYS`, refusals are counted per reason only, without the peer.

Records, category ``connection`` (actor: this node; subject: the peer's node
name if known, else none; outcome ``refused <code>``; detail ``kind`` where
it happened, ``count``, and ``address`` when the peer is known by it only):

* ``link.refused`` -- this node refused the peer (``kind``: ``handshake``,
  ``certificate``, ``sender``, ``neighbour``);
* ``link.refused-by`` -- the peer refused this node (``kind`` ``link``);

and category ``envelope``, ``defer`` -- items of the neighbour deferred
because they could not be verified yet (``kind`` ``signer``).

**The state health shows.**  The last refusal per (peer, direction) is kept
(:meth:`Refusals.current`, at most :data:`MAX_STATES`, the oldest dropped)
until the peer is admitted again in that direction: an authenticated request
of the neighbour's that this node serves, or a request of this node's that
the neighbour answers.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from typing import NamedTuple

from exchnode.aio._context import NodeContext
from exchnode.audit import AuditEntry, DetailValue
from exchnode.core import NodeName
from exchnode.errors import ExchnodeError

__all__ = ["MAX_KEYS", "MAX_STATES", "Refusal", "Refusals"]

#: (peer or address, reason, where) kept per interval before refusals are counted by reason only.
MAX_KEYS = 1024
#: Refusal states kept for health; beyond it the oldest is dropped.
MAX_STATES = 256
_TOKEN = re.compile(r"[a-z0-9][a-z0-9._:-]{0,63}\Z")

REFUSED = "link.refused"
REFUSED_BY = "link.refused-by"
DEFERRED = "defer"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The last refusal between this node and one peer, in one direction."""

    #: The peer's node name, if known (from its certificate, which may be why it was refused).
    peer: str | None
    #: The address it connected from, for a peer refused before it could be named.
    address: str | None
    #: The node that refused: this node, or the peer.
    by: str
    #: The error code (``revoked``, ``name-constraint``, ``not-a-neighbour``...).
    reason: str
    #: Where: ``handshake``, ``certificate``, ``sender``, ``neighbour``, ``signer``, ``link``.
    kind: str
    first_ms: int
    last_ms: int
    #: Refusals since ``first_ms`` (the peer was not admitted in between).
    count: int
    #: What the peer said when it refused this node (its 403's text, without the code).
    text: str | None = None


class _Key(NamedTuple):
    action: str
    peer: str | None
    address: str | None
    reason: str
    kind: str


def _name(peer: str | None) -> str | None:
    if peer is None:
        return None
    try:
        return str(NodeName.parse(peer))
    except ExchnodeError:
        return None


class Refusals:
    """This node's refusals and those it received: aggregated records, warnings, health state."""

    def __init__(self, context: NodeContext, *, interval: float) -> None:
        self._context = context
        self.interval = interval
        #: refusals of this interval: key -> those counted since its last record
        self._window: dict[_Key, int] = {}
        self._states: dict[tuple[str, bool], Refusal] = {}

    # --- what the node's parts report --------------------------------------------------

    def refused(
        self,
        *,
        reason: str,
        kind: str,
        peer: str | None = None,
        address: str | None = None,
        by_peer: bool = False,
        text: str | None = None,
    ) -> None:
        """A refusal: of ``peer`` (or of whoever came from ``address``), or by it (``by_peer``).

        ``text``: what the peer said (its 403), shown in health and kept off the record.
        """
        if not _TOKEN.match(reason):
            reason = "refused"
        peer = _name(peer)
        address = address if address is not None and _TOKEN.match(address) else None
        if peer is not None:
            address = None  # named: the record and the state are the peer's
        self._context.refusal_counts.add(by_peer=by_peer, kind=kind, reason=reason)
        self._note(_Key(REFUSED_BY if by_peer else REFUSED, peer, address, reason, kind), text=text)
        who = peer if peer is not None else address
        if who is not None:
            self._remember(who, by_peer, peer, address, reason, kind, text)

    def deferred(self, peer: str, reason: str, count: int = 1) -> None:
        """Items of ``peer`` deferred because they cannot be verified yet (``unknown-signer``)."""
        if count > 0:
            self._context.refusal_counts.add(
                by_peer=False, kind="signer", reason=reason, count=count
            )
            self._note(_Key(DEFERRED, _name(peer), None, reason, "signer"), count)

    def admitted(self, peer: str, *, outbound: bool = False) -> None:
        """The peer was admitted (inbound) or answered this node (``outbound``): refusals end."""
        if not self._states:
            return
        self._states.pop((peer, False), None)
        if outbound:
            self._states.pop((peer, True), None)

    def by_peer(self, peer: str) -> Refusal | None:
        """The standing refusal of this node by ``peer`` (its 403), if any."""
        return self._states.get((peer, True))

    def current(self) -> tuple[Refusal, ...]:
        """The last refusal per (peer, direction) not ended since, newest first."""
        return tuple(sorted(self._states.values(), key=lambda r: r.last_ms, reverse=True))

    # --- the record and the log ------------------------------------------------------------

    async def run(self) -> None:
        """Every interval: what was only counted goes on the record, one record per key."""
        while True:
            await asyncio.sleep(self.interval)
            self.flush()

    def flush(self) -> None:
        """Record and log the counts held; keys quiet for a whole interval are forgotten."""
        window, self._window = self._window, {}
        entries: list[AuditEntry] = []
        now_ms = self._context.now_ms()
        for key, count in window.items():
            if not count:
                continue
            entries.append(self._entry(key, count, now_ms))
            self._warn(key, count, repeated=True)
            self._window[key] = 0  # still active: its next refusal is counted, not recorded at once
        self._context.log_entries(entries)

    def _note(self, key: _Key, count: int = 1, *, text: str | None = None) -> None:
        """The first of a key in an interval goes on the record at once; the rest are counted."""
        window = self._window
        if key not in window and len(window) >= MAX_KEYS:
            key = key._replace(peer=None, address=None)  # a flood of names: counted by reason
        if key in window:
            window[key] += count
            return
        window[key] = 0
        self._context.log_entries([self._entry(key, count, self._context.now_ms())])
        self._warn(key, count, repeated=False, text=text)

    def _entry(self, key: _Key, count: int, now_ms: int) -> AuditEntry:
        detail: dict[str, DetailValue] = {"count": count, "kind": key.kind}
        if key.address is not None:
            detail["address"] = key.address
        return self._context.recorder.refusal(
            now_ms, key.action, key.peer, key.reason, deferred=key.action == DEFERRED, **detail
        )

    def _warn(self, key: _Key, count: int, *, repeated: bool, text: str | None = None) -> None:
        event = {
            REFUSED: "peer refused",
            REFUSED_BY: "refused by peer",
            DEFERRED: "items deferred: signer not verifiable yet",
        }[key.action]
        self._context.log.warning(
            event + (" (repeated)" if repeated else ""),
            peer=key.peer,
            address=key.address,
            reason=key.reason,
            kind=key.kind,
            count=count,
            interval_s=self.interval if repeated else None,
            said=text,
        )

    def _remember(
        self,
        who: str,
        by_peer: bool,
        peer: str | None,
        address: str | None,
        reason: str,
        kind: str,
        text: str | None = None,
    ) -> None:
        now_ms = self._context.now_ms()
        held = self._states.get((who, by_peer))
        if held is not None and (held.reason, held.kind) == (reason, kind):
            self._states[(who, by_peer)] = replace(
                held, last_ms=now_ms, count=held.count + 1, text=text or held.text
            )
            return
        if held is None and len(self._states) >= MAX_STATES:
            oldest = min(self._states, key=lambda k: self._states[k].last_ms)
            del self._states[oldest]
        self._states[(who, by_peer)] = Refusal(
            peer=peer,
            address=address,
            by=peer if by_peer and peer is not None else self._context.name,
            reason=reason,
            kind=kind,
            first_ms=now_ms,
            last_ms=now_ms,
            count=1,
            text=text,
        )
