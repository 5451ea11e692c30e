"""Reads of the notifications app: preferences and quiet hours, the inbox, deliveries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings as django_settings
from django.db.models import QuerySet

from . import kinds
from .kinds import Channel
from .models import BulkNotification, Device, Notification, NotificationSettings, Preference


@dataclass
class Preferences:
    """One user's effective choices: overrides over each kind's defaults, quiet hours."""

    overrides: dict[tuple[str, str], bool] = field(default_factory=dict)
    quiet_start: time | None = None
    quiet_end: time | None = None
    timezone: str = "UTC"
    language: str = ""

    def enabled(self, kind: kinds.Kind, channel: str) -> bool:
        if channel not in kind.defaults:
            return False
        return self.overrides.get((kind.name, channel), kind.defaults[channel])

    def channels(self, kind: kinds.Kind) -> list[str]:
        return [c for c in kind.channels if self.enabled(kind, c)]

    @property
    def language_code(self) -> str:
        return self.language or django_settings.LANGUAGE_CODE

    def quiet_until(self, now: datetime) -> datetime | None:
        """The end of the quiet hours `now` falls in (aware), or None outside them."""
        return quiet_hours_end(self.quiet_start, self.quiet_end, self.timezone, now)


def quiet_hours_end(start: time | None, end: time | None, tz_name: str,
                    now: datetime) -> datetime | None:
    if start is None or end is None or start == end:
        return None
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if start < end:  # same day, e.g. 13:00-15:00
        inside = start <= t < end
        end_day = local.date()
    else:  # across midnight, e.g. 22:00-07:00
        inside = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    # Local wall time to an instant; fold=0 picks the first of an ambiguous hour.
    return datetime.combine(end_day, end, tzinfo=tz)


def preferences_get(*, user_id: int) -> Preferences:
    prefs = Preferences(overrides={
        (kind, channel): enabled
        for kind, channel, enabled in Preference.objects.filter(user_id=user_id)
        .values_list("kind", "channel", "enabled")
    })
    row = NotificationSettings.objects.filter(user_id=user_id).first()
    if row is not None:
        prefs.quiet_start, prefs.quiet_end = row.quiet_hours_start, row.quiet_hours_end
        prefs.timezone, prefs.language = row.timezone, row.language
    return prefs


@dataclass(slots=True)
class Recipient:
    """The fields of a user that routing reads (a plain object: a batch reads thousands)."""

    pk: int
    username: str
    display_name: str
    email: str
    phone: str | None
    phone_verified: bool
    is_active: bool
    deleted: bool


@dataclass
class RoutingFacts:
    """What routing one request needs (`routing_facts_many` reads a batch's at once)."""

    recipient: Recipient
    prefs: Preferences
    actor_name: str | None
    devices: list[tuple[int, str, str]]  # (id, token, platform), oldest first


# One query and one JSON document for a whole batch instead of five ORM queries per request
# (recipient, settings, overrides, devices, actor): routing is the hot path of
# `consume notification-events` (a bulk send is 100,000 of them). One document, because
# decoding a JSON value per row and column costs more than the query.
_ROUTING_SQL = """
    SELECT
      (SELECT coalesce(json_agg(json_build_array(
                u.id, u.username, u.display_name, u.email, u.phone,
                u.phone_verified_at IS NOT NULL, u.is_active, u.deleted_at IS NOT NULL,
                s.quiet_hours_start, s.quiet_hours_end, s.timezone, s.language,
                (SELECT coalesce(json_agg(json_build_array(p.kind, p.channel, p.enabled)),
                                 '[]')
                   FROM {prefs} p WHERE p.user_id = u.id),
                (SELECT coalesce(json_agg(json_build_array(d.id, d.token, d.platform)
                                          ORDER BY d.id), '[]')
                   FROM {devices} d WHERE d.user_id = u.id))), '[]')
         FROM {users} u
         LEFT JOIN {settings} s ON s.user_id = u.id
        WHERE u.id IN (SELECT value::bigint FROM json_array_elements_text(%s::json))),
      (SELECT coalesce(json_object_agg(a.id, coalesce(nullif(a.display_name, ''),
                                                      a.username)), '{{}}')
         FROM {users} a
        WHERE a.id IN (SELECT value::bigint FROM json_array_elements_text(%s::json)))
"""


def routing_facts_many(*, recipient_ids: list[int], actor_ids: list[int]
                       ) -> tuple[dict[int, RoutingFacts], dict[int, str]]:
    """What routing a batch of requests needs, in one query: the facts of each recipient
    that exists (`actor_name` left None) and the display name of each actor that exists."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    user_model = get_user_model()
    sql = _ROUTING_SQL.format(users=user_model._meta.db_table,
                              settings=NotificationSettings._meta.db_table,
                              prefs=Preference._meta.db_table,
                              devices=Device._meta.db_table)
    actors = sorted({a for a in actor_ids if a is not None})
    with connection.cursor() as cur:
        cur.execute(sql, [json.dumps(sorted(set(recipient_ids))), json.dumps(actors)])
        recipients, actor_names = cur.fetchone()
    if isinstance(recipients, str):
        recipients = json.loads(recipients)
    if isinstance(actor_names, str):
        actor_names = json.loads(actor_names)
    facts: dict[int, RoutingFacts] = {}
    for (uid, username, display_name, email, phone, phone_verified, is_active, deleted,
         q_start, q_end, tz, language, overrides, devices) in recipients:
        recipient = Recipient(uid, username, display_name, email, phone, phone_verified,
                              is_active, deleted)
        prefs = Preferences(overrides={(k, c): e for k, c, e in overrides},
                            quiet_start=time.fromisoformat(q_start) if q_start else None,
                            quiet_end=time.fromisoformat(q_end) if q_end else None,
                            timezone=tz or "UTC", language=language or "")
        facts[uid] = RoutingFacts(recipient, prefs, None, [tuple(d) for d in devices])
    return facts, {int(k): v for k, v in actor_names.items()}


def preferences_table(*, user) -> list[dict]:
    """Every kind with each of its channels: the effective value and the default."""
    prefs = preferences_get(user_id=user.pk)
    return [
        {
            "kind": kind.name,
            "label": str(kind.label),
            "category": kind.category,
            "channels": {c: prefs.enabled(kind, c) for c in kind.channels},
            "defaults": {c: kind.defaults[c] for c in kind.channels},
        }
        for kind in kinds.KINDS.values()
    ]


def inbox(*, user, unread: bool | None = None) -> QuerySet[Notification]:
    qs = Notification.objects.inbox(user).select_related("actor")
    if unread is True:
        qs = qs.filter(read_at__isnull=True)
    elif unread is False:
        qs = qs.filter(read_at__isnull=False)
    return qs


def unread_count(*, user) -> int:
    return Notification.objects.inbox(user).filter(read_at__isnull=True).count()


def devices_of(*, user) -> QuerySet[Device]:
    return Device.objects.filter(user=user).order_by("id")


def bulk_list() -> QuerySet[BulkNotification]:
    return BulkNotification.objects.order_by("-id")


CHANNEL_NAMES = dict(Channel.CHOICES)
