"""Analytics API: client event ingestion, a post's stats for its author, staff metrics.

- `POST /api/analytics/events/`: anyone (a signed-in client's events carry its user);
  throttled per user, or per client IP when anonymous.
- `GET /api/analytics/posts/<id>/stats/`: the post's author (and staff).
- `GET /api/analytics/metrics/`, `/metrics/<name>/`, `/performance/<metric>/`: staff only.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, throttling
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from posts.models import Post
from posts.selectors import post_get
from showoff.drf import InputSerializer, cap_echo, client_ip, object_id
from showoff.ratelimit import RecordsRateLimit

from . import selectors, services
from .metrics import METRICS, PERF_METRICS
from .models import DailyPerf

PLATFORMS = ("ios", "android", "web")

# --- ingestion ------------------------------------------------------------------------------


class IngestThrottle(RecordsRateLimit, throttling.SimpleRateThrottle):
    """ANALYTICS_INGEST_RATE batches per signed-in user, or per client IP when anonymous.
    The rate is read per request, so a changed setting applies at once."""

    scope = "analytics_ingest"

    def get_rate(self):
        return settings.ANALYTICS_INGEST_RATE

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        if request.user and request.user.is_authenticated:
            ident = f"u{request.user.pk}"
        else:
            ident = f"ip{client_ip(request) or 'unknown'}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class EventBatchInputSerializer(InputSerializer):
    device_id = serializers.RegexField(
        r"^[A-Za-z0-9._:-]{1,64}$", max_length=64,
        help_text="The app installation: stable per install, letters, digits and . _ : -.",
        error_messages={"invalid": "1 to 64 letters, digits or . _ : - characters."})
    platform = serializers.ChoiceField(choices=PLATFORMS)
    app_version = serializers.RegexField(
        r"^[0-9A-Za-z.+_-]{1,32}$", max_length=32,
        error_messages={"invalid": "1 to 32 letters, digits or . + _ - characters."})
    sent_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None,
        help_text="The client's clock when it sent the batch; corrects every occurred_at by "
                  "the client clock's offset.")
    events = serializers.ListField(
        child=serializers.JSONField(), allow_empty=False,
        help_text="Items: {id, type, occurred_at, session_id?, properties}. Each is checked on "
                  "its own; see the response's results.")

    def validate_events(self, value: list) -> list:
        limit = settings.ANALYTICS_MAX_BATCH_EVENTS
        if len(value) > limit:
            raise serializers.ValidationError(
                f"At most {limit} events per batch ({len(value)} sent); send the rest in "
                "another request.")
        return value


class ItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.JSONField(help_text="The item's client id, as sent.")
    status = serializers.ChoiceField(choices=["accepted", "duplicate", "rejected"],
                                     help_text="duplicate: accepted before (a retry); counted "
                                               "once.")
    event_id = serializers.UUIDField(allow_null=True)
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                   help_text="Why the item was rejected, per field.")


class IngestOutputSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = ItemResultSerializer(many=True)


def _echo_id(client_id):
    """The item's id as sent when it is a string or a number (capped); any other shape is
    not an id and is answered as null (the result's `index` still names the item)."""
    if isinstance(client_id, str):
        return cap_echo(client_id)
    if isinstance(client_id, int | float) and not isinstance(client_id, bool):
        return client_id
    return None


class ClientEventsApi(APIView):
    """Accept a batch of client behaviour and performance events."""

    permission_classes = [permissions.AllowAny]

    def get_throttles(self):
        # The global per-user / per-IP budgets, plus the ingestion budget.
        return [*super().get_throttles(), IngestThrottle()]

    @extend_schema(tags=["analytics"], request=EventBatchInputSerializer,
                   responses={200: IngestOutputSerializer})
    def post(self, request):
        serializer = EventBatchInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user_id = request.user.pk if request.user.is_authenticated else None
        results = services.client_events_ingest(
            user_id=user_id, device_id=data["device_id"], platform=data["platform"],
            app_version=data["app_version"], sent_at=data["sent_at"], items=data["events"])
        body = {
            "accepted": sum(r.status == "accepted" for r in results),
            "duplicates": sum(r.status == "duplicate" for r in results),
            "rejected": sum(r.status == "rejected" for r in results),
            # A rejected item's id and messages may quote a huge input: capped (showoff/drf.py).
            "results": [{"index": r.index, "id": _echo_id(r.id), "status": r.status,
                         "event_id": str(r.event_id) if r.event_id else None,
                         "errors": cap_echo(r.errors)} for r in results],
        }
        # Already the shape of IngestOutputSerializer (documented above): running a serializer
        # over every item cost as much as writing the events (bench/analytics_ingest_http.py).
        return Response(body)


# --- a post's stats -------------------------------------------------------------------------


class PostStatsOutputSerializer(serializers.Serializer):
    post_id = serializers.IntegerField()
    views = serializers.IntegerField(help_text="Counted views (one per viewer per window).")
    unique_viewers = serializers.IntegerField(
        help_text="Distinct signed-in users, and anonymous devices, that viewed or were shown "
                  "the post.")
    impressions = serializers.IntegerField()
    likes = serializers.IntegerField(help_text="Likes minus likes withdrawn.")
    comments = serializers.IntegerField()
    tips = serializers.IntegerField()
    tip_coins = serializers.IntegerField()
    watch_time_ms = serializers.IntegerField()
    watches = serializers.IntegerField()
    engagement_rate = serializers.FloatField(
        allow_null=True, help_text="(likes + comments + tips) / views; null without views.")
    updated_at = serializers.DateTimeField(allow_null=True)


class PostStatsApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(tags=["analytics"], responses={200: PostStatsOutputSerializer})
    def get(self, request, post_id: int):
        try:
            post = post_get(post_id=object_id(post_id, "post"), viewer=request.user)
        except Post.DoesNotExist:
            raise NotFound("No such post.")
        if post.author_id != request.user.pk and not request.user.is_staff:
            raise PermissionDenied("Only the post's author can see its stats.")
        stats = selectors.post_stats_get(post_id=post.pk)
        return Response(PostStatsOutputSerializer({
            "post_id": post.pk, "views": stats.views, "unique_viewers": stats.unique_viewers,
            "impressions": stats.impressions, "likes": stats.net_likes,
            "comments": stats.comments, "tips": stats.tips, "tip_coins": stats.tip_coins,
            "watch_time_ms": stats.watch_time_ms, "watches": stats.watches,
            "engagement_rate": stats.engagement_rate, "updated_at": stats.updated_at,
        }).data)


# --- staff metrics --------------------------------------------------------------------------

MAX_BUCKETS = 1000


class RangeInputSerializer(serializers.Serializer):
    period = serializers.ChoiceField(choices=["hour", "day"], default="day")
    start = serializers.CharField(required=False, help_text="First bucket: a date (day) or "
                                  "an ISO date and time (hour, UTC). Default: 30 days / 48 hours "
                                  "before end.")
    end = serializers.CharField(required=False, help_text="Last bucket, included. Default: "
                                "the current day or hour.")

    def _parse(self, value: str, period: str, name: str):
        if period == "day":
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ValidationError({name: ["A date like 2025-01-31 is required."]})
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                moment = datetime.combine(date.fromisoformat(value), datetime.min.time())
            except ValueError:
                raise ValidationError({name: ["A date and time like 2025-01-31T13:00Z is "
                                              "required."]})
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return services.utc_hour(moment)

    def validate(self, attrs):
        period = attrs["period"]
        now = timezone.now()
        end = (self._parse(attrs["end"], period, "end") if "end" in attrs
               else (services.utc_day(now) if period == "day" else services.utc_hour(now)))
        if "start" in attrs:
            start = self._parse(attrs["start"], period, "start")
        else:
            start = end - (timedelta(days=29) if period == "day" else timedelta(hours=47))
        if start > end:
            raise ValidationError({"start": ["start is after end."]})
        step = timedelta(days=1) if period == "day" else timedelta(hours=1)
        if (end - start) // step + 1 > MAX_BUCKETS:
            raise ValidationError({"start": [f"At most {MAX_BUCKETS} buckets per request; "
                                             "narrow the range."]})
        return {"period": period, "start": start, "end": end}


def _range(request) -> dict:
    serializer = RangeInputSerializer(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class MetricInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    kind = serializers.CharField()
    periods = serializers.ListField(child=serializers.CharField())
    unit = serializers.CharField()
    dimension = serializers.CharField()


class MetricListApi(APIView):
    permission_classes = [permissions.IsAdminUser]

    @extend_schema(tags=["analytics"], responses={200: MetricInfoSerializer(many=True)})
    def get(self, request):
        return Response(MetricInfoSerializer([
            {"name": m.name, "description": m.description, "kind": m.kind,
             "periods": list(m.periods), "unit": m.unit, "dimension": m.dimension}
            for m in METRICS.values()], many=True).data)


class PointSerializer(serializers.Serializer):
    t = serializers.CharField(help_text="Bucket start: a date, or a UTC date and time.")
    value = serializers.IntegerField()


class SeriesSerializer(serializers.Serializer):
    dimension = serializers.CharField()
    points = PointSerializer(many=True)


class MetricSeriesOutputSerializer(serializers.Serializer):
    metric = serializers.CharField()
    period = serializers.CharField()
    start = serializers.CharField()
    end = serializers.CharField()
    as_of = serializers.DateTimeField(allow_null=True, help_text="When the daily values were "
                                      "last recomputed (day period).")
    series = SeriesSerializer(many=True)


_RANGE_PARAMS = [
    OpenApiParameter("period", str, enum=["hour", "day"]),
    OpenApiParameter("start", str), OpenApiParameter("end", str),
]


class MetricSeriesApi(APIView):
    permission_classes = [permissions.IsAdminUser]

    @extend_schema(tags=["analytics"], parameters=[
        *_RANGE_PARAMS, OpenApiParameter("dimension", str, description="Only this dimension "
                                         "value (e.g. currency USD).")],
        responses={200: MetricSeriesOutputSerializer})
    def get(self, request, metric: str):
        spec = METRICS.get(metric)
        if spec is None:
            raise NotFound(f"No metric {metric!r}; GET /api/analytics/metrics/ lists them.")
        r = _range(request)
        if r["period"] not in spec.periods:
            raise ValidationError({"period": [f"{metric} has periods: "
                                              f"{', '.join(spec.periods)}."]})
        series = selectors.metric_series(metric=metric, period=r["period"], start=r["start"],
                                         end=r["end"],
                                         dimension=request.query_params.get("dimension"))
        return Response(MetricSeriesOutputSerializer({
            "metric": metric, "period": r["period"], "start": selectors._label(r["start"]),
            "end": selectors._label(r["end"]),
            "as_of": selectors.daily_as_of() if r["period"] == "day" else timezone.now(),
            "series": [{"dimension": s.dimension, "points": s.points} for s in series],
        }).data)


class PerfPointSerializer(serializers.Serializer):
    t = serializers.CharField()
    samples = serializers.IntegerField()
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    mean_ms = serializers.FloatField(allow_null=True)


class PerfOutputSerializer(serializers.Serializer):
    metric = serializers.CharField()
    period = serializers.CharField()
    platform = serializers.CharField()
    app_version = serializers.CharField()
    points = PerfPointSerializer(many=True)


class PerformanceApi(APIView):
    """Exact p50/p95 (linear interpolation between closest ranks) per bucket."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(tags=["analytics"], parameters=[
        *_RANGE_PARAMS,
        OpenApiParameter("platform", str, enum=[DailyPerf.ALL, *PLATFORMS]),
        OpenApiParameter("app_version", str, description="* (default) for every version.")],
        responses={200: PerfOutputSerializer})
    def get(self, request, metric: str):
        if metric not in PERF_METRICS:
            raise NotFound(f"No performance metric {metric!r}; one of: "
                           f"{', '.join(PERF_METRICS)}.")
        r = _range(request)
        platform = request.query_params.get("platform", DailyPerf.ALL)
        if platform not in (DailyPerf.ALL, *PLATFORMS):
            raise ValidationError({"platform": [f"One of: *, {', '.join(PLATFORMS)}."]})
        version = request.query_params.get("app_version", DailyPerf.ALL)
        if len(version) > 32:
            raise ValidationError({"app_version": ["At most 32 characters."]})
        points = selectors.perf_series(metric=metric, period=r["period"], start=r["start"],
                                       end=r["end"], platform=platform, app_version=version)
        return Response(PerfOutputSerializer({
            "metric": metric, "period": r["period"], "platform": platform,
            "app_version": version, "points": points}).data)
