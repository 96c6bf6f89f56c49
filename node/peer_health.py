"""How health and the administrator show a peer: its link state, or the refusal between us.

A neighbour this node refuses (its certificate, its declared sender, not
configured here), or that refuses this node (its HTTP 403, whose reason code
the node keeps), is shown with state ``refused`` and the reason -- not as
``unknown`` or ``up`` -- until it is admitted again in that direction
(``exchnode.aio.Refusal``, kept by the node).  Refusals of peers that are not
configured neighbours (a stranger, an address whose handshake failed) are
listed apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from exchnode.aio import Refusal

__all__ = ["refusal_json", "refusals_by_peer", "with_refusal"]


def refusal_json(refusal: Refusal) -> dict[str, Any]:
    """One refusal: who refused whom, why, where, since when and how often."""
    return {
        "peer": refusal.peer,
        "address": refusal.address,
        "refused_by": refusal.by,
        "reason": refusal.reason,
        "kind": refusal.kind,
        "first_ms": refusal.first_ms,
        "last_ms": refusal.last_ms,
        "count": refusal.count,
        "said": refusal.text,
    }


def refusals_by_peer(refusals: Iterable[Refusal]) -> dict[str, Refusal]:
    """The newest refusal per named peer, either direction."""
    out: dict[str, Refusal] = {}
    for refusal in refusals:
        if refusal.peer is None:
            continue
        held = out.get(refusal.peer)
        if held is None or refusal.last_ms > held.last_ms:
            out[refusal.peer] = refusal
    return out


def with_refusal(state: Mapping[str, Any], refusal: Refusal | None) -> dict[str, Any]:
    """A peer's link state, with state ``refused`` and the refusal if there is one."""
    shown = dict(state)
    if refusal is not None:
        shown["state"] = "refused"
        shown["refused"] = refusal_json(refusal)
    return shown
