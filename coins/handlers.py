"""Kafka handlers of the `coins` consumer: rewards granted by what users do.

Each runs inside the consumed record's transaction (`relay/consumer.py`): the inbox makes a
redelivered record a no-op, and the rewards' unique (rule, user, period) constraint makes even a
replay past the inbox (a reprocessed topic, a second consumer) grant nothing twice.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth import get_user_model

from relay.registry import ConsumedEvent, PermanentError, handler

from . import services
from .errors import RewardUnavailable


def _grant(event: ConsumedEvent, user_field: str, rule_code: str, **period) -> None:
    user_id = event.data.get(user_field)
    active = (get_user_model().objects.filter(pk=user_id).values_list("is_active", flat=True)
              .first())
    if active is None:
        raise PermanentError(f"{event.type} {event.id}: no user {user_id!r}")
    if not active:
        return  # deactivated accounts earn nothing
    try:
        services.reward_grant(user_id=user_id, rule_code=rule_code, **period)
    except RewardUnavailable:
        return  # an operator switched the rule off


@handler("coins", "user.registered")
def grant_signup_bonus(event: ConsumedEvent) -> None:
    _grant(event, "user_id", "signup_bonus")


@handler("coins", "user.logged_in")
def grant_daily_login_bonus(event: ConsumedEvent) -> None:
    # The day of the login, not of the processing: a consumer catching up after midnight
    # still grants yesterday's bonus for yesterday.
    when = event.time or dt.datetime.now(dt.UTC)
    _grant(event, "user_id", "daily_login", on=when.astimezone(dt.UTC).date())


@handler("coins", "post.created")
def grant_first_post_bonus(event: ConsumedEvent) -> None:
    _grant(event, "author_id", "first_post")


@handler("coins", "post.liked")
def grant_popular_post_reward(event: ConsumedEvent) -> None:
    if event.data.get("like_count", 0) >= settings.COINS_REWARD_POPULAR_POST_LIKES:
        _grant(event, "author_id", "post_engagement", object_ref=f"post:{event.data['post_id']}")
