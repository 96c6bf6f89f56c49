"""Restored subscription machines behave as the originals (issue 4, draft §19.9).

The life-cycle state machine of ``test_subscription_lifecycle`` runs again
with one more rule, ``restart``: the provider's book, the requester's view
and the authority's desk are encoded, restored, and from then on every call
goes to both the original and the restored copy (a *twin*), which must
return equal results or raise the same error, emit the same audit events,
and encode to the same bytes after every step.  Encoding twice gives the
same bytes (determinism), and restoring emits no event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis.stateful import invariant, rule

from exchnode.core._events import ListSink
from exchnode.sharing import AuthorityDesk, SubscriberView, SubscriptionBook
from tests.property.test_subscription_lifecycle import (
    ANSWER_DAYS,
    CALENDAR,
    RESOURCES,
    SubscriptionLifecycle,
    runs,
)

SECRET = b"k" * 32


class Twin:
    """Forwards every call to ``primary`` and ``shadow`` and checks they agree."""

    def __init__(self, primary: Any, shadow: Any) -> None:
        self.primary = primary
        self.shadow = shadow

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.primary, name)
        if not callable(attribute):
            assert getattr(self.shadow, name) == attribute
            return attribute

        def both(*args: Any, **kwargs: Any) -> Any:
            try:
                expected = attribute(*args, **kwargs)
            except Exception as exc:
                try:
                    getattr(self.shadow, name)(*args, **kwargs)
                except Exception as again:
                    same = (type(again), str(again)) == (type(exc), str(exc))
                    if not same:
                        raise AssertionError(f"{name}: {again!r} instead of {exc!r}") from again
                else:
                    raise AssertionError(f"{name}: only the original raised {exc!r}") from exc
                raise
            assert getattr(self.shadow, name)(*args, **kwargs) == expected, name
            return expected

        return both


def primary(machine: Any) -> Any:
    return machine.primary if isinstance(machine, Twin) else machine


class RestartingLifecycle(SubscriptionLifecycle):
    def __init__(self) -> None:
        super().__init__()
        self.drawn = b""
        draw: Callable[[int], bytes] = self.view._random  # type: ignore[attr-defined]

        def recording(n: int) -> bytes:
            self.drawn = draw(n)
            return self.drawn

        self.view._random = recording  # type: ignore[attr-defined]
        self.shadow_sinks: list[tuple[ListSink, ListSink, int]] = []

    @rule()
    def restart(self) -> None:
        book, view, desk = primary(self.book), primary(self.view), primary(self.desk)
        encoded = [book.encode(), view.encode(), desk.encode()]
        assert encoded == [book.encode(), view.encode(), desk.encode()]  # deterministic
        sinks = [ListSink(), ListSink(), ListSink()]
        shadows = [
            SubscriptionBook.restore(
                encoded[0],
                RESOURCES.get,
                sink=sinks[0],
                masking_secret=SECRET,
                calendar=CALENDAR,
                answer_days=ANSWER_DAYS,
            ),
            SubscriberView.restore(encoded[1], sink=sinks[1], random=lambda n: self.drawn),
            AuthorityDesk.restore(encoded[2], sink=sinks[2]),
        ]
        assert [shadow.encode() for shadow in shadows] == encoded
        assert all(not sink.events for sink in sinks)  # restoring emits nothing
        self.book, self.view, self.desk = (
            Twin(original, shadow)
            for original, shadow in zip((book, view, desk), shadows, strict=True)
        )
        originals = (book._sink, view._sink, desk._sink)
        self.shadow_sinks = [
            (original, shadow, len(original.events))
            for original, shadow in zip(originals, sinks, strict=True)
        ]

    @invariant()
    def twins_agree(self) -> None:
        for machine in (self.book, self.view, self.desk):
            if isinstance(machine, Twin):
                assert machine.primary.encode() == machine.shadow.encode()
        for original, shadow, since in self.shadow_sinks:
            assert original.events[since:] == shadow.events


RestartingLifecycle.TestCase.settings = runs(150)
test_restored_machines_behave_as_the_originals = RestartingLifecycle.TestCase
