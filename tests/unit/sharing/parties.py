"""The three parties of a subscription, and the messages carried between them as nodes would."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, ClassVar

from exchnode.core._events import ListSink
from exchnode.sharing import (
    AuthorityDesk,
    Decision,
    Escalation,
    Expiry,
    Outgoing,
    ResourceTerms,
    Review,
    Revocation,
    SubscriberView,
    SubscriptionBook,
    SubscriptionRequest,
    WorkCalendar,
    decode_message,
)


class Carrier:
    """A provider's ``book``, a requester's ``view`` and their sharing authority's ``desk``;
    every message one of them sends is carried to each recipient through its wire form, and
    what the recipient sends in answer is carried in turn.

    Subclasses name the parties (``provider``, ``requester``, ``authority``) and set the
    three machines; ``carried`` sees each message as it goes.
    """

    provider: ClassVar[str]
    requester: ClassVar[str]
    authority: ClassVar[str]
    book: Any  # a SubscriptionBook, or a stand-in for one
    view: Any  # a SubscriberView
    desk: Any  # an AuthorityDesk

    def seat(
        self,
        terms: Callable[[str], ResourceTerms | None],
        calendar: WorkCalendar,
        *,
        answer_days: int,
        masking_secret: bytes,
        sinks: tuple[ListSink, ListSink, ListSink],
    ) -> None:
        """The three machines, new, their events into ``sinks`` (provider's, requester's,
        authority's); the requester's request ids are 1, 2, 3... ."""
        counter = itertools.count(1)
        self.book = SubscriptionBook(
            self.provider,
            terms,
            sink=sinks[0],
            masking_secret=masking_secret,
            calendar=calendar,
            answer_days=answer_days,
        )
        self.view = SubscriberView(
            self.requester, sink=sinks[1], random=lambda n: next(counter).to_bytes(n, "big")
        )
        self.desk = AuthorityDesk(self.authority, sink=sinks[2])

    def carried(self, item: Outgoing) -> None:
        """Each message, before it is delivered: nothing to do unless a subclass says."""

    def carry(self, outgoing: list[Outgoing], sender: str, now_ms: int) -> None:
        for item in outgoing:
            self.carried(item)
            message = decode_message(item.kind, item.payload())
            assert message == item.message
            for recipient in item.recipients:
                self._deliver(recipient, message, sender, now_ms)

    def _deliver(self, recipient: str, message: Any, sender: str, now_ms: int) -> None:
        if recipient == self.provider:
            handler = {
                SubscriptionRequest: self.book.on_request,
                Escalation: self.book.on_escalation,
                Review: self.book.on_review,
            }[type(message)]
            self.carry(handler(message, sender=sender, now_ms=now_ms), self.provider, now_ms)
        elif recipient == self.requester:
            handler = {
                Decision: self.view.on_decision,
                Expiry: self.view.on_expiry,
                Revocation: self.view.on_revocation,
                Review: self.view.on_review,
            }[type(message)]
            handler(message, sender=sender, now_ms=now_ms)
        else:
            assert recipient == self.authority
            answer = self.desk.on_escalation(message, sender=sender, now_ms=now_ms)
            self.carry(answer, self.authority, now_ms)
