from __future__ import annotations

from django.contrib import admin

from .models import OutboxEvent


class DeliveryFilter(admin.SimpleListFilter):
    title = "delivery"
    parameter_name = "delivery"

    def lookups(self, request, model_admin):
        return [("delivered", "delivered"), ("pending", "pending")]

    def queryset(self, request, queryset):
        from relay.selectors import delivered_condition

        if self.value() not in {"delivered", "pending"}:
            return queryset
        condition, params = delivered_condition()
        if self.value() == "pending":
            condition = f"NOT {condition}"
        return queryset.extra(where=[condition], params=params)  # noqa: S610 - fixed SQL


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    """Read-only: outbox rows are immutable (a trigger rejects updates)."""

    list_display = ("id", "txid", "type", "topic", "key", "event_id", "created_at")
    list_filter = (DeliveryFilter, "topic", "type")
    search_fields = ("=event_id", "=key")
    ordering = ("-txid", "-id")
    show_full_result_count = False
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
