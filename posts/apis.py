"""Posts API: thin views over posts.services and posts.selectors.

Reading is public (feeds, posts, comments); writing needs a signed-in user, and only the author
edits or deletes a post (the comment's or the post's author deletes a comment).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.apis import PublicUserSerializer
from showoff.drf import CursorPage, InputSerializer, client_ip, object_id

from . import selectors, services
from .models import Comment, Post

# --- serializers --------------------------------------------------------------------------


class PostSerializer(serializers.ModelSerializer):
    author = PublicUserSerializer(read_only=True)
    liked_by_me = serializers.BooleanField(read_only=True, default=False)

    class Meta:
        model = Post
        fields = ["id", "author", "text", "video_id", "like_count", "comment_count",
                  "view_count", "liked_by_me", "created_at", "updated_at"]
        read_only_fields = fields


class PostCreateInputSerializer(InputSerializer):
    text = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="",
                                 trim_whitespace=False)
    video_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1, allow_null=True,
                                        required=False, default=None,
                                        help_text="A video from the media app (optional).")


class PostUpdateInputSerializer(InputSerializer):
    text = serializers.CharField(max_length=2000, allow_blank=True, required=False,
                                 trim_whitespace=False)
    video_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1, allow_null=True,
                                        required=False)


class CommentSerializer(serializers.ModelSerializer):
    author = PublicUserSerializer(read_only=True)

    class Meta:
        model = Comment
        fields = ["id", "post_id", "author", "text", "created_at"]
        read_only_fields = fields


class CommentCreateInputSerializer(InputSerializer):
    text = serializers.CharField(max_length=2000)


class LikeOutputSerializer(serializers.Serializer):
    liked = serializers.BooleanField()
    like_count = serializers.IntegerField()


class ViewOutputSerializer(serializers.Serializer):
    counted = serializers.BooleanField(help_text="False when this viewer's view was already "
                                       "counted in the current window, or the viewer is the "
                                       "author.")
    view_count = serializers.IntegerField()


class NewestFirst(CursorPage):
    ordering = ("-created_at", "-id")
    page_size = 20
    max_page_size = 100


def _valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _post_or_404(request, post_id: int) -> Post:
    try:
        return selectors.post_get(post_id=object_id(post_id, "post"), viewer=request.user)
    except Post.DoesNotExist:
        raise NotFound("No such post.")


# --- posts ----------------------------------------------------------------------------------


class PostFeedApi(generics.ListAPIView):
    """Newest posts first, paged with an opaque cursor (`next` / `previous`)."""

    permission_classes = [permissions.IsAuthenticatedOrReadOnly]
    serializer_class = PostSerializer
    pagination_class = NewestFirst

    def get_queryset(self):
        return selectors.post_feed(viewer=self.request.user)

    @extend_schema(tags=["posts"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["posts"], request=PostCreateInputSerializer,
                   responses={201: PostSerializer})
    def post(self, request):
        data = _valid(PostCreateInputSerializer, request)
        post = services.post_create(author=request.user, text=data["text"],
                                    video_id=data["video_id"])
        post.liked_by_me = False  # new: nobody has liked it yet (saves a re-read)
        return Response(PostSerializer(post, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class UserPostsApi(generics.ListAPIView):
    """One user's posts, newest first."""

    permission_classes = [permissions.AllowAny]
    serializer_class = PostSerializer
    pagination_class = NewestFirst

    def get_queryset(self):
        author_id = object_id(self.kwargs["user_id"], "user")
        return selectors.post_list_by_author(author_id=author_id, viewer=self.request.user)

    @extend_schema(tags=["posts"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class PostDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticatedOrReadOnly]

    @extend_schema(tags=["posts"], responses={200: PostSerializer})
    def get(self, request, post_id: int):
        post = _post_or_404(request, post_id)
        return Response(PostSerializer(post, context={"request": request}).data)

    @extend_schema(tags=["posts"], request=PostUpdateInputSerializer,
                   responses={200: PostSerializer})
    def patch(self, request, post_id: int):
        post = _post_or_404(request, post_id)
        data = _valid(PostUpdateInputSerializer, request)
        services.post_update(post=post, actor=request.user, **data)
        return Response(PostSerializer(post, context={"request": request}).data)

    @extend_schema(tags=["posts"], responses={204: None})
    def delete(self, request, post_id: int):
        post = _post_or_404(request, post_id)
        services.post_delete(post=post, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PostLikeApi(APIView):
    """Like (POST) or unlike (DELETE); both are idempotent and answer the current state."""

    @extend_schema(tags=["likes"], request=None, responses={200: LikeOutputSerializer})
    def post(self, request, post_id: int):
        result = services.post_like(post_id=object_id(post_id, "post"), user=request.user)
        return Response({"liked": result.liked, "like_count": result.like_count})

    @extend_schema(tags=["likes"], request=None, responses={200: LikeOutputSerializer})
    def delete(self, request, post_id: int):
        result = services.post_unlike(post_id=object_id(post_id, "post"), user=request.user)
        return Response({"liked": result.liked, "like_count": result.like_count})


class PostViewApi(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(tags=["views"], request=None, responses={200: ViewOutputSerializer})
    def post(self, request, post_id: int):
        """Record a view. It counts once per viewer per post per POSTS_VIEW_WINDOW_SECONDS
        (docs/api-accounts-posts.md); the author's own views never count."""
        user = request.user if request.user.is_authenticated else None
        key = selectors.viewer_key(user=user, ip=client_ip(request),
                                   user_agent=request.META.get("HTTP_USER_AGENT", ""))
        result = services.post_view_record(post_id=object_id(post_id, "post"), viewer=user,
                                           viewer_key=key)
        return Response({"counted": result.counted, "view_count": result.view_count})


# --- comments -------------------------------------------------------------------------------


class PostCommentsApi(generics.ListAPIView):
    """A post's comments, newest first."""

    permission_classes = [permissions.IsAuthenticatedOrReadOnly]
    serializer_class = CommentSerializer
    pagination_class = NewestFirst

    def get_queryset(self):
        post = _post_or_404(self.request, self.kwargs["post_id"])
        return selectors.comment_list(post_id=post.pk, viewer=self.request.user)

    @extend_schema(tags=["comments"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(tags=["comments"], request=CommentCreateInputSerializer,
                   responses={201: CommentSerializer})
    def post(self, request, post_id: int):
        data = _valid(CommentCreateInputSerializer, request)
        comment = services.comment_create(post_id=object_id(post_id, "post"),
                                          author=request.user, text=data["text"])
        return Response(CommentSerializer(comment, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class CommentDetailApi(APIView):
    @extend_schema(tags=["comments"], responses={204: None})
    def delete(self, request, post_id: int, comment_id: int):
        """The comment's author, or the post's author, may delete it."""
        try:
            comment = selectors.comment_get(comment_id=object_id(comment_id, "comment"),
                                            post_id=object_id(post_id, "post"))
        except Comment.DoesNotExist:
            raise NotFound("No such comment.")
        services.comment_delete(comment=comment, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
