"""What each event contributes to the aggregates, and the metrics' catalogue.

`effects_of()` is pure: it turns one event into the increments the consumer applies (see
`services.event_aggregate`). Keeping it free of the database lets the tests and the reader see
every rule in one table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from outbox import catalogue

# Load the whole catalogue before importing one of its modules: `catalogue._load()` imports
# every module only while nothing is registered, so importing ours first would hide the rest.
catalogue.all_types()

from outbox.events.analytics_events import CLIENT_TYPES, RESERVED, full_type  # noqa: E402

__all__ = ["CLIENT_TYPES", "RESERVED", "full_type"]


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    # sum: additive hourly counters summed per day; unique: distinct users (exact)
    kind: str = "sum"
    periods: tuple[str, ...] = ("hour", "day")
    unit: str = "count"
    dimension: str = ""  # what `dimension` means when the metric is split (currency)


_SUMS = [
    Metric("signups", "New accounts (user.registered)."),
    Metric("logins", "Password logins (user.logged_in)."),
    Metric("posts", "Posts created (post.created)."),
    Metric("posts_deleted", "Posts deleted (post.deleted)."),
    Metric("likes", "Likes (post.liked)."),
    Metric("unlikes", "Likes withdrawn (post.unliked)."),
    Metric("comments", "Comments (post.commented)."),
    Metric("views", "Counted post views (post.viewed)."),
    Metric("tips", "Tips to posts (coins.transferred, kind tip)."),
    Metric("tip_coins", "Coins tipped.", unit="coins"),
    Metric("transfers", "Coin transfers between users (kind transfer)."),
    Metric("transfer_coins", "Coins transferred.", unit="coins"),
    Metric("purchases", "Coin purchases (coins.purchased)."),
    Metric("coins_purchased", "Coins bought.", unit="coins"),
    Metric("revenue_minor", "Money paid for coins, in the currency's minor unit (cents).",
           unit="minor units", dimension="currency"),
    Metric("rewards", "Reward grants (coins.rewarded)."),
    Metric("reward_coins", "Coins granted as rewards.", unit="coins"),
    Metric("withdrawals_requested", "Withdrawals requested."),
    Metric("withdrawal_coins_requested", "Coins asked to withdraw.", unit="coins"),
    Metric("withdrawals_completed", "Withdrawals paid out."),
    Metric("withdrawal_coins_completed", "Coins paid out.", unit="coins"),
    Metric("withdrawals_rejected", "Withdrawals rejected."),
    Metric("videos_uploaded", "Videos uploaded (video.uploaded)."),
    Metric("videos_transcoded", "Videos transcoded (video.transcoded)."),
    Metric("videos_failed", "Videos that failed transcoding (video.failed)."),
    Metric("sessions", "Client sessions started (analytics.session_start)."),
    Metric("session_ends", "Client sessions ended (analytics.session_end)."),
    Metric("session_time_ms", "Length of the sessions that ended.", unit="ms"),
    Metric("screen_views", "Screens shown (analytics.screen_view)."),
    Metric("impressions", "Posts shown on a client screen (analytics.post_impression)."),
    Metric("watches", "Video viewings reported (analytics.watch_time)."),
    Metric("watch_time_ms", "Video time watched.", unit="ms"),
    Metric("app_starts", "App starts reported (analytics.app_start)."),
    Metric("api_calls", "API calls reported by clients (analytics.api_latency)."),
    Metric("late_beyond_horizon", "Events older than the lateness horizon when consumed: "
           "counted in their hour's sums, but not in unique counts (bucketed by processing "
           "hour)."),
]
_UNIQUES = [
    Metric("active_users", "Distinct signed-in users active in the period (exact; for a day "
           "this is DAU).", kind="unique"),
    Metric("dau", "Daily active users: distinct users active that day (exact).",
           kind="unique", periods=("day",)),
    Metric("wau", "Weekly active users: distinct users active in the 7 days ending that day "
           "(exact).", kind="unique", periods=("day",)),
    Metric("mau", "Monthly active users: distinct users active in the 30 days ending that "
           "day (exact).", kind="unique", periods=("day",)),
]
METRICS: dict[str, Metric] = {m.name: m for m in _SUMS + _UNIQUES}
SUM_METRICS = tuple(m.name for m in _SUMS)
PERF_METRICS = ("app_start", "api_latency")


@dataclass
class Effects:
    """The increments one event makes. `time` is its event time (the bucket)."""

    time: datetime
    counters: dict[tuple[str, str], int] = field(default_factory=dict)  # (metric, dim) -> +n
    active_user: int | None = None
    post_id: int | None = None
    post: dict[str, int] = field(default_factory=dict)  # PostStats column -> +n
    viewer_key: str | None = None
    perf: tuple[str, str, str, int] | None = None  # (metric, platform, version, value ms)

    def add(self, metric: str, n: int = 1, dimension: str = "") -> None:
        key = (metric, dimension)
        self.counters[key] = self.counters.get(key, 0) + n


def _time(value: Any, fallback: datetime) -> datetime:
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well-formed but impossible (February 30): never fail the consumer
        parsed = None
    return parsed if parsed is not None and parsed.tzinfo is not None else fallback


# Event types of other apps this consumer aggregates (each a catalogue type).
DOMAIN_TYPES = (
    "user.registered", "user.logged_in",
    "post.created", "post.updated", "post.deleted", "post.liked", "post.unliked",
    "post.commented", "post.viewed",
    "coins.purchased", "coins.transferred", "coins.rewarded", "coins.withdrawal_requested",
    "coins.withdrawal_completed", "coins.withdrawal_rejected",
    "video.uploaded", "video.transcoded", "video.failed",
)
CLIENT_EVENT_TYPES = tuple(full_type(short) for short in CLIENT_TYPES)

# Simple one-counter events: type -> (metric, field of data holding the event time or None).
_COUNT_ONLY = {
    "post.created": "posts", "post.deleted": "posts_deleted",
    "video.uploaded": "videos_uploaded", "video.transcoded": "videos_transcoded",
    "video.failed": "videos_failed",
    "app_start": "app_starts", "api_latency": "api_calls", "screen_view": "screen_views",
    "session_start": "sessions",
}
_POST_COUNTS = {"post.liked": "likes", "post.unliked": "unlikes", "post.commented": "comments",
                "post.viewed": "views"}


def effects_of(event_type: str, data: dict[str, Any], *, event_time: datetime) -> Effects:
    """The aggregate increments of one event. `event_time` (the CloudEvent's time, when the
    event was written) is the bucket of events whose data carries no time of their own
    (coins and video events)."""
    if event_type.startswith("analytics."):
        return _client_effects(event_type.removeprefix("analytics."), data, event_time)
    family = event_type.split(".", 1)[0]
    if family == "user":
        field_name = {"user.registered": "registered_at", "user.logged_in": "logged_in_at"}
        fx = Effects(_time(data.get(field_name.get(event_type, "")), event_time),
                     active_user=data["user_id"])
        if event_type == "user.registered":
            fx.add("signups")
        elif event_type == "user.logged_in":
            fx.add("logins")
        return fx
    if family == "post":
        fx = Effects(_time(data.get("occurred_at"), event_time), active_user=data.get("actor_id"))
        if event_type in _COUNT_ONLY:
            fx.add(_COUNT_ONLY[event_type])
        if event_type in _POST_COUNTS:
            column = _POST_COUNTS[event_type]
            fx.add(column)
            fx.post_id = data["post_id"]
            fx.post[column] = 1
            if event_type == "post.viewed" and data.get("actor_id"):
                fx.viewer_key = f"u:{data['actor_id']}"
        return fx
    if family == "video":
        fx = Effects(event_time, active_user=data["owner_id"] if event_type == "video.uploaded"
                     else None)
        fx.add(_COUNT_ONLY[event_type])
        return fx
    return _coins_effects(event_type, data, event_time)


def _coins_effects(event_type: str, data: dict[str, Any], event_time: datetime) -> Effects:
    fx = Effects(event_time)
    if event_type == "coins.purchased":
        fx.active_user = data["user_id"]
        fx.add("purchases")
        fx.add("coins_purchased", data["coins"])
        fx.add("revenue_minor", data["price_minor"], dimension=data["currency"])
    elif event_type == "coins.transferred":
        fx.active_user = data["sender_id"]
        if data["kind"] == "tip" and data.get("post_id"):
            fx.add("tips")
            fx.add("tip_coins", data["amount"])
            fx.post_id = data["post_id"]
            fx.post = {"tips": 1, "tip_coins": data["amount"]}
        else:
            fx.add("transfers")
            fx.add("transfer_coins", data["amount"])
    elif event_type == "coins.rewarded":
        fx.add("rewards")
        fx.add("reward_coins", data["amount"])
    elif event_type == "coins.withdrawal_requested":
        fx.active_user = data["user_id"]
        fx.add("withdrawals_requested")
        fx.add("withdrawal_coins_requested", data["amount"])
    elif event_type == "coins.withdrawal_completed":
        fx.add("withdrawals_completed")
        fx.add("withdrawal_coins_completed", data["amount"])
    elif event_type == "coins.withdrawal_rejected":
        fx.add("withdrawals_rejected")
    return fx


def _client_effects(short: str, data: dict[str, Any], event_time: datetime) -> Effects:
    fx = Effects(_time(data.get("occurred_at"), event_time), active_user=data.get("user_id"))
    if short in _COUNT_ONLY:
        fx.add(_COUNT_ONLY[short])
    if short in PERF_METRICS:
        fx.perf = (short, data["platform"], data["app_version"], int(data["duration_ms"]))
    elif short == "session_end":
        fx.add("session_ends")
        fx.add("session_time_ms", data["duration_ms"])
    elif short in ("post_impression", "watch_time"):
        fx.post_id = data["post_id"]
        fx.viewer_key = (f"u:{data['user_id']}" if data.get("user_id")
                         else f"d:{data['device_id']}")
        if short == "post_impression":
            fx.add("impressions")
            fx.post = {"impressions": 1}
        else:
            fx.add("watches")
            fx.add("watch_time_ms", data["watched_ms"])
            fx.post = {"watches": 1, "watch_time_ms": data["watched_ms"]}
    return fx
