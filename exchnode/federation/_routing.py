"""Routing decisions along the administrative hierarchy (pure; federation layer).

Theory of operation
-------------------
Every node knows its own name, its parent (the hub one level up; for a
department, the hub of its own division), its children (the hubs one level
down and the departments of its own division), and any explicitly configured
direct links.  Each neighbour *covers* a scope:

* a child or linked **hub** covers the division prefix of its scope (§2.4 of
  the spec): hub ``520100`` covers every name whose division starts ``5201``;
* a child or linked **department** covers exactly its own name.

To move an envelope towards a recipient a node chooses, in this order:
itself (local delivery); the child covering the recipient, choosing the
longest scope; a direct link covering it; the parent.  The parent is used
only when the recipient is outside this node's own scope.  So an envelope
climbs to the lowest common ancestor and then descends, and may cross one
configured link on the way.

Signed envelopes cannot be rewritten, so a multi-recipient envelope is not
split by editing its recipient list.  The same bytes go once to each
neighbour that leads to some of its recipients, annotated with the
*targets* that copy carries.  :meth:`Router.route` returns that grouping.

Acceptance makes loops impossible and confines each neighbour to its place:

* from a **child** or a **link**: the sender must lie within that
  neighbour's scope (a county hub cannot inject mail "from" another county);
* from the **parent** or a **link**: every target must lie within this
  node's own scope, so traffic from above only ever goes down;
* every target must be a recipient named in the signed envelope.

Traffic from the parent or a link can therefore only descend, and descent
strictly lengthens the matched scope; traffic from a child climbs only while
its target is outside the current scope.  Every path is up*, at most one
link, down*: finite, no loops (property-tested over random hierarchies).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from exchnode.core import NodeName, division_scope
from exchnode.errors import RoutingRefusedError, UsageError

__all__ = ["Neighbour", "Relation", "Route", "Router"]


class Relation(enum.Enum):
    PARENT = "parent"
    CHILD = "child"
    LINK = "link"


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A node this one exchanges envelopes with directly."""

    name: NodeName
    relation: Relation

    @property
    def scope(self) -> str:
        """The division prefix this neighbour covers ('' for a department: exact match)."""
        return division_scope(self.name.division) if self.name.is_hub else ""

    def covers(self, target: NodeName) -> bool:
        if self.name.is_hub:
            return target.division.startswith(self.scope)
        return target == self.name


@dataclass(frozen=True, slots=True)
class Route:
    """Where the copies of one envelope go: neighbour name → the targets each copy carries."""

    local: tuple[str, ...] = ()
    forward: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unroutable: tuple[str, ...] = ()


