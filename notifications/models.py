from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from .kinds import Channel


class NotificationSettings(models.Model):
    """One user's notification settings beside the per-kind preferences: quiet hours (local
    time in `timezone`) and the language notifications are written in."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                primary_key=True, related_name="notification_settings")
    quiet_hours_start = models.TimeField(null=True, blank=True)
    quiet_hours_end = models.TimeField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    # Empty: settings.LANGUAGE_CODE.
    language = models.CharField(max_length=10, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "notification settings"

    def __str__(self) -> str:
        return f"notification settings of user {self.user_id}"


class Preference(models.Model):
    """A user's choice for one kind on one channel; without a row the kind's default holds."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="notification_preferences")
    kind = models.CharField(max_length=64)
    channel = models.CharField(max_length=10, choices=Channel.CHOICES)
    enabled = models.BooleanField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind", "channel"],
                                    name="notif_pref_once_per_kind_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}/{self.channel} {'on' if self.enabled else 'off'} for {self.user_id}"


class Device(models.Model):
    """A device registered for push. One token is one device: registering a token that is
    already known moves it to the registering user (the phone changed hands or accounts)."""

    class Platform(models.TextChoices):
        ANDROID = "android", "Android"
        IOS = "ios", "iOS"
        WEB = "web", "Web"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="push_devices")
    platform = models.CharField(max_length=10, choices=Platform.choices)
    token = models.CharField(max_length=512, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_registered_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.platform} device {self.pk} of user {self.user_id}"


class BulkNotification(models.Model):
    """One notification sent to a segment of users, fanned out in batches (each batch one
    transaction that publishes its `notification.requested` events and moves `cursor`)."""

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        COMPLETED = "completed", "completed"
        CANCELLED = "cancelled", "cancelled"

    kind = models.CharField(max_length=64, default="announcement")
    title = models.CharField(max_length=255)
    body = models.TextField(max_length=2000)
    channels = models.JSONField(default=list, blank=True,
                                help_text="Empty: every channel of the kind.")
    segment = models.JSONField(default=dict, blank=True,
                               help_text='{"all": true}, or filters: joined_after, '
                                         'joined_before (ISO dates), phone_verified, user_ids.')
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    # Highest user id already fanned out (users are walked in id order).
    cursor = models.BigIntegerField(default=0)
    recipients_expected = models.PositiveIntegerField(null=True, blank=True)
    recipients_published = models.PositiveIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"bulk {self.pk}: {self.title}"


class NotificationQuerySet(models.QuerySet):
    def inbox(self, user) -> NotificationQuerySet:
        return self.filter(recipient=user, in_app=True)


class Notification(models.Model):
    """One notification of one user: the in-app message (when `in_app`) and what its push,
    email and SMS deliveries hang off. `request_id` is the `notification.requested` event's
    id: one request makes one notification, however often it is delivered."""

    request_id = models.UUIDField(unique=True)
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                  related_name="notifications")
    kind = models.CharField(max_length=64)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                              blank=True, related_name="+")
    title = models.CharField(max_length=255)
    body = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    in_app = models.BooleanField(default=True)
    bulk = models.ForeignKey(BulkNotification, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="notifications")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["recipient", "-id"], name="notif_inbox",
                         condition=Q(in_app=True)),
            models.Index(fields=["recipient"], name="notif_unread",
                         condition=Q(in_app=True, read_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} notification {self.pk} for {self.recipient_id}"


class Delivery(models.Model):
    """One message to one address on one channel (push to a device, an email, an SMS).

    Recorded exactly once: per notification, channel and address, and per source event
    (`email.requested`/`sms.requested`). Its id is the provider's idempotency key where the
    provider has one. Sent by Celery (`notifications.send_delivery`), retried with backoff,
    then `failed` with the reason; the admin can resend it.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENDING = "sending", "sending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    CHANNELS = [(Channel.PUSH, "Push"), (Channel.EMAIL, "Email"), (Channel.SMS, "SMS")]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    channel = models.CharField(max_length=10, choices=CHANNELS)
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, null=True,
                                     blank=True, related_name="deliveries")
    source_event_id = models.UUIDField(null=True, blank=True)
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                  null=True, blank=True, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="deliveries")
    address = models.CharField(max_length=512)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # While `sending`: the claim expires then (a worker that died mid-send is retried).
    lease_until = models.DateTimeField(null=True, blank=True)
    deferred_reason = models.CharField(max_length=200, blank=True)
    payload = models.JSONField(default=dict)
    provider_message_id = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    # [{"at", "attempt", "outcome", "error"}], the last few attempts and resends.
    history = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["notification", "channel", "address"],
                                    condition=Q(notification__isnull=False),
                                    name="delivery_once_per_notification_channel_address"),
            models.UniqueConstraint(fields=["source_event_id", "channel"],
                                    condition=Q(source_event_id__isnull=False),
                                    name="delivery_once_per_source_event"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="delivery_due",
                         condition=Q(status="pending")),
            models.Index(fields=["lease_until"], name="delivery_in_flight",
                         condition=Q(status="sending")),
            models.Index(fields=["status", "-created_at"], name="delivery_status_created"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} delivery {self.pk} ({self.status})"
