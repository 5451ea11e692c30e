"""Writes of the notifications app.

- requesting: `notification_request` / `notifications_request` (triggers, anything that wants
  to tell a user);
- the consumers' work, inside the consumed batch's transaction: `notifications_route`
  (notification-events, a whole batch with a fixed number of statements),
  `email_request_record` (email-events), `sms_request_record` (sms-events): they record the
  in-app notifications and the deliveries, exactly once;
- sending, in Celery: `delivery_send` (one attempt), `deliveries_dispatch_due` (the sweep),
  `delivery_resend` (admin);
- the user's side: devices, preferences, reading, unsubscribing;
- bulk sends: `bulk_notification_create`, `bulk_notification_start`,
  `bulk_notification_fan_out`.
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dtime
from functools import partial
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, reset_queries, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext

from outbox.models import OutboxEvent
from outbox.services import Event, publish_bulk
from showoff.sqlrows import rows_param, rows_table

from . import kinds, rendering, selectors
from .backends import InvalidRecipient, PushMessage, Rejected, SmsMessage, get_backend
from .kinds import Channel
from .models import (
    BulkNotification,
    Delivery,
    Device,
    Notification,
    NotificationSettings,
    Preference,
)

log = logging.getLogger("notifications")
User = get_user_model()

UNSET: Any = object()
_NAMESPACE = uuid.UUID("5b2f0c8e-0d7e-4f8e-9a4b-2a7c1d3e9f10")
HISTORY_KEEP = 20


class RecipientMissing(LookupError):
    """The user a request names does not exist (a permanent problem of the record)."""


class RequestInvalid(ValueError):
    """A consumed request that can never be handled (unknown kind, missing template)."""


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def recipient_name(user) -> str:
    return (user.display_name or user.username) if user is not None else ""


# --- requesting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationRequest:
    """One notification to request (`notifications_request`)."""

    recipient_id: int
    kind: str
    actor_id: int | None = None
    context: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    body: str | None = None
    channels: list[str] | None = None
    source_event_id: UUID | None = None
    bulk_id: int | None = None
    event_id: UUID | None = None
    headers: dict[str, str] = field(default_factory=dict)  # extra headers (a traceparent)


def notification_request(*, recipient_id: int, kind: str, actor_id: int | None = None,
                         context: dict[str, Any] | None = None, title: str | None = None,
                         body: str | None = None, channels: list[str] | None = None,
                         source_event_id: UUID | None = None, bulk_id: int | None = None,
                         event_id: UUID | None = None) -> UUID:
    """Publish `notification.requested` (inside the caller's transaction); returns its id."""
    [request_id] = notifications_request(requests=[NotificationRequest(
        recipient_id=recipient_id, kind=kind, actor_id=actor_id, context=context or {},
        title=title, body=body, channels=channels, source_event_id=source_event_id,
        bulk_id=bulk_id, event_id=event_id)])
    return request_id


def notifications_request(*, requests: list[NotificationRequest]) -> list[UUID]:
    """Publish one `notification.requested` per request, with one INSERT (inside the caller's
    transaction); returns their ids. A request whose `event_id` was requested before (a
    replay, or a once-only notification asked again) is not published a second time."""
    for r in requests:
        if kinds.get(r.kind) is None:
            raise ValueError(f"unknown notification kind {r.kind!r}")
    given = [r.event_id for r in requests if r.event_id is not None]
    done = set(OutboxEvent.objects.filter(event_id__in=given).values_list("event_id", flat=True)
               ) if given else set()
    requested_at = _iso(timezone.now())
    ids, new = [], []
    for r in requests:
        event_id = r.event_id or uuid.uuid4()
        ids.append(event_id)
        if event_id in done:
            continue  # requested before: the same request, not a second one
        done.add(event_id)
        new.append(Event("notification.requested", {
            "recipient_id": r.recipient_id,
            "kind": r.kind,
            "actor_id": r.actor_id,
            "context": r.context,
            "title": r.title,
            "body": r.body,
            "channels": r.channels,
            "source_event_id": str(r.source_event_id) if r.source_event_id else None,
            "bulk_id": r.bulk_id,
            "requested_at": requested_at,
        }, event_id=event_id, extra_headers=r.headers))
    if new:
        publish_bulk(new)
    return ids


# --- routing (consume notification-events) ----------------------------------------------------


# Deliveries per Celery message when many are queued at once (a routed batch, the sweep):
# one broker round trip per message is what queuing costs the consumer, and a chunk this size
# still spreads a batch over the workers.
SEND_CHUNK = 100


def _enqueue(delivery_ids: list[UUID], countdown: float | None = None) -> None:
    from .tasks import send_deliveries, send_delivery

    if len(delivery_ids) == 1:
        send_delivery.apply_async(args=[str(delivery_ids[0])], countdown=countdown,
                                  queue=settings.NOTIFICATIONS_CELERY_QUEUE)
        return
    for start in range(0, len(delivery_ids), SEND_CHUNK):
        send_deliveries.apply_async(
            args=[[str(d) for d in delivery_ids[start:start + SEND_CHUNK]]],
            countdown=countdown, queue=settings.NOTIFICATIONS_CELERY_QUEUE)


def _enqueue_after_commit(delivery_ids: list[UUID], countdown: float | None = None) -> None:
    # robust: a broker hiccup after the commit must not fail the consumed record (its effects
    # are committed); the sweep (`deliveries_dispatch_due`) sends what was never queued.
    if delivery_ids:
        transaction.on_commit(partial(_enqueue, list(delivery_ids), countdown), robust=True)


@dataclass(frozen=True)
class RouteRequest:
    """One consumed `notification.requested` (`notifications_route`)."""

    request_id: UUID
    data: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)  # for its follow-up events


