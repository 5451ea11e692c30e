"""Social graph reads: blocks (used by every app that shows one user's things to another),
follow lists and counts."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q, QuerySet

from .models import Block, Follow, Report, SocialCounts


def _uid(user) -> int | None:
    """A user's id, or None for an anonymous viewer (or None)."""
    if user is None:
        return None
    if isinstance(user, int):
        return user
    return user.pk if getattr(user, "is_authenticated", False) else None


def blocked_between(a, b) -> bool:
    """Whether either of the two users blocked the other (users or ids; anonymous: False)."""
    a_id, b_id = _uid(a), _uid(b)
    if a_id is None or b_id is None or a_id == b_id:
        return False
    return Block.objects.filter(Q(blocker_id=a_id, blocked_id=b_id)
                                | Q(blocker_id=b_id, blocked_id=a_id)).exists()


def blocked_pairs(pairs) -> set[frozenset[int]]:
    """Which of the (user id, user id) pairs are in a block, either way, in one query (for
    handlers deciding many notifications at once); each as `frozenset({a, b})`."""
    wanted = {frozenset((a, b)) for a, b in pairs if a is not None and b is not None and a != b}
    if not wanted:
        return set()
    ids = {i for pair in wanted for i in pair}
    found = Block.objects.filter(blocker_id__in=ids, blocked_id__in=ids).values_list(
        "blocker_id", "blocked_id")
    return {frozenset(p) for p in found} & wanted


def blocked_with(viewer, user_field: str = "pk") -> Exists | None:
    """An `Exists` for querysets: the row's user (`user_field`, an OuterRef path) and `viewer`
    are in a block, either way. None for an anonymous viewer (nothing to hide)."""
    viewer_id = _uid(viewer)
    if viewer_id is None:
        return None
    return Exists(Block.objects.filter(
        Q(blocker_id=viewer_id, blocked_id=OuterRef(user_field))
        | Q(blocker_id=OuterRef(user_field), blocked_id=viewer_id)))


def exclude_blocked(qs: QuerySet, viewer, user_field: str) -> QuerySet:
    """`qs` without the rows whose user (`user_field`) is in a block with `viewer`."""
    cond = blocked_with(viewer, user_field)
    return qs if cond is None else qs.filter(~cond)


@dataclass(frozen=True)
class Counts:
    followers: int
    following: int


def counts_get(*, user_id: int) -> Counts:
    row = SocialCounts.objects.filter(user_id=user_id).values_list("followers", "following")
    followers, following = row.first() or (0, 0)
    return Counts(followers=followers, following=following)


def is_following(*, follower, followee_id: int) -> bool:
    follower_id = _uid(follower)
    if follower_id is None:
        return False
    return Follow.objects.filter(follower_id=follower_id, followee_id=followee_id).exists()


def _active(prefix: str) -> dict:
    return {f"{prefix}__is_active": True, f"{prefix}__deleted_at__isnull": True}


def followers_list(*, user_id: int, viewer=None) -> QuerySet[Follow]:
    """Who follows `user_id`, newest follow first: active accounts only, and none that is in
    a block with the viewer."""
    qs = (Follow.objects.filter(followee_id=user_id, **_active("follower"))
          .select_related("follower").order_by("-created_at", "-id"))
    return exclude_blocked(qs, viewer, "follower_id")


def following_list(*, user_id: int, viewer=None) -> QuerySet[Follow]:
    """Whom `user_id` follows, newest follow first (same rules as `followers_list`)."""
    qs = (Follow.objects.filter(follower_id=user_id, **_active("followee"))
          .select_related("followee").order_by("-created_at", "-id"))
    return exclude_blocked(qs, viewer, "followee_id")


def blocks_list(*, blocker) -> QuerySet[Block]:
    """The users `blocker` blocked, newest first."""
    return (Block.objects.filter(blocker=blocker).select_related("blocked")
            .order_by("-created_at", "-id"))


def report_open_for(*, target_type: str, target_id: int) -> QuerySet[Report]:
    return Report.objects.filter(target_type=target_type, target_id=target_id,
                                 status=Report.Status.OPEN)
