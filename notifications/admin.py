"""Notifications admin: notifications and deliveries are read-only records; the writes offered
are the services (resend a failed delivery, start a bulk send)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from . import kinds, services
from .models import (
    BulkNotification,
    Delivery,
    Device,
    Notification,
    NotificationSettings,
    Preference,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # The list actions need the change permission; objects stay read-only.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ("channel", "address", "status", "attempts", "last_error", "sent_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("id", "recipient", "kind", "title", "in_app", "read_at", "created_at")
    list_filter = ("kind", "in_app", ("read_at", admin.EmptyFieldListFilter))
    search_fields = ("recipient__username", "recipient__email", "title")
    raw_id_fields = ("recipient", "actor", "bulk")
    readonly_fields = ("request_id", "recipient", "kind", "actor", "title", "body", "data",
                       "in_app", "bulk", "created_at", "read_at")
    inlines = [DeliveryInline]
    list_select_related = ("recipient",)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "channel", "status", "address_short", "attempts", "last_error_short",
                    "next_attempt_at", "sent_at", "created_at")
    list_filter = ("channel", "status")
    search_fields = ("=id", "address", "provider_message_id", "recipient__username")
    readonly_fields = ("id", "channel", "status", "notification", "source_event_id",
                       "recipient", "device", "address", "attempts", "next_attempt_at",
                       "lease_until", "deferred_reason", "provider_message_id", "last_error",
                       "history_table", "payload_shown", "created_at", "sent_at")
    exclude = ("payload", "history")
    actions = ["resend"]
    ordering = ("-created_at",)

    @admin.display(description="address")
    def address_short(self, obj: Delivery) -> str:
        return obj.address if len(obj.address) <= 40 else obj.address[:37] + "…"

    @admin.display(description="last error")
    def last_error_short(self, obj: Delivery) -> str:
        return obj.last_error[:80]

    @admin.display(description="payload")
    def payload_shown(self, obj: Delivery) -> str:
        # A one-time code stays sealed; say so rather than show the ciphertext.
        shown = {k: ("(sealed)" if k == "secret" and v else v) for k, v in obj.payload.items()}
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>",
                           json.dumps(shown, indent=2, ensure_ascii=False))

    @admin.display(description="attempts and resends")
    def history_table(self, obj: Delivery) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>",
                           "\n".join(json.dumps(h, ensure_ascii=False) for h in obj.history))

    @admin.action(description="Resend the selected failed or cancelled deliveries")
    def resend(self, request, queryset):
        done, refused = 0, []
        for delivery_id in queryset.values_list("pk", flat=True):
            try:
                services.delivery_resend(delivery_id=delivery_id, by=request.user)
                done += 1
            except services.ResendRefused as exc:
                refused.append(str(exc))
        if done:
            self.message_user(request, f"{done} deliver{'y' if done == 1 else 'ies'} queued "
                              "to be sent again.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "platform", "token_short", "last_registered_at")
    list_filter = ("platform",)
    search_fields = ("user__username", "token")
    raw_id_fields = ("user",)
    readonly_fields = ("user", "platform", "token", "created_at", "last_registered_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="token")
    def token_short(self, obj: Device) -> str:
        return obj.token[:24] + "…"


@admin.register(Preference)
class PreferenceAdmin(ReadOnlyAdmin):
    list_display = ("user", "kind", "channel", "enabled", "updated_at")
    list_filter = ("kind", "channel", "enabled")
    search_fields = ("user__username",)


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(ReadOnlyAdmin):
    list_display = ("user", "quiet_hours_start", "quiet_hours_end", "timezone", "language")
    search_fields = ("user__username",)


class BulkForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=[("announcement", "announcement"),
                                      ("marketing", "marketing (opted-in users only)")])
    channels = forms.MultipleChoiceField(
        choices=kinds.Channel.CHOICES, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every channel of the kind (each user's choices still apply).")
    segment = forms.JSONField(initial={"all": True}, help_text=BulkNotification._meta
                              .get_field("segment").help_text)

    class Meta:
        model = BulkNotification
        fields = ("kind", "title", "body", "channels", "segment")

    def clean(self):
        data = super().clean()
        if not self.errors:
            try:
                services._validate_bulk(data["kind"], data.get("channels") or [],
                                        data.get("segment") or {})
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    self.add_error(field if field in self.fields else None, errors)
        return data


@admin.register(BulkNotification)
class BulkNotificationAdmin(admin.ModelAdmin):
    form = BulkForm
    list_display = ("id", "title", "kind", "status", "recipients_expected",
                    "recipients_published", "batches", "created_by", "created_at",
                    "finished_at")
    list_filter = ("status", "kind")
    actions = ["start_sending"]
    readonly_fields = ("status", "recipients_expected", "recipients_published", "batches",
                       "cursor", "created_by", "created_at", "started_at", "finished_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != BulkNotification.Status.DRAFT:
            return (*self.form.Meta.fields, *self.readonly_fields)
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return obj is None or obj.status == BulkNotification.Status.DRAFT

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Start sending the selected drafts")
    def start_sending(self, request, queryset):
        for bulk_id in queryset.values_list("pk", flat=True):
            try:
                bulk = services.bulk_notification_start(bulk_id=bulk_id)
            except ValidationError as exc:
                self.message_user(request, "; ".join(exc.messages), messages.WARNING)
                continue
            self.message_user(request, f"Bulk {bulk.pk} queued for {bulk.recipients_expected} "
                              "recipients.", messages.SUCCESS)