@dataclass(slots=True)
class _Routed:
    """A notification to insert (a plain object: a batch builds thousands)."""

    request_id: UUID
    recipient_id: int
    kind: str
    actor_id: int | None
    title: str
    body: str
    data: dict[str, Any]
    in_app: bool
    bulk_id: int | None
    pk: int | None = None


def notifications_route(*, requests: list[RouteRequest]) -> list[int | None]:
    """Record requested notifications and route them to their channels, all in the caller's
    transaction: the in-app notifications, one push delivery per device, `email.requested`
    and `sms.requested` events. Channels are the kind's, narrowed by the request and by the
    recipient's preferences; push respects quiet hours (deferred to their end).

    A batch costs a fixed number of statements whatever its size (the consumer's hot path):
    one read of every recipient's facts and one of the actors' names, one INSERT of the
    notifications, one of the push deliveries, one `publish_bulk` of the email and SMS
    requests. Raises `RequestInvalid` or `RecipientMissing` naming the request at fault
    (the consumer then finds it by re-running smaller batches, and dead-letters it alone).

    Returns, per request, its notification's id, or None when nothing is to be sent (every
    channel off, the recipient inactive, a request already routed)."""
    for r in requests:
        if kinds.get(r.data["kind"]) is None:
            raise RequestInvalid(f"request {r.request_id}: unknown notification kind "
                                 f"{r.data['kind']!r}")
    facts, actor_names = selectors.routing_facts_many(
        recipient_ids=[r.data["recipient_id"] for r in requests],
        actor_ids=[r.data.get("actor_id") for r in requests])
    now = timezone.now()
    planned: list[tuple[RouteRequest, selectors.RoutingFacts, list[str], _Routed]] = []
    for r in requests:
        data = r.data
        kind = kinds.get(data["kind"])
        found = facts.get(data["recipient_id"])
        if found is None:
            raise RecipientMissing(f"request {r.request_id}: no user {data['recipient_id']}")
        recipient, prefs = found.recipient, found.prefs
        if not recipient.is_active or recipient.deleted:
            log.info("notification %s not sent: user %s is inactive", r.request_id,
                     recipient.pk)
            continue
        wanted = data.get("channels") or kind.channels
        channels = [c for c in prefs.channels(kind) if c in wanted]
        if not channels:
            continue
        actor_id = data.get("actor_id")
        title, body = _render(r, kind, recipient, prefs.language_code,
                              actor_names.get(actor_id) if actor_id else None)
        planned.append((r, found, channels, _Routed(
            r.request_id, recipient.pk, kind.name,
            # The actor must still exist (its row is a foreign key) and is never oneself.
            actor_id if actor_id in actor_names and actor_id != recipient.pk else None,
            title, body, data.get("context") or {}, Channel.IN_APP in channels,
            data.get("bulk_id"))))
    pushes = [row for _r, found, channels, notification in planned
              if Channel.PUSH in channels
              for row in _push_deliveries(notification, found.devices, found.prefs, now)]
    inserted = _notifications_insert([n for _r, _f, _c, n in planned], pushes, now)
    follow_ups: list[Event] = []
    routed: dict[UUID, int] = {}
    for r, found, channels, notification in planned:
        if notification.request_id not in inserted:
            continue  # routed before (a replay past the inbox): no deliveries either
        notification.pk = routed[r.request_id] = inserted[notification.request_id]
        follow_ups += _channel_requests(r, notification, channels, found, now)
    _enqueue_after_commit([row[0] for row in pushes
                           if row[1] in inserted and not row[6]])  # not deferred
    if follow_ups:
        publish_bulk(follow_ups)
    return [routed.get(r.request_id) for r in requests]


@functools.lru_cache(maxsize=64)
def _someone(language: str) -> str:
    """The actor's name when the actor is gone, in `language` (translation files do not
    change while the process runs)."""
    with translation.override(language):
        return gettext("Someone")


def _render(r: RouteRequest, kind: kinds.Kind, recipient, language: str,
            actor_name: str | None) -> tuple[str, str]:
    """(title, body): the request's own, or its kind's templates in the recipient's
    language."""
    data = r.data
    if data.get("title"):
        return data["title"], data.get("body") or ""
    context = dict(data.get("context") or {})
    context["recipient_name"] = recipient_name(recipient)
    context["actor_name"] = actor_name or _someone(language)
    context.setdefault("title", "")
    context.setdefault("body", "")
    try:
        return rendering.render_kind(kind.name, context, language=language)
    except rendering.TemplateMissing as exc:
        raise RequestInvalid(f"request {r.request_id}: {exc}") from None


