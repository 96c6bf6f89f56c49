"""Peers changed while the daemon runs: ``admin peers add|remove|list``; ``[[peers]]`` on SIGHUP.

Theory of operation
-------------------
A node's neighbours come from three places (``exchnode.aio.PEER_SOURCES``):

* ``config``: the ``[[peers]]`` of ``node.toml``.  SIGHUP (or ``POST
  /v1/admin/peers/reload``) reads the whole file again with the same loader
  as a start; a file that does not load is refused with its one-line reason
  and *nothing* changes (the peers in use stay).  From a file that loads,
  only the peers are applied -- added, removed, or replaced where the URL or
  relation changed -- and any other difference is named in the log as taking
  effect at the next start;
* ``admitted``: a hub admitted the node on its first hello by ``[admission]``
  (``exchnode.aio.Admission``);
* ``added``: by the administrator, ``POST /v1/admin/peers``.

Admitted and added peers are kept in the node's store (they are neighbours
again after a restart) until ``POST /v1/admin/peers/{name}/remove``; a name
the file holds is the file's to change.  Every change is an audit record
(category ``configuration``: ``peer.add``, ``peer.remove``, ``peers.reload``),
with the administrator's name, or the node's for SIGHUP.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from exchnode.aio import Peer
from exchnode.audit import (
    NO_SUBJECT,
    Actor,
    Category,
    Outcome,
    Role,
)
from exchnode.errors import ExchnodeError, UsageError
from exchnode.federation import Relation
from exchnode.store import PeerState

from .api import HTTPProblem, json_body, node_subject, peer_state_json, person
from .audited import record
from .config import ConfigError, DaemonConfig, load_config
from .peer_health import refusals_by_peer, with_refusal

if TYPE_CHECKING:
    from exchnode.aio import AuditService, Node

__all__ = ["PeerAdmin", "PeersReloaded"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PeersReloaded:
    """What a reload of ``[[peers]]`` did."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []
        self.changed: list[str] = []
        #: settings other than the peers that differ from the running ones (next start)
        self.pending: list[str] = []

    def json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "next_start": self.pending,
        }


