"""Rewards: once per rule, user and period; the claim API; the Kafka handlers that grant them."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from coins import handlers
from coins.errors import RewardUnavailable
from coins.models import RewardGrant, RewardRule
from coins.services import reward_grant, reward_rule_get
from relay.registry import ConsumedEvent, PermanentError, handlers_for

from .helpers import assert_ledger_consistent, balance, events, system_balance

pytestmark = pytest.mark.django_db
DAY = dt.date(2025, 3, 1)


def _event(type_, data, *, time=None):
    return ConsumedEvent(id=uuid.uuid4(), type=type_, data=data, topic="user-events",
                         time=time)


def test_a_once_rule_grants_once(alice):
    grant, created = reward_grant(user_id=alice.pk, rule_code="signup_bonus")
    again, created_again = reward_grant(user_id=alice.pk, rule_code="signup_bonus")
    assert (created, created_again) == (True, False)
    assert again.pk == grant.pk
    assert balance(alice) == 100
    assert system_balance("rewards") == -100
    [event] = events("coins.rewarded")
    assert event.payload == {"grant_id": grant.pk, "user_id": alice.pk, "rule": "signup_bonus",
                             "period_key": "once", "amount": 100,
                             "transaction_id": grant.transaction_id}
    assert_ledger_consistent()


def test_a_daily_rule_grants_once_per_day(alice):
    reward_grant(user_id=alice.pk, rule_code="daily_login", on=DAY)
    reward_grant(user_id=alice.pk, rule_code="daily_login", on=DAY)
    reward_grant(user_id=alice.pk, rule_code="daily_login", on=DAY + dt.timedelta(days=1))
    assert sorted(RewardGrant.objects.values_list("period_key", flat=True)) == [
        "2025-03-01", "2025-03-02"]
    assert balance(alice) == 20


def test_a_per_object_rule_grants_once_per_object(alice):
    for ref in ("post:1", "post:1", "post:2"):
        reward_grant(user_id=alice.pk, rule_code="post_engagement", object_ref=ref)
    assert balance(alice) == 10
    with pytest.raises(RewardUnavailable, match="per object"):
        reward_grant(user_id=alice.pk, rule_code="post_engagement")


def test_amounts_and_switches_come_from_the_rule_rows(alice, bob):
    reward_grant(user_id=alice.pk, rule_code="signup_bonus")
    RewardRule.objects.filter(code="signup_bonus").update(amount=7)
    reward_grant(user_id=bob.pk, rule_code="signup_bonus")
    assert balance(bob) == 7
    reward_rule_get(code="daily_login")  # rules exist from their first use
    assert RewardRule.objects.filter(code="daily_login").update(active=False) == 1
    with pytest.raises(RewardUnavailable):
        reward_grant(user_id=bob.pk, rule_code="daily_login", on=DAY)
    with pytest.raises(RewardUnavailable):
        reward_grant(user_id=bob.pk, rule_code="no_such_rule")


def test_claim_api_grants_the_daily_bonus_once_per_day(alice, as_alice):
    first = as_alice.post("/api/coins/rewards/claim/", {"rule": "daily_login"}, format="json")
    second = as_alice.post("/api/coins/rewards/claim/", {"rule": "daily_login"}, format="json")
    assert first.status_code == 201
    assert first.json()["rule"] == "daily_login"
    assert first.json()["period_key"] == dt.datetime.now(dt.UTC).date().isoformat()
    assert second.status_code == 409
    assert second.json()["type"] == "already_granted"
    assert balance(alice) == 10


@pytest.mark.parametrize("rule", ["signup_bonus", "nope", ""])
def test_claim_api_refuses_rules_users_cannot_claim(alice, as_alice, rule):
    response = as_alice.post("/api/coins/rewards/claim/", {"rule": rule}, format="json")
    assert response.status_code == 400
    assert balance(alice) == 0


# --- handlers (the `coins` consumer) ---------------------------------------------------------


def test_handlers_are_registered_for_the_coins_consumer():
    assert [r.fn for r in handlers_for("coins", "user.registered")] == [
        handlers.grant_signup_bonus]
    assert [r.fn for r in handlers_for("coins", "user.logged_in")] == [
        handlers.grant_daily_login_bonus]
    assert [r.fn for r in handlers_for("coins", "post.created")] == [
        handlers.grant_first_post_bonus]
    assert [r.fn for r in handlers_for("coins", "post.liked")] == [
        handlers.grant_popular_post_reward]


def test_user_registered_grants_the_signup_bonus_once(alice):
    event = _event("user.registered", {"user_id": alice.pk, "username": "alice"})
    handlers.grant_signup_bonus(event)
    handlers.grant_signup_bonus(event)  # redelivered past the inbox
    assert balance(alice) == 100


def test_logins_grant_the_daily_bonus_for_the_day_of_the_login(alice):
    morning = dt.datetime(2025, 3, 1, 8, tzinfo=dt.UTC)
    for when in (morning, morning + dt.timedelta(hours=3), morning + dt.timedelta(days=1)):
        handlers.grant_daily_login_bonus(_event(
            "user.logged_in", {"user_id": alice.pk, "ip": None, "user_agent": ""}, time=when))
    assert sorted(RewardGrant.objects.values_list("period_key", flat=True)) == [
        "2025-03-01", "2025-03-02"]


def test_a_post_reaching_the_like_threshold_rewards_its_author_once(alice, settings):
    settings.COINS_REWARD_POPULAR_POST_LIKES = 3
    for likes in (1, 2, 3, 4, 3, 5):
        handlers.grant_popular_post_reward(_event("post.liked", {
            "post_id": 42, "author_id": alice.pk, "actor_id": alice.pk,
            "occurred_at": "2025-03-01T00:00:00Z", "like_count": likes}))
    assert list(RewardGrant.objects.values_list("rule__code", "period_key")) == [
        ("post_engagement", "post:42")]


def test_first_post_bonus(alice):
    for _ in range(2):
        handlers.grant_first_post_bonus(_event("post.created", {
            "post_id": 1, "author_id": alice.pk, "actor_id": alice.pk,
            "occurred_at": "2025-03-01T00:00:00Z", "text": "hi", "video_id": None}))
    assert balance(alice) == 20


def test_handlers_skip_inactive_users_and_dead_letter_unknown_ones(alice):
    alice.is_active = False
    alice.save()
    handlers.grant_signup_bonus(_event("user.registered", {"user_id": alice.pk}))
    assert balance(alice) == 0
    with pytest.raises(PermanentError, match="no user 987654"):
        handlers.grant_signup_bonus(_event("user.registered", {"user_id": 987654}))


def test_a_switched_off_rule_grants_nothing_from_handlers(alice):
    RewardRule.objects.create(code="signup_bonus", name="x", amount=1,
                              period=RewardRule.Period.ONCE, active=False)
    handlers.grant_signup_bonus(_event("user.registered", {"user_id": alice.pk}))
    assert balance(alice) == 0
