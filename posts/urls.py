from __future__ import annotations

from django.urls import path

from . import apis

urlpatterns = [
    path("posts/", apis.PostFeedApi.as_view(), name="post-feed"),
    path("posts/<int:post_id>/", apis.PostDetailApi.as_view(), name="post-detail"),
    path("posts/<int:post_id>/like/", apis.PostLikeApi.as_view(), name="post-like"),
    path("posts/<int:post_id>/views/", apis.PostViewApi.as_view(), name="post-views"),
    path("posts/<int:post_id>/comments/", apis.PostCommentsApi.as_view(), name="post-comments"),
    path("posts/<int:post_id>/comments/<int:comment_id>/", apis.CommentDetailApi.as_view(),
         name="comment-detail"),
    path("users/<int:user_id>/posts/", apis.UserPostsApi.as_view(), name="user-posts"),
]