def _channel_requests(r: RouteRequest, notification: _Routed, channels: list[str],
                      found: selectors.RoutingFacts, now: datetime) -> list[Event]:
    """The `email.requested` / `sms.requested` events of one routed notification."""
    recipient, language = found.recipient, found.prefs.language_code
    kind = kinds.get(notification.kind)
    title, body = notification.title, notification.body
    out = []
    if Channel.EMAIL in channels and recipient.email:
        out.append(Event("email.requested", {
            "to": recipient.email,
            "user_id": recipient.pk,
            "template": kind.email_template,
            "kind": kind.name,
            "context": {"title": title, "body": body,
                        "recipient_name": recipient_name(recipient)},
            "language": language,
            "notification_id": notification.pk,
            "requested_at": _iso(now),
        }, event_id=uuid.uuid5(_NAMESPACE, f"{r.request_id}:email"), extra_headers=r.headers))
    if Channel.SMS in channels and recipient.phone and recipient.phone_verified:
        out.append(Event("sms.requested", {
            "phone": recipient.phone,
            "kind": kind.sms_kind,
            "user_id": recipient.pk,
            "body": None,
            "template": "notification",
            "context": {"title": title, "body": body},
            "secret": None,
            "not_after": None,
            "notification_id": notification.pk,
            "language": language,
            "requested_at": _iso(now),
        }, event_id=uuid.uuid5(_NAMESPACE, f"{r.request_id}:sms"), extra_headers=r.headers))
    return out


# The notifications of a batch and their push deliveries in one statement: a delivery is
# written only with a notification inserted now (not one routed before), and learns its id.
# The delivery's columns are those Django would fill for a new pending push (model instances
# and the ORM's bulk_create cost more than the INSERT on the routing path).
_NOTIFICATIONS_INSERT = f"""
    WITH n AS (
        INSERT INTO {{notifications}} (request_id, recipient_id, kind, actor_id, title, body,
                                      data, in_app, bulk_id, created_at)
        SELECT c0, c1, c2, c3, c4, c5, c6, c7, c8, %s
          FROM {rows_table(["uuid", "bigint", "text", "bigint", "text", "text", "jsonb",
                            "boolean", "bigint"])}
         ORDER BY n
        ON CONFLICT (request_id) DO NOTHING
        RETURNING request_id, id
    ), d AS (
        INSERT INTO {{deliveries}} (id, channel, notification_id, recipient_id, device_id,
                                   address, status, attempts, next_attempt_at, deferred_reason,
                                   payload, provider_message_id, last_error, history,
                                   created_at, updated_at)
        SELECT r.c0, 'push', n.id, r.c2, r.c3, r.c4, 'pending', 0, r.c5, r.c6,
               jsonb_set(r.c7, '{{{{data,notification_id}}}}', to_jsonb(n.id::text)),
               '', '', '[]'::jsonb, %s, %s
          FROM {rows_table(["uuid", "uuid", "bigint", "bigint", "text", "timestamptz", "text",
                            "jsonb"])}
          JOIN n ON n.request_id = r.c1
         ORDER BY r.n
    )
    SELECT request_id, id FROM n
"""  # noqa: S608 - fixed names


