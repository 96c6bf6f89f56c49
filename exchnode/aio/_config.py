"""How a node is set up: its neighbours, where it listens, its limits and its timers (pure values).

:class:`NodeConfig` gathers them for the :class:`~exchnode.aio.Node`.  The
daemon reads them from TOML (``node/``); an integrator builds them in code.
Each value checks itself on construction, so a bad configuration fails at
startup with a message naming the setting, not at the first message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from exchnode.aio._admission import Admission
from exchnode.core import NodeName, OpenPolicy, SealPolicy
from exchnode.errors import UsageError
from exchnode.federation import DEFAULT_BACKOFF, BackoffPolicy, Neighbour, Relation

__all__ = ["NodeConfig", "NodeLimits", "NodeTimers", "Peer", "WorkerShare"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """A neighbour: its name, its relation to this node, and where it listens (``https://…``)."""

    name: str
    relation: Relation
    url: str

    def __post_init__(self) -> None:
        NodeName.parse(self.name)
        if not isinstance(self.relation, Relation):
            raise UsageError(f"relation of {self.name} must be a Relation, got {self.relation!r}")
        _check_url(f"url of {self.name}", self.url)

    @property
    def neighbour(self) -> Neighbour:
        return Neighbour(NodeName.parse(self.name), self.relation)


def _check_url(what: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.port is None:
        raise UsageError(f"{what} must be https://host:port, got {url!r}")


def _positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise UsageError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLimits:
    """Bounds on what a node holds and moves.

    ``max_queued_*``: everything stored (outbound queues and inbox).  A node
    at its limit answers DEFERRED and advertises no credit, so senders hold
    their items and slow down (back-pressure); nothing is dropped, and its
    own application's ``send`` waits.  ``transfer_*``: the most one transfer
    carries out, and the credit this node grants each neighbour.
    ``max_transfer_bytes``: the largest request body a neighbour may send.

    ``max_inflight_bytes_per_neighbour``, ``max_inflight_bytes``: the request
    bodies from neighbours (transfers and the services' endpoints) this node
    holds in memory at once, from one neighbour and from all of them.  Each
    request's declared size is reserved before a byte of it is read; one that
    does not fit is answered HTTP 429 unread (its items stay with the sender,
    which retries after ``Retry-After``), and the credit a transfer's answer
    grants never exceeds the room left.  What receiving costs in memory is a
    multiple of the bytes in flight -- decoding and verifying copy an envelope
    several times, the store's cache fills -- so budget about 8 x
    ``max_inflight_bytes`` above the node's idle footprint, however many
    transfers arrive at once (sixteen concurrent 16 MiB transfers from one
    neighbour, bounded at 16 MiB per neighbour and 32 MiB in all, raised a
    hub's peak by 150-175 MiB; unbounded, by 640 MiB).  A neighbour's bound
    must hold the largest transfer (``max_transfer_bytes``).
    """

    max_queued_items: int = 1_000_000
    max_queued_bytes: int = 4 * 1024**3
    transfer_items: int = 1024
    transfer_bytes: int = 16 * 1024**2
    max_transfer_bytes: int = 64 * 1024**2
    max_inflight_bytes_per_neighbour: int = 64 * 1024**2
    max_inflight_bytes: int = 128 * 1024**2
    deliveries_buffered: int = 256

    def __post_init__(self) -> None:
        _positive(
            self,
            "max_queued_items",
            "max_queued_bytes",
            "transfer_items",
            "transfer_bytes",
            "max_transfer_bytes",
            "max_inflight_bytes_per_neighbour",
            "max_inflight_bytes",
            "deliveries_buffered",
        )
        if self.transfer_bytes > self.max_transfer_bytes:
            raise UsageError("transfer_bytes cannot exceed max_transfer_bytes")
        if self.max_inflight_bytes_per_neighbour < self.max_transfer_bytes:
            raise UsageError(
                f"max_inflight_bytes_per_neighbour ({self.max_inflight_bytes_per_neighbour}) "
                f"cannot be less than max_transfer_bytes ({self.max_transfer_bytes}): "
                "a transfer of the largest size must fit"
            )
        if self.max_inflight_bytes < self.max_inflight_bytes_per_neighbour:
            raise UsageError(
                f"max_inflight_bytes ({self.max_inflight_bytes}) cannot be less than "
                f"max_inflight_bytes_per_neighbour ({self.max_inflight_bytes_per_neighbour})"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeTimers:
    """Periods in seconds.

    ``expiry_interval``: how often expired entries are reported and removed.
    ``deferred_pause``: the first wait after a neighbour deferred everything
    (doubles up to ``deferred_pause_max`` while it stays full).
    ``link_timeout``: one transfer, connect to answer.  ``inbox_rescan``: how
    often entries that could not be opened yet (e.g. an unknown signer) are
    tried again.  ``directory_refresh``: how often the node directory is pulled
    from every neighbour (changes are also announced at once);
    ``directory_lifetime``: how long the snapshot this node signs is valid --
    how long its neighbours keep working from their cache if it goes away.
    ``removal_delay``: how long the removal of what a neighbour took may wait, so
    that the removals of several transfers are one commit (a hub with many quiet
    children otherwise commits twice per message); 0: at once.  Custody has moved
    already: a crash before the removal costs a resend the neighbour's dedup
    answers, never a loss.
    ``directory_lookup_timeout``: how long a send waits for the hierarchy to
    answer a lookup of a name this node does not hold (SPEC §14.16) before it
    fails closed; ``directory_negative_ttl``: how long a name nobody knew is not
    asked for again (0: asked every time).
    ``log_repeat_interval``: a condition that repeats (a neighbour down, items
    deferred or refused for the same reason) is logged at most once per
    interval per neighbour and reason, with the count of lines left out.
    ``worker_poll``: a worker of a hub with several (:class:`WorkerShare`) is
    woken by the other workers' signals when its queues grow; it also looks at
    every queue it owns this often, in case a signal was lost.
    """

    expiry_interval: float = 1.0
    deferred_pause: float = 0.02
    deferred_pause_max: float = 2.0
    link_timeout: float = 30.0
    inbox_rescan: float = 30.0
    directory_refresh: float = 60.0
    directory_lifetime: float = 24 * 3600.0
    directory_lookup_timeout: float = 5.0
    directory_negative_ttl: float = 5.0
    removal_delay: float = 0.05
    log_repeat_interval: float = 60.0
    worker_poll: float = 5.0

    def __post_init__(self) -> None:
        _positive(
            self,
            "expiry_interval",
            "deferred_pause",
            "deferred_pause_max",
            "link_timeout",
            "inbox_rescan",
            "directory_refresh",
            "directory_lifetime",
            "directory_lookup_timeout",
            "log_repeat_interval",
            "worker_poll",
        )
        for name in ("directory_negative_ttl", "removal_delay"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise UsageError(f"{name} must be 0 or more, got {value!r}")


@dataclass(frozen=True, slots=True)
class WorkerShare:
    """This process is worker ``index`` of ``count`` serving one hub on one shared store.

    Why several: one Python process uses one core; a province hub on a
    16-core host runs several workers on one PostgreSQL database
    (``exchnode.store.PostgresStore``: custody, dedup and queues are correct
    across its sessions).  What each worker does:

    * **takes** transfers from whichever neighbours' links it holds (they all
      listen on the same address, ``SO_REUSEPORT``: the kernel spreads the
      connections), and queues what it takes in the shared store;
    * **forwards** only the queues of the next hops it owns (:meth:`owns`: a
      stable hash of the neighbour's name, the same in every worker), so that
      no queue is sent by two workers;
    * **delivers** the inbox (to the services and the application) only if it
      is worker 0 (:attr:`delivers`).

    A worker learns that another one queued entries for a hop it owns, or that
    a neighbour it owns said hello to another worker, from the store's signals
    (``PostgresStore.watch``), and looks at its queues every
    ``NodeTimers.worker_poll`` seconds besides.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if type(self.count) is not int or not 1 <= self.count <= 256:
            raise UsageError(f"a hub's worker count must be 1..256, got {self.count!r}")
        if type(self.index) is not int or not 0 <= self.index < self.count:
            raise UsageError(f"worker index must be 0..{self.count - 1}, got {self.index!r}")

    def owner(self, hop: str) -> int:
        """The worker that forwards ``hop``'s queue (every worker computes the same)."""
        digest = hashlib.sha256(hop.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count

    def owns(self, hop: str) -> bool:
        return self.owner(hop) == self.index

    @property
    def delivers(self) -> bool:
        """Worker 0 delivers the inbox and runs what consumes it (the node's services)."""
        return self.index == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """How a node is set up, apart from who it is and whom it trusts (``Node(config=...)``).

    Everything here is a plain value that can be written down (and compared):
    the daemon's ``node.toml`` maps onto it one to one -- ``[[peers]]`` →
    ``peers``, ``[node] listen`` → ``listen``, ``[directory] advertise`` →
    ``advertise``, ``[limits]`` → ``limits``, ``[timers]`` → ``timers``
    (``DaemonConfig.node_config``) -- and the daemon leaves ``backoff`` and
    the policies at their defaults.  What the node *is* and *believes* (its
    identity and TLS files, the trust store and CA bundle, a static
    directory), where it keeps its state (the store), what is attached to it
    (services), and its clock and randomness are the Node's own arguments.

    * ``peers``: the neighbours (names distinct);
    * ``listen``: ``(host, port)`` the node serves its neighbours on (port 0:
      any free port); None serves nothing (a node that only calls out);
    * ``advertise``: the ``https://host:port`` this node publishes in the
      signed node directory (default: built from ``listen``); unused with a
      static directory;
    * ``limits``, ``timers``: see :class:`NodeLimits` and :class:`NodeTimers`;
    * ``backoff``: how long an unreachable neighbour is left before the next try;
    * ``seal_policy``, ``open_policy``: the protocol core's rules for sealing
      and for what it accepts (``exchnode.core``);
    * ``worker``: this process's share of a hub run as several workers on one
      shared store (:class:`WorkerShare`); None: the node is one process;
    * ``admission``: which node that is not among ``peers`` a hub takes as a
      child when it first says hello (:class:`Admission`; default: the
      hub's own division, as the CA hierarchy certifies it);
    * ``cut_through``: a forwarder with nothing else to send may transfer what
      just arrived while this node's own commit of it runs (SPEC §16.4), so the
      fsyncs of the hops on a path overlap instead of adding up; the previous
      hop is still answered only after that commit.  False: forward only what
      is committed (for comparison; nothing else changes).
    """

    peers: Sequence[Peer] = ()
    listen: tuple[str, int] | None = ("127.0.0.1", 0)
    advertise: str | None = None
    limits: NodeLimits = field(default_factory=NodeLimits)
    timers: NodeTimers = field(default_factory=NodeTimers)
    backoff: BackoffPolicy = DEFAULT_BACKOFF
    seal_policy: SealPolicy = field(default_factory=SealPolicy)
    open_policy: OpenPolicy = field(default_factory=OpenPolicy)
    worker: WorkerShare | None = None
    admission: Admission = field(default_factory=Admission)
    cut_through: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.cut_through, bool):
            raise UsageError(f"cut_through must be true or false, got {self.cut_through!r}")
        if isinstance(self.peers, Peer):
            raise UsageError("peers is a list of Peer values, not one Peer")
        peers = tuple(self.peers)
        names: set[str] = set()
        for peer in peers:
            if not isinstance(peer, Peer):
                raise UsageError(f"peers must be Peer values, got {type(peer).__name__}")
            if peer.name in names:
                raise UsageError(f"peer {peer.name} is listed twice")
            names.add(peer.name)
        object.__setattr__(self, "peers", peers)
        listen = self.listen
        if listen is not None and not (
            isinstance(listen, tuple)
            and len(listen) == 2
            and isinstance(listen[0], str)
            and isinstance(listen[1], int)
            and 0 <= listen[1] <= 65535
        ):
            raise UsageError(f"listen must be (host, port), got {listen!r}")
        if self.advertise is not None:
            _check_url("advertise", self.advertise)
        for name, kind in (
            ("limits", NodeLimits),
            ("timers", NodeTimers),
            ("backoff", BackoffPolicy),
            ("seal_policy", SealPolicy),
            ("open_policy", OpenPolicy),
            ("admission", Admission),
        ):
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise UsageError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
        if self.worker is not None and not isinstance(self.worker, WorkerShare):
            raise UsageError(f"worker must be a WorkerShare, got {type(self.worker).__name__}")

    @property
    def advertised_url(self) -> str:
        """The URL the signed directory publishes: ``advertise``, else from ``listen``, else ''."""
        if self.advertise is not None:
            return self.advertise
        if self.listen is not None and self.listen[1]:
            return f"https://{self.listen[0]}:{self.listen[1]}"
        return ""