class Router:
    """The routing table of one node and the decisions made from it."""

    def __init__(self, me: NodeName | str, neighbours: Iterable[Neighbour] = ()) -> None:
        self.me = me if isinstance(me, NodeName) else NodeName.parse(me)
        self._scope = division_scope(self.me.division) if self.me.is_hub else None
        self._parent: Neighbour | None = None
        self._down: list[Neighbour] = []
        self._links: list[Neighbour] = []
        self._by_name: dict[str, Neighbour] = {}
        for neighbour in neighbours:
            self.add(neighbour)

    # --- the table ----------------------------------------------------------------

    def add(self, neighbour: Neighbour) -> None:
        name = str(neighbour.name)
        if neighbour.name == self.me:
            raise UsageError(f"{name} cannot be its own neighbour")
        if name in self._by_name:
            raise UsageError(f"{name} is already a neighbour of {self.me}")
        if neighbour.relation is Relation.PARENT:
            if self._parent is not None:
                raise UsageError(f"{self.me} already has parent {self._parent.name}")
            if not neighbour.name.is_hub:
                raise UsageError(f"parent {name} must be a hub")
            self._parent = neighbour
        elif neighbour.relation is Relation.CHILD:
            if not self.me.is_hub:
                raise UsageError(f"department {self.me} cannot have children")
            if not self._within_me(neighbour.name):
                raise UsageError(f"child {name} lies outside {self.me}'s scope")
            self._down.append(neighbour)
            # Longest scope first: the most specific child wins (a county hub
            # over its city hub), departments (exact names) before all.
            self._down.sort(key=lambda n: (n.name.is_hub, -len(n.scope)))
        else:
            self._links.append(neighbour)
            self._links.sort(key=lambda n: (n.name.is_hub, -len(n.scope)))
        self._by_name[name] = neighbour

    def remove(self, name: str) -> Neighbour:
        """Take ``name`` out of the table (a peer removed while the node runs); the neighbour."""
        neighbour = self.neighbour(name)
        del self._by_name[name]
        if neighbour.relation is Relation.PARENT:
            self._parent = None
        elif neighbour.relation is Relation.CHILD:
            self._down.remove(neighbour)
        else:
            self._links.remove(neighbour)
        return neighbour

    def neighbour(self, name: str) -> Neighbour:
        try:
            return self._by_name[name]
        except KeyError:
            raise RoutingRefusedError(f"{name} is not a neighbour of {self.me}") from None

    @property
    def neighbours(self) -> Sequence[Neighbour]:
        return tuple(self._by_name.values())

    def _within_me(self, target: NodeName) -> bool:
        if self._scope is None:
            return target == self.me
        return target.division.startswith(self._scope)

    # --- decisions ----------------------------------------------------------------

    def next_hop(self, target: NodeName, *, came_from: Relation | None = None) -> str | None:
        """The neighbour towards ``target``; ``self.me`` for local delivery; None if none.

        ``came_from`` restricts the choice as acceptance does: what came from
        the parent or a link only descends.
        """
        if target == self.me:
            return str(self.me)
        for child in self._down:
            if child.covers(target):
                return str(child.name)
        if came_from in (Relation.PARENT, Relation.LINK):
            return None
        for link in self._links:
            if link.covers(target):
                return str(link.name)
        if self._parent is not None and not self._within_me(target):
            return str(self._parent.name)
        return None

    def route(self, targets: Iterable[str], *, came_from: Relation | None = None) -> Route:
        """Group ``targets`` by next hop: one copy per neighbour, split where paths part."""
        local: list[str] = []
        forward: dict[str, list[str]] = {}
        unroutable: list[str] = []
        for target in sorted(set(targets)):
            hop = self.next_hop(NodeName.parse(target), came_from=came_from)
            if hop is None:
                unroutable.append(target)
            elif hop == str(self.me):
                local.append(target)
            else:
                forward.setdefault(hop, []).append(target)
        return Route(
            tuple(local), {hop: tuple(ts) for hop, ts in forward.items()}, tuple(unroutable)
        )

    def accept(
        self,
        neighbour: str,
        sender: str,
        recipients: Iterable[str],
        targets: Iterable[str],
    ) -> Relation:
        """Check an envelope offered by ``neighbour`` for ``targets``; return the relation.

        ``recipients`` are the envelope's signed recipients; ``targets`` the
        subset this copy is for.  Raises ``RoutingRefusedError`` naming the rule.
        """
        peer = self.neighbour(neighbour)
        sender_name = NodeName.parse(sender)
        target_names = [NodeName.parse(t) for t in targets]
        if not target_names:
            raise RoutingRefusedError(f"{neighbour} offered an envelope with no targets")
        signed = set(recipients)
        strays = [str(t) for t in target_names if str(t) not in signed]
        if strays:
            raise RoutingRefusedError(
                f"{neighbour} targeted {', '.join(strays)}, not recipients of the envelope"
            )
        if peer.relation in (Relation.CHILD, Relation.LINK) and not peer.covers(sender_name):
            raise RoutingRefusedError(
                f"{neighbour} ({peer.relation.value}) offered an envelope from {sender}, "
                f"outside its scope"
            )
        if peer.relation in (Relation.PARENT, Relation.LINK):
            outside = [str(t) for t in target_names if not self._within_me(t)]
            if outside:
                raise RoutingRefusedError(
                    f"{neighbour} ({peer.relation.value}) sent down targets outside "
                    f"{self.me}'s scope: {', '.join(outside)}"
                )
        return peer.relation
