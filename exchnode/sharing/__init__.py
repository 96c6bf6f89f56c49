"""Subscriptions under the sharing rules: requests, decisions, grants (pure).

Theory of operation
-------------------
A department subscribes to another's resource by sending a *request*
(purpose, scope, data items) to the resource's provider.  What happens next
is fixed by the catalog entry's share type (政务数据共享条例, protocol draft
§19):

* **unconditional**: the provider's node grants it on arrival;
* **conditional**: it waits for the provider's operator, who approves (all or
  some of the requested items, with masks and an optional expiry) or refuses
  with a reason, within a deadline of N working days (``workdays``); past the
  deadline it is **expired** and the requester is told;
* **not shared**: refused on arrival, citing the catalog's legal basis.

A refused or expired conditional request can be **escalated** to the
same-level sharing authority, which this protocol takes to be the hub of the
*provider's* division (:func:`sharing_authority`): only an authority over
the provider can direct it to look again.  The authority either directs a
**re-review** (pending again, with a fresh deadline) or **upholds**.

A grant lasts until the provider **revokes** it or its expiry passes
(**lapse**).  Revocation takes effect for the next record published.

Every state change is one row of :data:`TRANSITIONS` (as in h11's
``_state.py``); anything not in the table is refused.  Each one emits exactly
one :class:`~exchnode.core.AuditEvent`.

The messages (:class:`SubscriptionRequest`, :class:`Decision`,
:class:`Revocation`, :class:`Expiry`, :class:`Escalation`, :class:`Review`)
are frozen values with one canonical encoding each.  They travel as node
messages of kinds ``sub.*`` inside signed, end-to-end encrypted envelopes,
which is what keeps a hub from forging or altering a grant.  The envelope's
authenticated sender is passed to every ``on_*`` method and must be the
party the message claims to come from.  Provider statements about one
request carry an increasing ``version``, so a late-arriving older statement
never overrides a newer one (store-and-forward may reorder).

Nothing here reads a clock or draws randomness on its own: ``now_ms`` and
``random`` are arguments, and :meth:`SubscriptionBook.next_timer` says when
``expire_due`` next has work.

Where things live
-----------------
This module is the facade: it holds no code, and every public name of the
subscription layer is importable from here.

* ``subscription_states``: catalog terms, states, actions, the transition
  table, the sharing authority of a provider;
* ``subscription_codecs``: field codecs and the shared message codec;
* ``subscription_messages``: the six life-cycle messages, :class:`Grant`,
  :func:`decode_message`, :class:`Outgoing`;
* ``subscription_book``: the provider's :class:`SubscriptionBook`;
* ``subscription_views``: the requester's :class:`SubscriberView` and the
  authority's :class:`AuthorityDesk`;
* ``record_messages``: ``sub.records``, ``sub.resend``, ``sub.gap``;
* ``record_streams``: record numbering and the resend window
  (:class:`RecordStream`), gap tracking (:class:`GapTracker`),
  :func:`group_deliveries` (one body for subscribers who may share it);
* ``correction_messages``: ``sub.correction``, ``sub.correction-answer``;
* ``corrections``: the provider's :class:`CorrectionDesk` and the
  subscriber's :class:`CorrectionTracker` (校核);
* ``subscription_persistence``: the shared pieces of every machine's
  ``encode()`` and ``restore()``: what survives a restart, and what not.
"""

from __future__ import annotations

from exchnode.sharing._book import SubscriptionBook
from exchnode.sharing._codecs import CONTENT_TYPE
from exchnode.sharing._correction_messages import Correction, CorrectionAnswer, CorrectionOutcome
from exchnode.sharing._corrections import CorrectionDesk, CorrectionState, CorrectionTracker
from exchnode.sharing._masking import Hash, Keep, MaskRule, MaskSet, Record, Redact, Value, YearOnly
from exchnode.sharing._messages import (
    KINDS,
    LIFECYCLE_KINDS,
    Decision,
    Escalation,
    Expiry,
    Grant,
    Outgoing,
    Review,
    Revocation,
    SubMessage,
    SubscriptionRequest,
    decode_message,
)
from exchnode.sharing._record_messages import RecordBatch, RecordGap, Resend, terms_fingerprint
from exchnode.sharing._record_streams import (
    AtRestCipher,
    GapTracker,
    RecordDelivery,
    RecordGroup,
    RecordStream,
    Seen,
    group_deliveries,
)
from exchnode.sharing._states import (
    TRANSITIONS,
    Action,
    RequestState,
    ResourceTerms,
    ReviewOutcome,
    ShareType,
    sharing_authority,
)
from exchnode.sharing._views import AuthorityDesk, SubscriberView
from exchnode.sharing._workdays import (
    CHINA_STANDARD_TIME,
    DEFAULT_ANSWER_DAYS,
    MAX_ANSWER_DAYS,
    CalendarCoverageError,
    WorkCalendar,
    check_answer_days,
    local_date,
)

__all__ = [
    "CHINA_STANDARD_TIME",
    "CONTENT_TYPE",
    "DEFAULT_ANSWER_DAYS",
    "KINDS",
    "LIFECYCLE_KINDS",
    "MAX_ANSWER_DAYS",
    "TRANSITIONS",
    "Action",
    "AtRestCipher",
    "AuthorityDesk",
    "CalendarCoverageError",
    "Correction",
    "CorrectionAnswer",
    "CorrectionDesk",
    "CorrectionOutcome",
    "CorrectionState",
    "CorrectionTracker",
    "Decision",
    "Escalation",
    "Expiry",
    "GapTracker",
    "Grant",
    "Hash",
    "Keep",
    "MaskRule",
    "MaskSet",
    "Outgoing",
    "Record",
    "RecordBatch",
    "RecordDelivery",
    "RecordGap",
    "RecordGroup",
    "RecordStream",
    "Redact",
    "RequestState",
    "Resend",
    "ResourceTerms",
    "Review",
    "ReviewOutcome",
    "Revocation",
    "Seen",
    "ShareType",
    "SubMessage",
    "SubscriberView",
    "SubscriptionBook",
    "SubscriptionRequest",
    "Value",
    "WorkCalendar",
    "YearOnly",
    "annotations",
    "check_answer_days",
    "decode_message",
    "group_deliveries",
    "local_date",
    "sharing_authority",
    "terms_fingerprint",
]