def _notifications_insert(rows: list[_Routed], pushes: list[tuple], now: datetime
                          ) -> dict[UUID, int]:
    """Insert the notifications whose request was not routed before, and their push
    deliveries, in one statement; returns request id -> new notification id for those
    inserted."""
    from django.db import connection

    if not rows:
        return {}
    sql = _NOTIFICATIONS_INSERT.format(notifications=Notification._meta.db_table,
                                       deliveries=Delivery._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(sql, [
            now, rows_param(
                (n.request_id, n.recipient_id, n.kind, n.actor_id, n.title, n.body, n.data,
                 n.in_app, n.bulk_id) for n in rows),
            now, now, rows_param(pushes)])
        return dict(cur.fetchall())


def _push_deliveries(notification: _Routed, devices: list[tuple[int, str, str]],
                     prefs: selectors.Preferences, now: datetime) -> list[tuple]:
    """The push delivery rows of one notification, one per device (`_NOTIFICATIONS_INSERT`
    columns; the notification's id is set in SQL): deferred to the end of the recipient's
    quiet hours when inside them."""
    if not devices:
        return []
    quiet_end = prefs.quiet_until(now)
    data = {"kind": notification.kind}
    for key, value in notification.data.items():
        if key.endswith("_id") and value is not None:
            data[key] = str(value)
    deferred = f"quiet hours until {_iso(quiet_end)}" if quiet_end else ""
    return [
        (uuid.uuid4(), notification.request_id, notification.recipient_id, device_id, token,
         quiet_end or now, deferred,
         {"title": notification.title, "body": notification.body, "platform": platform,
          "data": data})
        for device_id, token, platform in devices
    ]


# --- email and SMS requests (consume email-events / sms-events) -----------------------------


def unsubscribe_token(*, user_id: int, kind: str = "marketing",
                      channel: str = Channel.EMAIL) -> str:
    return signing.dumps({"u": user_id, "k": kind, "c": channel},
                         salt="notifications.unsubscribe", compress=True)


def unsubscribe_url(*, user_id: int, kind: str = "marketing") -> str:
    path = reverse("notifications:unsubscribe",
                   kwargs={"token": unsubscribe_token(user_id=user_id, kind=kind)})
    return settings.NOTIFICATIONS_PUBLIC_URL.rstrip("/") + path


def _notification_ref(notification_id: int | None) -> int | None:
    if notification_id and Notification.objects.filter(pk=notification_id).exists():
        return notification_id
    return None


SEALED_PLACEHOLDER = "(sealed)"


def _check_sealed(secret: str) -> None:
    """A sealed secret that cannot be opened will never send: refuse it now (dead letter)."""
    from cryptography.fernet import InvalidToken

    from outbox.sealing import unseal

    try:
        unseal(secret)
    except InvalidToken:
        raise RequestInvalid("the sealed secret cannot be opened with SMS_SEAL_KEYS") from None


def _expired_at(not_after: str | None, now: datetime) -> bool:
    return bool(not_after) and parse_datetime(not_after) <= now


def email_request_record(*, event_id: UUID, data: dict[str, Any]) -> Delivery | None:
    """Render one `email.requested` and record its delivery (sent by Celery after commit).

    Marketing needs the user's opt-in (off by default) and gets an unsubscribe link and
    `List-Unsubscribe` headers (RFC 8058 one-click). An email with a sealed `secret` (a
    single-use link) is stored unrendered with the secret still sealed and rendered when sent;
    one whose `not_after` has passed is recorded as cancelled."""
    if Delivery.objects.filter(source_event_id=event_id, channel=Channel.EMAIL).exists():
        return None
    user = User.objects.filter(pk=data["user_id"]).first() if data.get("user_id") else None
    template = data["template"]
    prefs = selectors.preferences_get(user_id=user.pk) if user is not None else None
    context = dict(data.get("context") or {})
    context.setdefault("recipient_name", recipient_name(user) or data["to"].split("@")[0])
    context.setdefault("title", "")
    context.setdefault("body", "")
    headers: dict[str, str] = {}
    if template == "marketing":
        kind = kinds.get(data.get("kind") or "marketing") or kinds.get("marketing")
        if user is None or not user.is_active or not prefs.enabled(kind, Channel.EMAIL):
            log.info("marketing email %s not sent: no opt-in", event_id)
            return None
        url = unsubscribe_url(user_id=user.pk, kind=kind.name)
        context["unsubscribe_url"] = url
        headers["List-Unsubscribe"] = f"<{url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    language = data.get("language") or (prefs.language_code if prefs else
                                        settings.LANGUAGE_CODE)
    secret = data.get("secret")
    if secret:
        _check_sealed(secret)
    try:
        # With a secret, this render (a placeholder in its place) only proves the templates
        # work; the email is rendered again with the real value when it is sent.
        subject, text, html = rendering.render_email(
            template, {**context, "secret": SEALED_PLACEHOLDER} if secret else context,
            language=language)
    except rendering.TemplateMissing as exc:
        raise RequestInvalid(str(exc)) from None
    if secret:
        # Kept sealed: the delivery row (admin, backups) never holds the usable link.
        payload = {"template": template, "context": context, "language": language,
                   "secret": secret, "not_after": data.get("not_after"), "headers": headers}
    else:
        payload = {"subject": subject, "text": text, "html": html, "headers": headers}
    now = timezone.now()
    status, error = Delivery.Status.PENDING, ""
    if _expired_at(data.get("not_after"), now):
        status, error = Delivery.Status.CANCELLED, "expired before it could be sent"
    delivery = Delivery.objects.create(
        channel=Channel.EMAIL, notification_id=_notification_ref(data.get("notification_id")),
        source_event_id=event_id, recipient=user, address=data["to"], status=status,
        last_error=error, next_attempt_at=now, payload=payload,
    )
    if status == Delivery.Status.PENDING:
        _enqueue_after_commit([delivery.pk])
    return delivery


def sms_request_record(*, event_id: UUID, data: dict[str, Any]) -> Delivery | None:
    """Record one `sms.requested` delivery. OTP skips quiet hours and opt-outs; other SMS wait
    for the end of the user's quiet hours, and marketing needs the user's opt-in. A sealed
    `secret` stays sealed in the delivery row: it is opened only to send."""
    if Delivery.objects.filter(source_event_id=event_id, channel=Channel.SMS).exists():
        return None
    sms_kind = data["kind"]
    user_id = data.get("user_id")
    user = User.objects.filter(pk=user_id).first() if user_id else None
    prefs = selectors.preferences_get(user_id=user.pk) if user is not None else None
    if sms_kind == "marketing" and (
            user is None or not prefs.enabled(kinds.get("marketing"), Channel.SMS)):
        log.info("marketing SMS %s not sent: no opt-in", event_id)
        return None
    template = data.get("template")
    if template and not rendering.text_exists(f"notifications/sms/{template}.txt"):
        raise RequestInvalid(f"no SMS template {template!r}")
    if data.get("secret"):
        _check_sealed(data["secret"])
    now = timezone.now()
    quiet_end = None if sms_kind == "otp" or prefs is None else prefs.quiet_until(now)
    status, error = Delivery.Status.PENDING, ""
    if _expired_at(data.get("not_after"), now):
        status, error = Delivery.Status.CANCELLED, "expired before it could be sent"
    delivery = Delivery.objects.create(
        channel=Channel.SMS, notification_id=_notification_ref(data.get("notification_id")),
        source_event_id=event_id, recipient=user, address=data["phone"], status=status,
        last_error=error, next_attempt_at=quiet_end or now,
        deferred_reason=f"quiet hours until {_iso(quiet_end)}" if quiet_end else "",
        payload={
            "kind": sms_kind, "body": data.get("body"), "template": template,
            "context": data.get("context") or {}, "secret": data.get("secret"),
            "not_after": data.get("not_after"),
            "language": data.get("language") or (prefs.language_code if prefs else
                                                 settings.LANGUAGE_CODE),
        },
    )
    if status == Delivery.Status.PENDING and quiet_end is None:
        _enqueue_after_commit([delivery.pk])
    return delivery


