"""Feeds API: the home feed and the trending feed."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from posts.apis import PostSerializer
from showoff import keyset

from . import selectors

PAGE_PARAMS = [
    OpenApiParameter("cursor", str, description="The `next` link's cursor (opaque)."),
    OpenApiParameter("page_size", int, description="Posts per page, 1 to 100 (20)."),
]
FeedPageSerializer = keyset.page_serializer(PostSerializer(), "FeedPage")


class HomeFeedApi(APIView):
    @extend_schema(tags=["feed"], parameters=PAGE_PARAMS, responses={200: FeedPageSerializer})
    def get(self, request):
        """Posts of the people you follow, and your own, newest first."""
        size = keyset.page_size(request)
        after = keyset.decode_cursor(request, (int,))
        posts, more = selectors.home_feed(viewer=request.user, before=after[0] if after else None,
                                          limit=size)
        last = (posts[-1].pk,) if more and posts else None
        return Response({"next": keyset.next_link(request, last),
                         "results": PostSerializer(posts, many=True).data})


class TrendingFeedApi(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(tags=["feed"], parameters=PAGE_PARAMS, responses={200: FeedPageSerializer})
    def get(self, request):
        """The posts of the last 24 hours with the most engagement for their age (likes,
        comments, views, watch time; the formula is in docs/feeds.md), recomputed every
        minute."""
        size = keyset.page_size(request)
        after = keyset.decode_cursor(request, (float, int))
        ranked, more = selectors.trending(viewer=request.user, after=after, limit=size)
        last = (ranked[-1][1], ranked[-1][0].pk) if more and ranked else None
        return Response({"next": keyset.next_link(request, last),
                         "results": PostSerializer([p for p, _ in ranked], many=True).data})
