"""Search API: `GET /api/search/?q=` (the best users and the first page of posts), and the
paged lists `GET /api/search/users/?q=` and `GET /api/search/posts/?q=`."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from accounts.apis import PublicUserSerializer
from accounts.selectors import user_public_queryset
from posts.apis import PostSerializer
from posts.selectors import post_visible_queryset
from showoff import keyset

from . import selectors

USERS_IN_OVERVIEW = 5

Q_PARAM = OpenApiParameter("q", str, required=True, description="What to look for: 1 to 100 "
                           "characters. Posts take web-search syntax: \"exact phrase\", or, "
                           "-word.")
PAGE_PARAMS = [
    Q_PARAM,
    OpenApiParameter("cursor", str, description="The `next` link's cursor (opaque)."),
    OpenApiParameter("page_size", int, description="Results per page, 1 to 100 (20)."),
]


class QueryInputSerializer(serializers.Serializer):
    q = serializers.CharField(max_length=100, trim_whitespace=True)


UserPageSerializer = keyset.page_serializer(PublicUserSerializer(), "SearchUserPage")
PostPageSerializer = keyset.page_serializer(PostSerializer(), "SearchPostPage")


class OverviewSerializer(serializers.Serializer):
    users = PublicUserSerializer(many=True, help_text=f"The {USERS_IN_OVERVIEW} best matches; "
                                 "all of them at /api/search/users/.")
    posts = PostSerializer(many=True, help_text="The first page of /api/search/posts/.")
    next = serializers.URLField(allow_null=True, help_text="The posts' next page.")


def _query(request) -> str:
    s = QueryInputSerializer(data={"q": request.query_params.get("q", "")})
    s.is_valid(raise_exception=True)
    return s.validated_data["q"]


def _in_order(queryset, hits: list[selectors.Hit]) -> list:
    by_id = {obj.pk: obj for obj in queryset.filter(pk__in=[h.id for h in hits])}
    return [by_id[h.id] for h in hits if h.id in by_id]


def _users_page(request, q: str, size: int, after=None) -> tuple[list, tuple | None]:
    hits = selectors.search_users(q=q, viewer=request.user, after=after, limit=size + 1)
    users = _in_order(user_public_queryset(), hits[:size])
    return users, ((hits[size - 1].score, hits[size - 1].id) if len(hits) > size else None)


def _posts_page(request, q: str, size: int, after=None) -> tuple[list, tuple | None]:
    hits = selectors.search_posts(q=q, viewer=request.user, after=after, limit=size + 1)
    posts = _in_order(post_visible_queryset(viewer=request.user), hits[:size])
    return posts, ((hits[size - 1].score, hits[size - 1].id) if len(hits) > size else None)


class SearchApi(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(tags=["search"], parameters=[Q_PARAM], responses={200: OverviewSerializer})
    def get(self, request):
        """The best-matching users and the first page of matching posts."""
        q = _query(request)
        users, _ = _users_page(request, q, USERS_IN_OVERVIEW)
        posts, after = _posts_page(request, q, keyset.page_size(request))
        next_url = None
        if after is not None:
            base = request.build_absolute_uri("/api/search/posts/")
            next_url = replace_query_param(
                replace_query_param(base, "q", q), keyset.CURSOR_PARAM,
                keyset.encode_cursor(after))
        context = {"request": request}
        return Response({"users": PublicUserSerializer(users, many=True, context=context).data,
                         "posts": PostSerializer(posts, many=True, context=context).data,
                         "next": next_url})


class SearchUsersApi(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(tags=["search"], parameters=PAGE_PARAMS, responses={200: UserPageSerializer})
    def get(self, request):
        """Users whose username or display name matches, best first (typos tolerated)."""
        q = _query(request)
        after = keyset.decode_cursor(request, (float, int))
        users, last = _users_page(request, q, keyset.page_size(request), after)
        return Response({"next": keyset.next_link(request, last),
                         "results": PublicUserSerializer(users, many=True).data})


class SearchPostsApi(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(tags=["search"], parameters=PAGE_PARAMS, responses={200: PostPageSerializer})
    def get(self, request):
        """Posts whose text matches, most relevant and newest first."""
        q = _query(request)
        after = keyset.decode_cursor(request, (float, int))
        posts, last = _posts_page(request, q, keyset.page_size(request), after)
        return Response({"next": keyset.next_link(request, last),
                         "results": PostSerializer(posts, many=True).data})