# --- sending (Celery) -----------------------------------------------------------------------


def _backoff(attempt: int, retry_after: float | None) -> float:
    delay = min(settings.NOTIFICATIONS_RETRY_BACKOFF_MAX_SECONDS,
                settings.NOTIFICATIONS_RETRY_BACKOFF_SECONDS * (2 ** max(0, attempt - 1)))
    return max(delay, retry_after or 0.0)


def _note(delivery: Delivery, outcome: str, error: str = "", **extra: Any) -> None:
    entry = {"at": _iso(timezone.now()), "attempt": delivery.attempts, "outcome": outcome}
    if error:
        entry["error"] = error[:500]
    entry.update(extra)
    delivery.history = [*delivery.history, entry][-HISTORY_KEEP:]


def _expired(delivery: Delivery, now: datetime) -> bool:
    return _expired_at(delivery.payload.get("not_after"), now)


def _provider_send(delivery: Delivery) -> str:
    """One provider call; returns the provider's message id."""
    key = str(delivery.pk)
    payload = delivery.payload
    if delivery.channel == Channel.PUSH:
        message = PushMessage(token=delivery.address, platform=payload.get("platform", ""),
                              title=payload["title"], body=payload["body"],
                              data=payload.get("data", {}))
        return get_backend("push").send(message, idempotency_key=key)
    if delivery.channel == Channel.SMS:
        body = payload.get("body")
        if not body:
            context = dict(payload.get("context") or {})
            if payload.get("secret"):
                from outbox.sealing import unseal

                context["secret"] = unseal(payload["secret"])
            body = rendering.render_sms(payload["template"], context,
                                        language=payload.get("language") or "en")
        validity = None
        if payload.get("not_after"):
            validity = int((parse_datetime(payload["not_after"]) - timezone.now())
                           .total_seconds())
        return get_backend("sms").send(SmsMessage(to=delivery.address, body=body,
                                                  validity_seconds=validity),
                                       idempotency_key=key)
    return _send_email(delivery)


