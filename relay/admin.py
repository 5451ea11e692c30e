from __future__ import annotations

from django.contrib import admin

from .models import RelayPosition
from .selectors import shard_states


@admin.register(RelayPosition)
class RelayPositionAdmin(admin.ModelAdmin):
    """Relay state per shard. Kafka's checkpoint topic is the source of truth; this is the
    database copy written after every commit."""

    list_display = ("shard_label", "txid", "last_id", "last_commit_at", "events_total",
                    "backlog", "lag_seconds", "transactional_id")
    readonly_fields = [f.name for f in RelayPosition._meta.fields]

    def get_queryset(self, request):
        self._states = {(s.shards, s.shard): s for shards in
                        set(RelayPosition.objects.values_list("shards", flat=True))
                        for s in shard_states(shards)}
        return super().get_queryset(request)

    @admin.display(description="shard")
    def shard_label(self, obj):
        return f"{obj.shard}/{obj.shards}"

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
