"""Notifications HTTP API (thin: validate input, call one service or selector, shape output)."""

from __future__ import annotations

from django.shortcuts import render
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from showoff.drf import CursorPage, InputSerializer, object_id

from . import kinds, selectors, services
from .kinds import Channel
from .models import BulkNotification, Device, Notification


class JsonApi(APIView):
    # JSON only: every input here is JSON-shaped (nested preferences, segments), and a form
    # body can neither express it nor be parsed safely at any size.
    parser_classes = [JSONParser]


# --- in-app ---------------------------------------------------------------------------------


class NewestFirst(CursorPage):
    ordering = "-id"
    page_size = 30
    max_page_size = 100


class ActorOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    display_name = serializers.CharField()


class NotificationOutput(serializers.ModelSerializer):
    actor = ActorOutput(allow_null=True)
    read = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "kind", "title", "body", "data", "actor", "created_at", "read",
                  "read_at"]

    def get_read(self, notification: Notification) -> bool:
        return notification.read_at is not None


class InboxFilter(serializers.Serializer):
    unread = serializers.BooleanField(required=False, allow_null=True, default=None)


class NotificationListApi(JsonApi):
    pagination_class = NewestFirst

    @extend_schema(
        parameters=[
            OpenApiParameter("unread", OpenApiTypes.BOOL,
                             description="true: only unread; false: only read."),
            OpenApiParameter("cursor", OpenApiTypes.STR),
            OpenApiParameter("page_size", OpenApiTypes.INT),
        ],
        responses={200: inline_serializer("NotificationPage", {
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": NotificationOutput(many=True),
        })},
        summary="Your in-app notifications, newest first (cursor-paginated)",
    )
    def get(self, request: Request) -> Response:
        filters = InboxFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = selectors.inbox(user=request.user, unread=filters.validated_data["unread"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(NotificationOutput(page, many=True).data)


class UnreadCountApi(JsonApi):
    @extend_schema(responses={200: inline_serializer("UnreadCount", {
        "unread": serializers.IntegerField()})}, summary="How many notifications are unread")
    def get(self, request: Request) -> Response:
        return Response({"unread": selectors.unread_count(user=request.user)})


class MarkReadApi(JsonApi):
    @extend_schema(request=None, responses={200: NotificationOutput},
                   summary="Mark one notification read")
    def post(self, request: Request, notification_id: int) -> Response:
        try:
            notification = services.notification_mark_read(
                user=request.user, notification_id=object_id(notification_id, "notification"))
        except Notification.DoesNotExist:
            raise NotFound("No such notification.")
        return Response(NotificationOutput(notification).data)


class MarkAllReadInput(InputSerializer):
    up_to = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1,
                                     help_text="Only notifications with this id or older (the "
                                               "newest one shown), so a new one stays unread.")


class MarkAllReadApi(JsonApi):
    @extend_schema(request=MarkAllReadInput, responses={200: inline_serializer("MarkedRead", {
        "marked": serializers.IntegerField()})}, summary="Mark all notifications read")
    def post(self, request: Request) -> Response:
        data = MarkAllReadInput(data=request.data)
        data.is_valid(raise_exception=True)
        marked = services.notifications_mark_all_read(user=request.user,
                                                      up_to=data.validated_data.get("up_to"))
        return Response({"marked": marked})


# --- preferences ----------------------------------------------------------------------------


class QuietHoursSerializer(InputSerializer):
    start = serializers.TimeField(format="%H:%M", input_formats=["%H:%M"])
    end = serializers.TimeField(format="%H:%M", input_formats=["%H:%M"])
    timezone = serializers.CharField(max_length=64, default="UTC")


class ChoiceInput(InputSerializer):
    kind = serializers.ChoiceField(choices=sorted(kinds.KINDS))
    channel = serializers.ChoiceField(choices=Channel.CHOICES)
    enabled = serializers.BooleanField()


class KindPreferenceOutput(serializers.Serializer):
    kind = serializers.CharField()
    label = serializers.CharField()
    category = serializers.CharField()
    channels = serializers.DictField(child=serializers.BooleanField())
    defaults = serializers.DictField(child=serializers.BooleanField())


class PreferencesOutput(serializers.Serializer):
    kinds = KindPreferenceOutput(many=True)
    quiet_hours = QuietHoursSerializer(allow_null=True)
    language = serializers.CharField()


class PreferencesInput(InputSerializer):
    channels = ChoiceInput(many=True, required=False, max_length=200)
    quiet_hours = QuietHoursSerializer(required=False, allow_null=True)
    language = serializers.CharField(required=False, allow_blank=True, max_length=10)


def _preferences(user) -> dict:
    prefs = selectors.preferences_get(user_id=user.pk)
    quiet = None
    if prefs.quiet_start is not None and prefs.quiet_end is not None:
        quiet = {"start": prefs.quiet_start, "end": prefs.quiet_end,
                 "timezone": prefs.timezone}
    return {"kinds": selectors.preferences_table(user=user), "quiet_hours": quiet,
            "language": prefs.language_code}


class PreferencesApi(JsonApi):
    @extend_schema(responses={200: PreferencesOutput},
                   summary="Your notification choices per kind and channel, quiet hours")
    def get(self, request: Request) -> Response:
        return Response(PreferencesOutput(_preferences(request.user)).data)

    @extend_schema(request=PreferencesInput, responses={200: PreferencesOutput},
                   summary="Change notification choices, quiet hours or language")
    def patch(self, request: Request) -> Response:
        data = PreferencesInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        services.preferences_update(
            user=request.user,
            channels=v.get("channels"),
            quiet_hours=v.get("quiet_hours", services.UNSET),
            language=v.get("language", services.UNSET),
        )
        return Response(PreferencesOutput(_preferences(request.user)).data)


# --- devices --------------------------------------------------------------------------------


class DeviceOutput(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "platform", "token", "created_at", "last_registered_at"]


class DeviceInput(InputSerializer):
    platform = serializers.ChoiceField(choices=Device.Platform.choices)
    token = serializers.CharField(max_length=512, min_length=8, trim_whitespace=True)


class DeviceListApi(JsonApi):
    @extend_schema(responses={200: DeviceOutput(many=True)}, summary="Your push devices")
    def get(self, request: Request) -> Response:
        return Response(DeviceOutput(selectors.devices_of(user=request.user), many=True).data)

    @extend_schema(request=DeviceInput, responses={200: DeviceOutput, 201: DeviceOutput},
                   summary="Register a push token (201 new; 200 known, now yours)")
    def post(self, request: Request) -> Response:
        data = DeviceInput(data=request.data)
        data.is_valid(raise_exception=True)
        device, created = services.device_register(user=request.user, **data.validated_data)
        return Response(DeviceOutput(device).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class DeviceDetailApi(JsonApi):
    @extend_schema(responses={204: None}, summary="Unregister a push device")
    def delete(self, request: Request, device_id: int) -> Response:
        try:
            services.device_delete(user=request.user, device_id=object_id(device_id, "device"))
        except Device.DoesNotExist:
            raise NotFound("No such device.")
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- unsubscribe (link in marketing emails) ---------------------------------------------------


class UnsubscribeApi(APIView):
    """The link in marketing emails: GET shows a confirmation page (link scanners that fetch
    it change nothing), POST unsubscribes, which is also RFC 8058's one-click request sent by
    mail clients from the List-Unsubscribe header. Needs no sign-in: the token is signed."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(exclude=True)
    def get(self, request: Request, token: str):
        invalid = False
        try:
            services.signing.loads(token, salt="notifications.unsubscribe")
        except services.signing.BadSignature:
            invalid = True
        return render(request._request, "notifications/unsubscribe/page.html",
                      {"invalid": invalid}, status=400 if invalid else 200)

    @extend_schema(exclude=True)
    def post(self, request: Request, token: str):
        try:
            services.marketing_unsubscribe(token=token)
        except services.BadUnsubscribeToken:
            return render(request._request, "notifications/unsubscribe/page.html",
                          {"invalid": True}, status=400)
        return render(request._request, "notifications/unsubscribe/page.html", {"done": True})


# --- bulk (staff) ---------------------------------------------------------------------------


class SegmentInput(InputSerializer):
    all = serializers.BooleanField(required=False)
    joined_after = serializers.DateField(required=False)
    joined_before = serializers.DateField(required=False)
    phone_verified = serializers.BooleanField(required=False, allow_null=True, default=None)
    user_ids = serializers.ListField(child=serializers.IntegerField(min_value=1,
                                                                    max_value=2**63 - 1),
                                     required=False, max_length=10_000)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        out: dict = {}
        if value.get("all"):
            out["all"] = True
        for key in ("joined_after", "joined_before"):
            if value.get(key):
                out[key] = value[key].isoformat()
        if value.get("phone_verified") is not None:
            out["phone_verified"] = value["phone_verified"]
        if value.get("user_ids"):
            out["user_ids"] = value["user_ids"]
        return out


class BulkInput(InputSerializer):
    kind = serializers.ChoiceField(choices=["announcement", "marketing"], default="announcement")
    title = serializers.CharField(max_length=255)
    body = serializers.CharField(max_length=2000)
    channels = serializers.ListField(child=serializers.ChoiceField(choices=Channel.CHOICES),
                                     required=False, max_length=4)
    segment = SegmentInput()


class BulkOutput(serializers.ModelSerializer):
    class Meta:
        model = BulkNotification
        fields = ["id", "kind", "title", "body", "channels", "segment", "status",
                  "recipients_expected", "recipients_published", "batches", "created_at",
                  "started_at", "finished_at"]


class BulkListApi(JsonApi):
    permission_classes = [permissions.IsAdminUser]

    @extend_schema(responses={200: BulkOutput(many=True)}, summary="Bulk sends (staff)")
    def get(self, request: Request) -> Response:
        return Response(BulkOutput(selectors.bulk_list()[:100], many=True).data)

    @extend_schema(request=BulkInput, responses={202: BulkOutput},
                   summary="Send one notification to a segment of users (staff)")
    def post(self, request: Request) -> Response:
        data = BulkInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        bulk = services.bulk_notification_create(
            created_by=request.user, kind=v["kind"], title=v["title"], body=v["body"],
            channels=v.get("channels"), segment=v["segment"], start=True)
        return Response(BulkOutput(bulk).data, status=status.HTTP_202_ACCEPTED)


class BulkDetailApi(JsonApi):
    permission_classes = [permissions.IsAdminUser]

    @extend_schema(responses={200: BulkOutput}, summary="A bulk send's progress (staff)")
    def get(self, request: Request, bulk_id: int) -> Response:
        bulk = selectors.bulk_list().filter(pk=object_id(bulk_id, "bulk send")).first()
        if bulk is None:
            raise NotFound("No such bulk send.")
        return Response(BulkOutput(bulk).data)