def _send_email(delivery: Delivery) -> str:
    import smtplib

    from django.core.mail import EmailMultiAlternatives

    payload = delivery.payload
    if payload.get("secret"):
        # Rendered now, with the secret opened only for this message (see email_request_record).
        from outbox.sealing import unseal

        context = {**payload.get("context", {}), "secret": unseal(payload["secret"])}
        subject, text, html = rendering.render_email(payload["template"], context,
                                                     language=payload.get("language") or "en")
        payload = {**payload, "subject": subject, "text": text, "html": html}
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip(" >") or "showoff.life"
    # The delivery id is the Message-ID: a repeated send is the same message to every MTA
    # and mail client that deduplicates by it.
    message_id = f"<{delivery.pk}@{domain}>"
    msg = EmailMultiAlternatives(
        subject=payload["subject"], body=payload["text"],
        from_email=settings.DEFAULT_FROM_EMAIL, to=[delivery.address],
        headers={**payload.get("headers", {}), "Message-ID": message_id},
    )
    if payload.get("html"):
        msg.attach_alternative(payload["html"], "text/html")
    try:
        msg.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        raise InvalidRecipient(f"recipient refused: {exc.recipients}") from None
    except (smtplib.SMTPSenderRefused, smtplib.SMTPNotSupportedError) as exc:
        raise Rejected(f"{exc.__class__.__name__}: {exc}") from None
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise Rejected(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from None
        raise
    return message_id


def delivery_send(*, delivery_id: UUID) -> str:
    """One attempt at sending a delivery; safe to run twice and concurrently.

    The row is claimed (`sending`, attempt + 1, a lease) in a short transaction, the provider
    is called outside any transaction, and the outcome is recorded only if the claim still
    holds. A worker that dies mid-send leaves the lease to expire; the sweep then sends again
    with the same idempotency key."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (Delivery.objects.select_for_update(skip_locked=True)
                    .filter(pk=delivery_id).first())
        if delivery is None:
            return "busy"
        if delivery.status == Delivery.Status.SENDING and delivery.lease_until \
                and delivery.lease_until > now:
            return "in_flight"
        if delivery.status not in (Delivery.Status.PENDING, Delivery.Status.SENDING):
            return delivery.status
        if delivery.next_attempt_at > now:
            return "not_due"
        if _expired(delivery, now):
            delivery.status = Delivery.Status.CANCELLED
            delivery.last_error = "expired before it could be sent"
            delivery.lease_until = None
            _note(delivery, "cancelled", delivery.last_error)
            delivery.save()
            return "cancelled"
        delivery.status = Delivery.Status.SENDING
        delivery.attempts += 1
        delivery.lease_until = now + timedelta(seconds=settings.NOTIFICATIONS_SEND_LEASE_SECONDS)
        delivery.save(update_fields=["status", "attempts", "lease_until", "updated_at"])
    attempt = delivery.attempts
    provider_id, error, kind, retry_after = "", "", "sent", None
    try:
        provider_id = _provider_send(delivery)
    except InvalidRecipient as exc:
        kind, error = "invalid_recipient", str(exc)
    except Rejected as exc:
        kind, error = "rejected", str(exc)
    except ImproperlyConfigured as exc:
        # Configuration can be fixed while the delivery waits: retried like an outage.
        kind, error = "transient", f"not configured: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other failure is worth another attempt
        kind, error = "transient", f"{exc.__class__.__name__}: {exc}"
        retry_after = getattr(exc, "retry_after", None)
    return _delivery_record_outcome(delivery_id=delivery.pk, attempt=attempt, kind=kind,
                                    provider_id=provider_id, error=error,
                                    retry_after=retry_after)


def _delivery_record_outcome(*, delivery_id: UUID, attempt: int, kind: str, provider_id: str,
                             error: str, retry_after: float | None) -> str:
    now = timezone.now()
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.status != Delivery.Status.SENDING or delivery.attempts != attempt:
            # Our lease expired and another attempt took over: its outcome counts.
            return "superseded"
        delivery.lease_until = None
        if kind == "sent":
            delivery.status = Delivery.Status.SENT
            delivery.provider_message_id = provider_id[:255]
            delivery.sent_at = now
            delivery.last_error = ""
            _note(delivery, "sent", provider_id=provider_id[:255])
        elif kind == "transient" and attempt < settings.NOTIFICATIONS_MAX_ATTEMPTS:
            delay = _backoff(attempt, retry_after)
            delivery.status = Delivery.Status.PENDING
            delivery.next_attempt_at = now + timedelta(seconds=delay)
            delivery.last_error = error
            _note(delivery, "retry", error, retry_in=round(delay, 3))
            _enqueue_after_commit([delivery.pk], countdown=delay)
        else:
            delivery.status = Delivery.Status.FAILED
            delivery.last_error = error
            _note(delivery, "failed" if kind == "transient" else kind, error)
            if kind == "invalid_recipient" and delivery.device_id is not None:
                device_id, delivery.device_id = delivery.device_id, None
                delivery.save()
                # Its other deliveries keep their rows (device set to null by the FK).
                Device.objects.filter(pk=device_id).delete()
                log.info("push token of device %s reported invalid: device removed", device_id)
        delivery.save()
        result = delivery.status
    if result == Delivery.Status.FAILED:
        log.warning("%s delivery %s failed after %d attempt(s): %s", delivery.channel,
                    delivery.pk, attempt, error)
    return result


def deliveries_dispatch_due(*, limit: int = 1000) -> int:
    """Queue deliveries that should be sending but are not: due after quiet hours, a queue
    message lost, a worker that died mid-send (lease expired). Run by Celery beat."""
    now = timezone.now()
    grace = timedelta(seconds=settings.NOTIFICATIONS_SWEEP_GRACE_SECONDS)
    ids = list(Delivery.objects.filter(
        Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now - grace)
        | Q(status=Delivery.Status.PENDING, deferred_reason__gt="", next_attempt_at__lte=now)
        | Q(status=Delivery.Status.SENDING, lease_until__lt=now)
    ).order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    _enqueue(ids)
    return len(ids)


class ResendRefused(ValueError):
    pass


def delivery_resend(*, delivery_id: UUID, by=None) -> Delivery:
    """Start a failed or cancelled delivery over (a fresh round of attempts, same id and so the
    same idempotency key). A push whose device is gone cannot be resent."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.status not in (Delivery.Status.FAILED, Delivery.Status.CANCELLED):
            raise ResendRefused(f"delivery {delivery.pk} is {delivery.status}; only failed or "
                                "cancelled deliveries can be resent")
        if delivery.channel == Channel.PUSH and delivery.device_id is None:
            raise ResendRefused(f"delivery {delivery.pk}: the device is no longer registered")
        delivery.status = Delivery.Status.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = timezone.now()
        delivery.deferred_reason = ""
        if delivery.channel == Channel.SMS and _expired(delivery, timezone.now()):
            delivery.payload = {**delivery.payload, "not_after": None}
        _note(delivery, "resend", by=getattr(by, "username", None) or "system")
        delivery.save()
        _enqueue_after_commit([delivery.pk])
    return delivery


# --- the user's side: devices, preferences, reading ----------------------------------------


def device_register(*, user, platform: str, token: str) -> tuple[Device, bool]:
    """Register a push token for `user`; a token already known moves to `user` (one token is
    one device), and pushes still waiting for its previous account are cancelled so they never
    reach the new one. Returns (device, created)."""
    with transaction.atomic():
        device = Device.objects.select_for_update().filter(token=token).first()
        if device is None:
            try:
                with transaction.atomic():
                    return Device.objects.create(user=user, platform=platform, token=token), True
            except IntegrityError:  # registered concurrently: take that row
                device = Device.objects.select_for_update().get(token=token)
        if device.user_id != user.pk:
            Delivery.objects.filter(device=device, status=Delivery.Status.PENDING).update(
                status=Delivery.Status.CANCELLED, lease_until=None,
                last_error="the device was registered by another account")
        device.user = user
        device.platform = platform
        device.save()
    return device, False


def device_delete(*, user, device_id: int) -> None:
    deleted, _ = Device.objects.filter(user=user, pk=device_id).delete()
    if not deleted:
        raise Device.DoesNotExist


def _parse_time(value: Any, field: str) -> dtime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dtime):
        return value.replace(second=0, microsecond=0)
    raise ValidationError({field: ["Give a time as HH:MM."]})


