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
- `when`: a predicate on the data (one event type can feed several kinds).

The request's event id is derived from the source event's id and the kind, so even a replay
that slipped past the consumer's inbox would request the same notification, not a second one.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay import registry
from relay.registry import ConsumedEvent, PermanentError
from social.selectors import blocked_between

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


TRIGGERS: dict[str, list[Trigger]] = defaultdict(list)


def trigger(event_type: str, *, kind: str, recipient: str, actor: str | None = None,
            copy: tuple[str, ...] = (), when: Callable[[dict[str, Any]], bool] | None = None
            ) -> Trigger:
    if kinds.get(kind) is None:
        raise ValueError(f"trigger {event_type}: unknown notification kind {kind!r} "
                         "(declare it in notifications/kinds.py)")
    t = Trigger(event_type, kind, recipient, actor, tuple(copy), when)
    TRIGGERS[event_type].append(t)
    registry.register(CONSUMER, event_type, on_domain_event)
    return t


def request_id_for(source_event_id: uuid.UUID, kind: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{source_event_id}:{kind}")


def on_domain_event(event: ConsumedEvent) -> None:
    """Handler of the `notifications` consumer: every trigger of the event's type."""
    from . import services

    for t in TRIGGERS.get(event.type, ()):
        data = event.data
        if t.when is not None and not t.when(data):
            continue
        recipient_id = data.get(t.recipient)
        if not isinstance(recipient_id, int):
            raise PermanentError(f"{event.type} {event.id}: no {t.recipient} to notify")
        actor_id = data.get(t.actor) if t.actor else None
        if actor_id is not None and actor_id == recipient_id:
            continue  # your own like, tip or comment
        if actor_id is not None and blocked_between(actor_id, recipient_id):
            continue  # a block placed after the action, before its notification
        services.notification_request(
            recipient_id=recipient_id,
            kind=t.kind,
            actor_id=actor_id,
            context={f: data[f] for f in t.copy if f in data},
            source_event_id=event.id,
            event_id=request_id_for(event.id, t.kind),
        )


# --- the triggers ---------------------------------------------------------------------------

trigger("user.registered", kind="welcome", recipient="user_id")
trigger("post.liked", kind="post_liked", recipient="author_id", actor="actor_id",
        copy=("post_id", "like_count"))
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
