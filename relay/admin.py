from __future__ import annotations

from django.contrib import admin

from .models import RelayPosition, SetAsideEvent
from .selectors import shard_states


@admin.register(RelayPosition)
class RelayPositionAdmin(admin.ModelAdmin):
    """Relay state per shard. Kafka's checkpoint topic is the source of truth; this is the
    database copy written after every commit: the tick `(S_prev, S_cur)` being delivered and
    the cursor inside it (relay/position.py)."""

    list_display = ("shard_label", "s_prev", "s_cur", "cursor_id", "last_row",
                    "last_commit_at", "events_total", "backlog", "lag_seconds",
                    "transactional_id")
    readonly_fields = [f.name for f in RelayPosition._meta.fields]

    def get_queryset(self, request):
        self._states = {(s.shards, s.shard): s for shards in
                        set(RelayPosition.objects.values_list("shards", flat=True))
                        for s in shard_states(shards)}
        return super().get_queryset(request)

    @admin.display(description="shard")
    def shard_label(self, obj):
        return f"{obj.shard}/{obj.shards}"

    @admin.display(description="last delivered row (txid, id)")
    def last_row(self, obj):
        return f"({obj.txid}, {obj.last_id})" if obj.last_id is not None else "-"

    @admin.display(description="backlog (events)")
    def backlog(self, obj):
        state = getattr(self, "_states", {}).get((obj.shards, obj.shard))
        return state.backlog if state else "?"

    @admin.display(description="lag (s)")
    def lag_seconds(self, obj):
        state = getattr(self, "_states", {}).get((obj.shards, obj.shard))
        return f"{state.lag_seconds:.1f}" if state else "?"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SetAsideEvent)
class SetAsideEventAdmin(admin.ModelAdmin):
    """Events the relay did not deliver because Kafka would never accept them (too large).
    Read-only: fix the cause (limits, or the code that wrote the event), then publish a
    corrected event if it still matters (docs/runbook.md)."""

    list_display = ("set_aside_at", "event_id", "type", "topic", "key", "size_bytes",
                    "limit_bytes", "reason", "shard_label")
    list_filter = ("type", "topic")
    search_fields = ("=event_id", "=key")
    ordering = ("-set_aside_at",)
    readonly_fields = [f.name for f in SetAsideEvent._meta.fields]

    @admin.display(description="shard")
    def shard_label(self, obj):
        return f"{obj.shard}/{obj.shards}"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