class PeerAdmin:
    """The administrator's peers: list, add, remove, reload (mounted by ``AdminApi``)."""

    def __init__(self, node: Node, config: DaemonConfig, audit: AuditService) -> None:
        self.node = node
        self.config = config
        self.audit = audit
        self.log: Any = structlog.get_logger("node.admin").bind(node=node.name)
        #: after a reload the administrator asked for: the hub's other workers reload theirs
        #: (``node.workers``; SIGHUP reaches them without it)
        self.others_reload: Callable[[], None] | None = None

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v1/admin/peers", self._list),
            ("POST", "/v1/admin/peers", self._add),
            ("POST", "/v1/admin/peers/reload", self._reload),
            ("POST", "/v1/admin/peers/{name}/remove", self._remove),
        ]

    def _record(
        self, action: str, actor: Actor, outcome: Outcome, name: str = "", **n: int
    ) -> None:
        subject = node_subject(name) if name else NO_SUBJECT
        category = Category.CONFIGURATION
        record(self.audit, self.node, category, action, actor, outcome, subject, **n)

    # --- the API --------------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        try:
            stats = await self.node.stats()
        except ExchnodeError as exc:  # stopping between the guard and the store call
            raise HTTPProblem(503, str(exc), "unavailable") from None
        now_ms = int(time.time() * 1000)
        refused = refusals_by_peer(stats.refusals)
        peers = []
        for name, (peer, source) in sorted(self.node.peers().items()):
            queued = stats.outbound.get(name)
            handed = stats.handed_over.get(name)
            peers.append(
                {
                    "name": name,
                    "relation": peer.relation.value,
                    "url": peer.url,
                    "source": source,
                    **with_refusal(
                        peer_state_json(stats.peers.get(name, PeerState()), now_ms),
                        refused.get(name),
                    ),
                    "queued": {
                        "count": queued.count if queued else 0,
                        "bytes": queued.bytes if queued else 0,
                    },
                    "handed_over": {
                        "count": handed.count if handed else 0,
                        "bytes": handed.bytes if handed else 0,
                    },
                }
            )
        return web.json_response(
            {"name": self.node.name, "admission": self.config.admission.policy, "peers": peers}
        )

    async def _add(self, request: web.Request) -> web.Response:
        document = await json_body(request)
        who = person(document, Role.ADMINISTRATOR)
        actor = Actor(Role.ADMINISTRATOR, who)
        name, relation, url = (document.get(k) for k in ("name", "relation", "url"))
        if not (isinstance(name, str) and isinstance(relation, str) and isinstance(url, str)):
            raise HTTPProblem(400, "give name, relation (parent, child, link) and url as text")
        try:
            peer = Peer(name=name, relation=Relation(relation), url=url)
        except (ValueError, ExchnodeError) as exc:
            self._record("peer.add", actor, Outcome.refused("bad-request"), name)
            reason = str(exc) if isinstance(exc, ExchnodeError) else f"relation: {exc}"
            raise HTTPProblem(400, reason) from None
        try:
            await self.node.add_peer(peer, source="added")
        except UsageError as exc:
            self._record("peer.add", actor, Outcome.refused("conflict"), name)
            raise HTTPProblem(409, str(exc), "conflict") from None
        self._record("peer.add", actor, Outcome.ok(), name)
        self.log.info("peer added", peer=name, administrator=who)
        return web.json_response(
            {"name": name, "relation": relation, "url": url, "source": "added"}
        )

    async def _remove(self, request: web.Request) -> web.Response:
        who = person(await json_body(request), Role.ADMINISTRATOR)
        actor = Actor(Role.ADMINISTRATOR, who)
        name = request.match_info["name"]
        held = self.node.peers().get(name)
        if held is None:
            self._record("peer.remove", actor, Outcome.refused("unknown-peer"), name)
            raise HTTPProblem(404, f"{name} is not a neighbour of {self.node.name}", "unknown-peer")
        if held[1] == "config":
            self._record("peer.remove", actor, Outcome.refused("conflict"), name)
            raise HTTPProblem(
                409,
                f"{name} is configured in {self.config.path}: remove its [[peers]] table there "
                "and reload (kill -HUP, or exchnode node admin peers reload)",
                "conflict",
            )
        await self.node.remove_peer(name)
        self._record("peer.remove", actor, Outcome.ok(), name)
        return web.json_response({"name": name, "removed": True, "was": held[1]})

    async def _reload(self, request: web.Request) -> web.Response:
        who = person(await json_body(request), Role.ADMINISTRATOR)
        try:
            done = await self.reload(Actor(Role.ADMINISTRATOR, who))
        except ConfigError as exc:
            raise HTTPProblem(
                409, f"{exc}; the peers in use stay", "invalid-configuration"
            ) from None
        if self.others_reload is not None:
            self.others_reload()
        return web.json_response(done.json())

    # --- the reload (SIGHUP too) -----------------------------------------------------------

    async def reload(self, actor: Actor | None = None) -> PeersReloaded:
        """Read ``node.toml`` again and apply its ``[[peers]]``; ConfigError changes nothing."""
        actor = actor or Actor.node(self.node.name)
        try:
            fresh = load_config(self.config.path)
            if fresh.name != self.config.name:
                raise ConfigError(
                    f"{self.config.path}: node.name: {fresh.name} is not the running "
                    f"node {self.config.name}"
                )
        except ConfigError:
            self._record("peers.reload", actor, Outcome.refused("invalid-configuration"))
            raise
        done = PeersReloaded()
        done.pending = _pending(self.config, fresh)
        held = self.node.peers()
        wanted = {peer.name: peer for peer in fresh.peers}
        for name, (_, source) in held.items():
            if source != "config":
                continue
            if name not in wanted:
                await self.node.remove_peer(name)
                done.removed.append(name)
                self._record("peer.remove", actor, Outcome.ok(), name)
        for name, peer in wanted.items():
            current = held.get(name)
            if current is not None and current[0] == peer:
                continue
            try:
                if current is not None:
                    await self.node.remove_peer(name)
                await self.node.add_peer(peer, source="config")
            except UsageError as exc:  # refused by the routing rules: said, the rest goes on
                self.log.error("peer not taken from the file", peer=name, error=str(exc))
                self._record("peer.add", actor, Outcome.refused("conflict"), name)
                continue
            (done.changed if current is not None else done.added).append(name)
            self._record("peer.add", actor, Outcome.ok(), name)
        self._record(
            "peers.reload",
            actor,
            Outcome.ok(),
            count=len(done.added) + len(done.removed) + len(done.changed),
        )
        self.log.info("peers reloaded", **done.json())
        return done


def _pending(running: DaemonConfig, fresh: DaemonConfig) -> list[str]:
    """The sections other than ``[[peers]]`` whose values differ: they wait for a restart."""
    names = ["listen", "state_dir", "identity", "trust", "directory", "limits", "timers"]
    names += ["drain_timeout", "operator", "sharing", "catalog", "audit", "log", "store"]
    names.append("admission")
    return [name for name in names if getattr(running, name) != getattr(fresh, name)]