def preferences_update(*, user, channels: list[dict[str, Any]] | None = None,
                       quiet_hours: dict[str, Any] | None = UNSET,
                       language: str = UNSET) -> None:
    """Set per-kind channel choices, quiet hours ({start, end, timezone} or None) and the
    language. Marketing can only ever be switched on here, by the user."""
    errors: dict[str, list[str]] = {}
    for i, item in enumerate(channels or []):
        kind = kinds.get(item["kind"])
        if kind is None:
            errors.setdefault("channels", []).append(
                f"item {i}: unknown kind {item['kind']!r}; kinds are: "
                f"{', '.join(kinds.KINDS)}.")
        elif item["channel"] not in kind.defaults:
            errors.setdefault("channels", []).append(
                f"item {i}: {kind.name} is not sent by {item['channel']}; its channels are: "
                f"{', '.join(kind.channels)}.")
    settings_row_changes: dict[str, Any] = {}
    if quiet_hours is not UNSET:
        if quiet_hours is None:
            settings_row_changes.update(quiet_hours_start=None, quiet_hours_end=None)
        else:
            start = _parse_time(quiet_hours.get("start"), "quiet_hours.start")
            end = _parse_time(quiet_hours.get("end"), "quiet_hours.end")
            tz = quiet_hours.get("timezone") or "UTC"
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                errors.setdefault("quiet_hours.timezone", []).append(
                    f"Unknown time zone {tz!r}; use an IANA name such as Europe/Berlin.")
            if (start is None) != (end is None) or (start is not None and start == end):
                errors.setdefault("quiet_hours", []).append(
                    "Give both start and end, and make them differ (or send null to turn "
                    "quiet hours off).")
            settings_row_changes.update(quiet_hours_start=start, quiet_hours_end=end,
                                        timezone=tz)
    if language is not UNSET:
        codes = {code for code, _ in settings.LANGUAGES}
        if language and language not in codes:
            errors.setdefault("language", []).append(
                f"Unknown language {language!r}; use a code such as en or es.")
        settings_row_changes["language"] = language or ""
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        for item in channels or []:
            Preference.objects.update_or_create(
                user=user, kind=item["kind"], channel=item["channel"],
                defaults={"enabled": bool(item["enabled"])})
        if settings_row_changes:
            NotificationSettings.objects.update_or_create(user=user,
                                                          defaults=settings_row_changes)


def notification_mark_read(*, user, notification_id: int) -> Notification:
    notification = Notification.objects.inbox(user).get(pk=notification_id)
    if notification.read_at is None:
        now = timezone.now()
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=now)
        notification.read_at = now
    return notification


def notifications_mark_all_read(*, user, up_to: int | None = None) -> int:
    """Mark every unread notification read (only those with id <= `up_to` when given: the
    newest one the client has shown, so one arriving meanwhile stays unread)."""
    qs = Notification.objects.inbox(user).filter(read_at__isnull=True)
    if up_to is not None:
        qs = qs.filter(pk__lte=up_to)
    return qs.update(read_at=timezone.now())


class BadUnsubscribeToken(ValueError):
    pass


