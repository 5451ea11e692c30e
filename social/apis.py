"""Social API: follow, followers and following lists, block, report. Thin views over
social.services and social.selectors."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.apis import PublicUserSerializer
from accounts.models import User
from accounts.selectors import user_public_get
from posts.apis import NewestFirst
from showoff.drf import MAX_ID, InputSerializer, object_id

from . import selectors, services
from .models import Block, Follow, Report

# The API's error shape (showoff.drf.document_error_responses adds it to the schema).
ERROR_REF = {"$ref": "#/components/schemas/Error"}

# --- serializers --------------------------------------------------------------------------


class FollowStateSerializer(serializers.Serializer):
    following = serializers.BooleanField()
    followers_count = serializers.IntegerField(help_text="The user's followers after this call.")


class FollowerSerializer(serializers.ModelSerializer):
    user = PublicUserSerializer(source="follower")
    followed_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Follow
        fields = ["user", "followed_at"]
        read_only_fields = fields


class FollowingSerializer(FollowerSerializer):
    user = PublicUserSerializer(source="followee")


class BlockStateSerializer(serializers.Serializer):
    blocked = serializers.BooleanField()


class BlockedUserSerializer(serializers.ModelSerializer):
    user = PublicUserSerializer(source="blocked")
    blocked_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Block
        fields = ["user", "blocked_at"]
        read_only_fields = fields


class ReportInputSerializer(InputSerializer):
    target_type = serializers.ChoiceField(choices=Report.Target.choices)
    target_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    reason = serializers.ChoiceField(choices=Report.Reason.choices)
    details = serializers.CharField(max_length=1000, required=False, allow_blank=True,
                                    default="")


class ReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = Report
        fields = ["id", "target_type", "target_id", "reason", "details", "status",
                  "created_at"]
        read_only_fields = fields


def _visible_user_or_404(request, user_id: int) -> User:
    """The account if the viewer may see it: active, not deleted, not in a block with them."""
    try:
        user = user_public_get(user_id=object_id(user_id, "user"))
    except User.DoesNotExist:
        raise NotFound("No such user.")
    if selectors.blocked_between(request.user, user):
        raise NotFound("No such user.")
    return user


# --- follow ---------------------------------------------------------------------------------


class FollowApi(APIView):
    """Follow (POST) or unfollow (DELETE) a user; both idempotent, both answer the state."""

    @extend_schema(tags=["social"], request=None, responses={200: FollowStateSerializer})
    def post(self, request, user_id: int):
        result = services.follow_create(follower=request.user,
                                        followee_id=object_id(user_id, "user"))
        return Response({"following": result.following,
                         "followers_count": result.followers_count})

    @extend_schema(tags=["social"], request=None, responses={200: FollowStateSerializer})
    def delete(self, request, user_id: int):
        result = services.follow_delete(follower=request.user,
                                        followee_id=object_id(user_id, "user"))
        return Response({"following": result.following,
                         "followers_count": result.followers_count})


class FollowersApi(generics.ListAPIView):
    """Who follows the user, newest follow first."""

    permission_classes = [permissions.AllowAny]
    serializer_class = FollowerSerializer
    pagination_class = NewestFirst

    def get_queryset(self):
        user = _visible_user_or_404(self.request, self.kwargs["user_id"])
        return selectors.followers_list(user_id=user.pk, viewer=self.request.user)

    @extend_schema(tags=["social"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class FollowingApi(FollowersApi):
    """Whom the user follows, newest follow first."""

    serializer_class = FollowingSerializer

    def get_queryset(self):
        user = _visible_user_or_404(self.request, self.kwargs["user_id"])
        return selectors.following_list(user_id=user.pk, viewer=self.request.user)

    @extend_schema(tags=["social"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- block ----------------------------------------------------------------------------------


class BlockApi(APIView):
    """Block (POST) or unblock (DELETE); both idempotent. Blocking removes the follows
    between you both; neither of you sees the other's profile, posts or comments, and likes,
    comments, follows, tips and notifications between you are refused."""

    @extend_schema(tags=["social"], request=None, responses={200: BlockStateSerializer})
    def post(self, request, user_id: int):
        services.block_create(blocker=request.user, blocked_id=object_id(user_id, "user"))
        return Response({"blocked": True})

    @extend_schema(tags=["social"], request=None, responses={200: BlockStateSerializer})
    def delete(self, request, user_id: int):
        services.block_delete(blocker=request.user, blocked_id=object_id(user_id, "user"))
        return Response({"blocked": False})


class BlocksApi(generics.ListAPIView):
    """The users you blocked, newest first."""

    serializer_class = BlockedUserSerializer
    pagination_class = NewestFirst

    def get_queryset(self):
        return selectors.blocks_list(blocker=self.request.user)

    @extend_schema(tags=["social"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- report ---------------------------------------------------------------------------------


class ReportApi(APIView):
    @extend_schema(tags=["social"], request=ReportInputSerializer,
                   responses={201: ReportSerializer, 200: ReportSerializer,
                              404: OpenApiResponse(ERROR_REF, description="No such post, "
                                                   "comment or user (or not one you can see).")})
    def post(self, request):
        """Report a post, a comment or a user to the moderators. 201 for a new report; 200
        with the open report when you already reported the same thing."""
        serializer = ReportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.report_create(reporter=request.user, **serializer.validated_data)
        return Response(ReportSerializer(result.report).data,
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
