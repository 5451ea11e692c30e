"""Social graph writes: follow, unfollow, block, unblock, report and its resolution.

Each service is one transaction that writes its rows, the counts and its events. Follows,
unfollows and blocks between two users first lock both users' `SocialCounts` rows in user-id
order: two requests touching the same pair (a follow racing a block, two follows of one
celebrity) serialise there, cannot deadlock, and publish after holding the lock of the user
their event is keyed by (DESIGN.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import F, Q
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from outbox.services import publish

from .models import Block, Follow, Report, SocialCounts


def _now_iso(now=None) -> str:
    return (now or timezone.now()).isoformat().replace("+00:00", "Z")


def _visible_user(user_id: int) -> User:
    user = User.objects.filter(pk=user_id, is_active=True, deleted_at__isnull=True).first()
    if user is None:
        raise Http404("No such user.")
    return user


def _lock_counts(*user_ids: int) -> dict[int, SocialCounts]:
    """Create (if missing) and lock the count rows of the users, in id order."""
    ids = sorted(set(user_ids))
    with connection.cursor() as cur:
        cur.execute("INSERT INTO social_socialcounts (user_id, followers, following) "
                    "SELECT u, 0, 0 FROM unnest(%s::bigint[]) AS u ORDER BY u "
                    "ON CONFLICT (user_id) DO NOTHING", [ids])
    rows = SocialCounts.objects.select_for_update().filter(user_id__in=ids).order_by("user_id")
    return {row.user_id: row for row in rows}


def _block_exists(a_id: int, b_id: int) -> tuple[bool, bool]:
    """(a blocked b, b blocked a)."""
    pairs = set(Block.objects.filter(Q(blocker_id=a_id, blocked_id=b_id)
                                     | Q(blocker_id=b_id, blocked_id=a_id))
                .values_list("blocker_id", flat=True))
    return a_id in pairs, b_id in pairs


# --- follow ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FollowResult:
    following: bool
    followers_count: int
    changed: bool


def follow_create(*, follower: User, followee_id: int) -> FollowResult:
    """Follow a user. Idempotent: following again changes nothing and emits nothing.

    Refused: yourself (400), an inactive or unknown account or one that blocked you (404: a
    blocked user does not learn of the block), an account you blocked (403).
    """
    if follower.pk == followee_id:
        raise ValidationError({"user_id": ["You cannot follow yourself."]})
    _visible_user(followee_id)
    with transaction.atomic():
        counts = _lock_counts(follower.pk, followee_id)
        i_blocked, they_blocked = _block_exists(follower.pk, followee_id)
        if they_blocked:
            raise Http404("No such user.")
        if i_blocked:
            raise PermissionDenied("You blocked this user; unblock them to follow them.")
        with connection.cursor() as cur:
            cur.execute("INSERT INTO social_follow (follower_id, followee_id, created_at) "
                        "VALUES (%s, %s, now()) ON CONFLICT (follower_id, followee_id) "
                        "DO NOTHING RETURNING id", [follower.pk, followee_id])
            inserted = cur.fetchone() is not None
        theirs, mine = counts[followee_id], counts[follower.pk]
        if not inserted:
            return FollowResult(following=True, followers_count=theirs.followers, changed=False)
        theirs.followers += 1
        mine.following += 1
        SocialCounts.objects.filter(user_id=followee_id).update(followers=F("followers") + 1)
        SocialCounts.objects.filter(user_id=follower.pk).update(following=F("following") + 1)
        publish("user.followed", {
            "follower_id": follower.pk, "followee_id": followee_id,
            "followers_count": theirs.followers, "following_count": mine.following,
            "occurred_at": _now_iso(),
        })
    return FollowResult(following=True, followers_count=theirs.followers, changed=True)


def _unfollow_locked(follower_id: int, followee_id: int, counts: dict[int, SocialCounts],
                     reason: str) -> bool:
    """Inside a transaction holding both count rows: remove the follow if it exists, fix the
    counts, publish `user.unfollowed`. Returns whether a follow was removed."""
    deleted, _ = Follow.objects.filter(follower_id=follower_id, followee_id=followee_id).delete()
    if not deleted:
        return False
    theirs, mine = counts[followee_id], counts[follower_id]
    theirs.followers -= 1
    mine.following -= 1
    SocialCounts.objects.filter(user_id=followee_id).update(followers=F("followers") - 1)
    SocialCounts.objects.filter(user_id=follower_id).update(following=F("following") - 1)
    publish("user.unfollowed", {
        "follower_id": follower_id, "followee_id": followee_id,
        "followers_count": theirs.followers, "following_count": mine.following,
        "reason": reason, "occurred_at": _now_iso(),
    })
    return True


def follow_delete(*, follower: User, followee_id: int) -> FollowResult:
    """Unfollow. Idempotent: unfollowing someone you do not follow changes nothing. Works for
    any existing account (also one deactivated since), so nobody is stuck following it."""
    if not User.objects.filter(pk=followee_id).exists():
        raise Http404("No such user.")
    if follower.pk == followee_id:
        return FollowResult(following=False, followers_count=0, changed=False)
    with transaction.atomic():
        counts = _lock_counts(follower.pk, followee_id)
        changed = _unfollow_locked(follower.pk, followee_id, counts, "unfollow")
    return FollowResult(following=False, followers_count=counts[followee_id].followers,
                        changed=changed)


# --- block -----------------------------------------------------------------------------------


def block_create(*, blocker: User, blocked_id: int) -> bool:
    """Block a user: the follows between the two are removed (both ways, each with its
    `user.unfollowed`), then `user.blocked`. Idempotent; returns whether anything changed."""
    if blocker.pk == blocked_id:
        raise ValidationError({"user_id": ["You cannot block yourself."]})
    if not User.objects.filter(pk=blocked_id, deleted_at__isnull=True).exists():
        raise Http404("No such user.")
    with transaction.atomic():
        counts = _lock_counts(blocker.pk, blocked_id)
        with connection.cursor() as cur:
            cur.execute("INSERT INTO social_block (blocker_id, blocked_id, created_at) "
                        "VALUES (%s, %s, now()) ON CONFLICT (blocker_id, blocked_id) "
                        "DO NOTHING RETURNING id", [blocker.pk, blocked_id])
            inserted = cur.fetchone() is not None
        if not inserted:
            return False
        _unfollow_locked(blocker.pk, blocked_id, counts, "block")
        _unfollow_locked(blocked_id, blocker.pk, counts, "block")
        publish("user.blocked", {"blocker_id": blocker.pk, "blocked_id": blocked_id,
                                 "occurred_at": _now_iso()})
    return True


def block_delete(*, blocker: User, blocked_id: int) -> bool:
    """Lift a block (follows are not restored). Idempotent; returns whether it changed."""
    if not User.objects.filter(pk=blocked_id).exists():
        raise Http404("No such user.")
    with transaction.atomic():
        _lock_counts(blocker.pk, blocked_id)
        deleted, _ = Block.objects.filter(blocker=blocker, blocked_id=blocked_id).delete()
        if not deleted:
            return False
        publish("user.unblocked", {"blocker_id": blocker.pk, "blocked_id": blocked_id,
                                   "occurred_at": _now_iso()})
    return True


def social_erase_for_deleted_user(*, user: User) -> None:
    """For an account deletion (accounts.services.user_delete, inside its transaction): the
    user's follows both ways are removed (counts corrected, `user.unfollowed` with reason
    "account" each), and the user's blocks both ways and open reports filed by them."""
    pairs = list(Follow.objects.filter(Q(follower=user) | Q(followee=user))
                 .values_list("follower_id", "followee_id"))
    if pairs:
        counts = _lock_counts(user.pk, *{u for pair in pairs for u in pair})
        for follower_id, followee_id in pairs:
            _unfollow_locked(follower_id, followee_id, counts, "account")
    Block.objects.filter(Q(blocker=user) | Q(blocked=user)).delete()
    Report.objects.filter(reporter=user, status=Report.Status.OPEN).delete()