def marketing_unsubscribe(*, token: str) -> int:
    """Turn the channel off for the kind named in a signed unsubscribe token; returns the
    user id. The link never expires (an old email's link must still work)."""
    try:
        claims = signing.loads(token, salt="notifications.unsubscribe")
        user_id, kind, channel = int(claims["u"]), str(claims["k"]), str(claims["c"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise BadUnsubscribeToken("This unsubscribe link is not valid.") from None
    if kinds.get(kind) is None or not User.objects.filter(pk=user_id).exists():
        raise BadUnsubscribeToken("This unsubscribe link is not valid.")
    Preference.objects.update_or_create(user_id=user_id, kind=kind, channel=channel,
                                        defaults={"enabled": False})
    return user_id


# --- bulk -----------------------------------------------------------------------------------


def bulk_recipients(segment: dict[str, Any]):
    """Active users of a segment: `{"all": true}` or any of joined_after / joined_before (ISO
    dates), phone_verified (bool), user_ids (list)."""
    qs = User.objects.filter(is_active=True, deleted_at__isnull=True)
    if segment.get("joined_after"):
        qs = qs.filter(date_joined__date__gte=segment["joined_after"])
    if segment.get("joined_before"):
        qs = qs.filter(date_joined__date__lt=segment["joined_before"])
    if segment.get("phone_verified") is not None:
        qs = qs.filter(phone_verified_at__isnull=not segment["phone_verified"])
    if segment.get("user_ids"):
        qs = qs.filter(pk__in=segment["user_ids"])
    return qs


def _validate_bulk(kind: str, channels: list[str], segment: dict[str, Any]) -> None:
    errors: dict[str, list[str]] = {}
    k = kinds.get(kind)
    if k is None or k.category not in ("announcement", "marketing"):
        errors["kind"] = ["Bulk sends are announcement or marketing."]
    elif [c for c in channels if c not in k.defaults]:
        errors["channels"] = [f"{kind} is sent by {', '.join(k.channels)} only."]
    allowed = {"all", "joined_after", "joined_before", "phone_verified", "user_ids"}
    if not segment or set(segment) - allowed:
        errors["segment"] = ['Give {"all": true} or filters among joined_after, '
                             "joined_before, phone_verified, user_ids."]
    elif segment.get("all") is not True and set(segment) <= {"all"}:
        errors["segment"] = ['{"all": true} sends to every active user.']
    if errors:
        raise ValidationError(errors)


def bulk_notification_create(*, created_by, kind: str, title: str, body: str,
                             channels: list[str] | None = None, segment: dict[str, Any],
                             start: bool = False) -> BulkNotification:
    """A bulk send as a draft (the admin reviews it, then starts it), or started at once."""
    channels = list(channels or [])
    _validate_bulk(kind, channels, segment)
    with transaction.atomic():
        bulk = BulkNotification.objects.create(kind=kind, title=title, body=body,
                                               channels=channels, segment=segment,
                                               created_by=created_by)
        if start:
            bulk = bulk_notification_start(bulk_id=bulk.pk)
    return bulk


def bulk_notification_start(*, bulk_id: int) -> BulkNotification:
    """Queue the fan-out (Celery, after commit)."""
    from .tasks import bulk_fan_out

    with transaction.atomic():
        bulk = BulkNotification.objects.select_for_update().get(pk=bulk_id)
        if bulk.status != BulkNotification.Status.DRAFT:
            raise ValidationError({"status": [f"bulk {bulk.pk} is {bulk.status}; only a draft "
                                              "can be started."]})
        bulk.status = BulkNotification.Status.QUEUED
        bulk.recipients_expected = bulk_recipients(bulk.segment).count()
        bulk.save()
        transaction.on_commit(
            lambda: bulk_fan_out.apply_async(args=[bulk.pk],
                                             queue=settings.NOTIFICATIONS_CELERY_QUEUE),
            robust=True)
    return bulk


def bulk_notification_fan_out(*, bulk_id: int, batch_size: int | None = None,
                              max_batches: int | None = None) -> int:
    """Publish one `notification.requested` per recipient, batch by batch: each batch is one
    transaction that locks the bulk row, reads the next `batch_size` user ids after `cursor`,
    writes their events with one `publish_bulk` INSERT and moves the cursor. Memory holds one
    batch; a crash resumes at the cursor (no recipient twice, none skipped), and a second
    runner waits on the row lock. Returns the number published by this call."""
    batch_size = batch_size or settings.NOTIFICATIONS_BULK_BATCH_SIZE
    published = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        with transaction.atomic():
            bulk = BulkNotification.objects.select_for_update().get(pk=bulk_id)
            if bulk.status not in (BulkNotification.Status.QUEUED,
                                   BulkNotification.Status.RUNNING):
                return published
            now = timezone.now()
            if bulk.status == BulkNotification.Status.QUEUED:
                bulk.status = BulkNotification.Status.RUNNING
                bulk.started_at = now
            ids = list(bulk_recipients(bulk.segment).filter(pk__gt=bulk.cursor)
                       .order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not ids:
                bulk.status = BulkNotification.Status.COMPLETED
                bulk.finished_at = now
                bulk.save()
                return published
            requested_at = _iso(now)
            publish_bulk(
                Event("notification.requested", {
                    "recipient_id": user_id, "kind": bulk.kind, "actor_id": None,
                    "context": {}, "title": bulk.title, "body": bulk.body,
                    "channels": bulk.channels or None, "source_event_id": None,
                    "bulk_id": bulk.pk, "requested_at": requested_at,
                }, event_id=uuid.uuid5(_NAMESPACE, f"bulk:{bulk.pk}:{user_id}"))
                for user_id in ids
            )
            bulk.cursor = ids[-1]
            bulk.recipients_published += len(ids)
            bulk.batches += 1
            bulk.save()
        published += len(ids)
        batches += 1
        del ids
        reset_queries()  # with DEBUG on, Django would keep every INSERT's SQL
    return published


def bulk_notifications_resume_stalled() -> int:
    """Queue again the fan-out of bulks queued or running without progress for
    NOTIFICATIONS_BULK_STALE_SECONDS (the worker died or the message was lost)."""
    from .tasks import bulk_fan_out

    stale = timezone.now() - timedelta(seconds=settings.NOTIFICATIONS_BULK_STALE_SECONDS)
    ids = list(BulkNotification.objects.filter(
        status__in=[BulkNotification.Status.QUEUED, BulkNotification.Status.RUNNING],
        updated_at__lt=stale).values_list("pk", flat=True))
    for bulk_id in ids:
        bulk_fan_out.apply_async(args=[bulk_id], queue=settings.NOTIFICATIONS_CELERY_QUEUE)
    return len(ids)
