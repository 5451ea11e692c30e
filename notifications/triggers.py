"""Triggers: which domain event tells whom what. The one place that maps event types to
notification kinds (the kinds' text is in their templates, see `kinds.py`).

Each `trigger(...)` line is a complete registration: the `notifications` consumer then reads
the event's topic and, for every matching event, publishes one `notification.requested` in the
consumed record's transaction. Adding a trigger is one more line here (plus a kind and its two
templates when the kind is new):

    trigger("post.viewed", kind="post_viewed", recipient="author_id", actor="actor_id")

- `recipient`: the field of the event's data naming the user to tell;
- `actor`: the field naming who did it (someone acting on their own post is not told);
- `copy`: fields of the data passed to the templates (`context`);
- `when`: a predicate on the data (one event type can feed several kinds);
- `once_per`: fields of the data that make a notification once-only (see below).

The request's event id is derived from the source event's id and the kind, so even a replay
that slipped past the consumer's inbox would request the same notification, not a second one.
With `once_per`, it is derived from those fields instead: every event with the same values asks
for the same notification, which is made once. A like uses it, `("post_id", "actor_id")`: a
person who likes, unlikes and likes a post again tells its author once ("Bob liked your post"
stays one line, with the first like's count), however often they change their mind, for as
long as that notification exists (the repeat is refused by the outbox's and the inbox's unique
event id and, past their retention, by the notification's unique request id).

The handler is a batch handler: a polled batch's triggers are decided together, blocks between
the users involved read in one query, and the requests written with one `publish_bulk`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay import registry
from relay.registry import ConsumedEvent, PermanentError
from social.selectors import blocked_pairs

from . import kinds

CONSUMER = "notifications"
_NAMESPACE = uuid.UUID("0f3c6c1e-6a53-4c55-9f55-6d1f3e1b8a01")


@dataclass(frozen=True)
class Trigger:
    event_type: str
    kind: str
    recipient: str
    actor: str | None = None
    copy: tuple[str, ...] = ()
    when: Callable[[dict[str, Any]], bool] | None = None
    once_per: tuple[str, ...] = ()

    def request_id(self, event: ConsumedEvent) -> uuid.UUID:
        """The id of the `notification.requested` this trigger makes for `event`."""
        if self.once_per:
            values = ":".join(str(event.data.get(f)) for f in self.once_per)
            return uuid.uuid5(_NAMESPACE, f"{self.kind}:once:{values}")
        return request_id_for(event.id, self.kind)


TRIGGERS: dict[str, list[Trigger]] = defaultdict(list)


def trigger(event_type: str, *, kind: str, recipient: str, actor: str | None = None,
            copy: tuple[str, ...] = (), when: Callable[[dict[str, Any]], bool] | None = None,
            once_per: tuple[str, ...] = ()) -> Trigger:
    if kinds.get(kind) is None:
        raise ValueError(f"trigger {event_type}: unknown notification kind {kind!r} "
                         "(declare it in notifications/kinds.py)")
    t = Trigger(event_type, kind, recipient, actor, tuple(copy), when, tuple(once_per))
    TRIGGERS[event_type].append(t)
    registry.register(CONSUMER, event_type, on_domain_events, batch=True)
    return t


def request_id_for(source_event_id: uuid.UUID, kind: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{source_event_id}:{kind}")


def on_domain_events(events: list[ConsumedEvent]) -> None:
    """Batch handler of the `notifications` consumer: every trigger of every event."""
    from . import services

    wanted: list[tuple[ConsumedEvent, Trigger, int, int | None]] = []
    for event in events:
        data = event.data
        for t in TRIGGERS.get(event.type, ()):
            if t.when is not None and not t.when(data):
                continue
            recipient_id = data.get(t.recipient)
            if not isinstance(recipient_id, int):
                raise PermanentError(f"{event.type} {event.id}: no {t.recipient} to notify")
            actor_id = data.get(t.actor) if t.actor else None
            if actor_id is not None and actor_id == recipient_id:
                continue  # your own like, tip or comment
            wanted.append((event, t, recipient_id, actor_id))
    # A block placed after the action, before its notification: nobody is told.
    blocked = blocked_pairs((actor_id, recipient_id) for _e, _t, recipient_id, actor_id in wanted)
    services.notifications_request(requests=[
        services.NotificationRequest(
            recipient_id=recipient_id, kind=t.kind, actor_id=actor_id,
            context={f: event.data[f] for f in t.copy if f in event.data},
            source_event_id=event.id, event_id=t.request_id(event),
            headers=event.trace_headers())
        for event, t, recipient_id, actor_id in wanted
        if frozenset((actor_id, recipient_id)) not in blocked])


# --- the triggers ---------------------------------------------------------------------------

trigger("user.registered", kind="welcome", recipient="user_id")
trigger("post.liked", kind="post_liked", recipient="author_id", actor="actor_id",
        copy=("post_id", "like_count"), once_per=("post_id", "actor_id"))
trigger("post.commented", kind="post_commented", recipient="author_id", actor="actor_id",
        copy=("post_id", "comment_id", "text"))
trigger("user.followed", kind="new_follower", recipient="followee_id", actor="follower_id",
        copy=("followers_count",))
trigger("coins.transferred", kind="coins_received", recipient="recipient_id", actor="sender_id",
        copy=("transfer_id", "amount", "note"), when=lambda d: d.get("kind") == "transfer")
trigger("coins.transferred", kind="tip_received", recipient="recipient_id", actor="sender_id",
        copy=("transfer_id", "amount", "note", "post_id"), when=lambda d: d.get("kind") == "tip")
trigger("video.transcoded", kind="video_ready", recipient="owner_id", copy=("video_id",))
trigger("video.failed", kind="video_failed", recipient="owner_id", copy=("video_id", "reason"))
trigger("coins.withdrawal_completed", kind="withdrawal_completed", recipient="user_id",
        copy=("withdrawal_id", "amount", "fee", "payout_reference"))
trigger("coins.withdrawal_rejected", kind="withdrawal_rejected", recipient="user_id",
        copy=("withdrawal_id", "amount", "reason"))