# --- reports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportResult:
    report: Report
    created: bool


def _report_target(target_type: str, target_id: int, reporter: User) -> int:
    """The id of the user whose content (or account) the target is; 404 when the reporter
    cannot see it, 400 for their own."""
    from posts import selectors as post_selectors
    from posts.models import Post

    if target_type == Report.Target.POST:
        try:
            owner = post_selectors.post_get(post_id=target_id, viewer=reporter).author_id
        except Post.DoesNotExist:
            raise Http404("No such post.")
    elif target_type == Report.Target.COMMENT:
        comment = post_selectors.comment_visible_get(comment_id=target_id, viewer=reporter)
        if comment is None:
            raise Http404("No such comment.")
        owner = comment.author_id
    else:
        # A user in a block with the reporter can still be reported (that is often why
        # people block): the reporter knows whom they blocked or who blocked them.
        owner = _visible_user(target_id).pk
    if owner == reporter.pk:
        raise ValidationError({"target_id": [f"You cannot report your own {target_type}."]})
    return owner


def report_create(*, reporter: User, target_type: str, target_id: int, reason: str,
                  details: str = "") -> ReportResult:
    """File a report. Reporting the same thing again while the first report is open changes
    nothing (returns the open report)."""
    owner = _report_target(target_type, target_id, reporter)
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO social_report (reporter_id, target_type, target_id, target_user_id,"
                " reason, details, status, created_at) VALUES (%s, %s, %s, %s, %s, %s, 'open',"
                " now()) ON CONFLICT (reporter_id, target_type, target_id) WHERE status = 'open'"
                " DO NOTHING RETURNING id",
                [reporter.pk, target_type, target_id, owner, reason, details.strip()])
            row = cur.fetchone()
        if row is None:
            existing = Report.objects.get(reporter=reporter, target_type=target_type,
                                          target_id=target_id, status=Report.Status.OPEN)
            return ReportResult(report=existing, created=False)
        report = Report.objects.get(pk=row[0])
        publish("report.filed", {
            "report_id": report.pk, "reporter_id": reporter.pk, "target_type": target_type,
            "target_id": target_id, "target_user_id": owner, "reason": reason,
            "occurred_at": _now_iso(report.created_at),
        })
    return ReportResult(report=report, created=True)


