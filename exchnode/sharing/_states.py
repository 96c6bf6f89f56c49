"""The sharing rules as a transition table: catalog terms, request states, actions (pure).

Every change of a request's state is one row of :data:`TRANSITIONS` (as in
h11's ``_state.py``); anything not in the table is refused.  Where a request
lands on arrival is :data:`ARRIVAL`, by the catalog entry's share type
(政务数据共享条例, protocol draft §19.2).  The share type is the catalog's own
:class:`~exchnode.catalog.ShareType`: one vocabulary from entry to grant.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from exchnode.catalog import ShareType
from exchnode.core import NodeName, parent_hub
from exchnode.errors import ExchnodeError, UsageError

__all__ = [
    "ARRIVAL",
    "TRANSITIONS",
    "Action",
    "RequestState",
    "ResourceTerms",
    "ReviewOutcome",
    "ShareType",
    "next_state",
    "sharing_authority",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceTerms:
    """What the sharing rules need of one catalog entry; the catalog builds it.

    ``conditions`` is the catalog's share-conditions text: the conditions of a
    conditional resource, the legal basis of a not-shared one.
    """

    code: str
    provider: str
    share_type: ShareType
    conditions: str
    items: frozenset[str]


class RequestState(enum.Enum):
    PENDING = "pending"
    GRANTED = "granted"
    REFUSED = "refused"
    NOT_SHARED = "not_shared"
    EXPIRED = "expired"
    ESCALATED = "escalated"
    CLOSED = "closed"  # escalation upheld: final
    REVOKED = "revoked"
    LAPSED = "lapsed"  # the grant's expiry passed


class Action(enum.Enum):
    REQUEST = "request"
    GRANT = "grant"
    REFUSE = "refuse"
    EXPIRE = "expire"
    ESCALATE = "escalate"
    RE_REVIEW = "re-review"
    UPHOLD = "uphold"
    REVOKE = "revoke"
    LAPSE = "lapse"


class ReviewOutcome(enum.Enum):
    RE_REVIEW = "re-review"
    UPHOLD = "uphold"


_S = RequestState
# Where a request lands on arrival, by the catalog's share type.
ARRIVAL: Mapping[ShareType, RequestState] = {
    ShareType.UNCONDITIONAL: _S.GRANTED,
    ShareType.CONDITIONAL: _S.PENDING,
    ShareType.NOT_SHARED: _S.NOT_SHARED,
}
# Every other change of state.  Not-shared refusals are not escalated here: the
# dispute is with the catalog entry's legal basis, which the catalog's review handles.
TRANSITIONS: Mapping[RequestState, Mapping[Action, RequestState]] = {
    _S.PENDING: {Action.GRANT: _S.GRANTED, Action.REFUSE: _S.REFUSED, Action.EXPIRE: _S.EXPIRED},
    _S.REFUSED: {Action.ESCALATE: _S.ESCALATED},
    _S.EXPIRED: {Action.ESCALATE: _S.ESCALATED},
    _S.ESCALATED: {Action.RE_REVIEW: _S.PENDING, Action.UPHOLD: _S.CLOSED},
    _S.GRANTED: {Action.REVOKE: _S.REVOKED, Action.LAPSE: _S.LAPSED},
}


def next_state(
    state: RequestState, action: Action, request_id: bytes, error: type[ExchnodeError]
) -> RequestState:
    """The table's row for ``(state, action)``, or ``error`` naming the request."""
    following = TRANSITIONS.get(state, {}).get(action)
    if following is None:
        raise error(f"request {request_id.hex()} is {state.value}: cannot {action.value}")
    return following


def sharing_authority(provider: str) -> str:
    """The hub that hears escalations against ``provider``: the hub of its own division.

    A provider that is itself a hub answers to the hub above it.
    """
    name = NodeName.parse(provider)
    if not name.is_hub:
        return name.division
    above = parent_hub(provider)
    if above is None:
        raise UsageError("the national hub has no sharing authority above it")
    return above