def report_resolve(*, report: Report, operator: User | None, hide: bool) -> int:
    """An operator's decision on a report: hide the content (a post or comment is hidden
    from everyone; a reported user's account is deactivated) or dismiss. Every open report
    of the same target is resolved with it. Returns how many reports were resolved (0: it
    was decided already)."""
    from accounts.services import user_deactivate_by_operator
    from posts.services import comment_hide, post_hide

    now = timezone.now()
    status = Report.Status.HIDDEN if hide else Report.Status.DISMISSED
    with transaction.atomic():
        open_reports = list(Report.objects.select_for_update()
                            .filter(target_type=report.target_type, target_id=report.target_id,
                                    status=Report.Status.OPEN).order_by("pk"))
        if not open_reports:
            return 0
        if hide:
            if report.target_type == Report.Target.POST:
                post_hide(post_id=report.target_id, operator=operator)
            elif report.target_type == Report.Target.COMMENT:
                comment_hide(comment_id=report.target_id, operator=operator)
            else:
                user_deactivate_by_operator(user=User.objects.get(pk=report.target_id))
        for r in open_reports:
            r.status, r.resolved_at, r.resolved_by = status, now, operator
            r.save(update_fields=["status", "resolved_at", "resolved_by"])
            publish("report.resolved", {
                "report_id": r.pk, "reporter_id": r.reporter_id, "target_type": r.target_type,
                "target_id": r.target_id, "status": status,
                "operator_id": operator.pk if operator else None, "occurred_at": _now_iso(now),
            })
    return len(open_reports)
