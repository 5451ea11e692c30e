"""The social graph: who follows whom, who blocked whom, and reports of content for moderators.

Counts live in `SocialCounts` (one row per user, updated in the same transaction as the follow
that changes them) so that a profile never counts a celebrity's 100,000 follower rows.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Follow(models.Model):
    follower = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                 related_name="+")
    followee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                 related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # (follower, followee): "do I follow X", and the followees of a reader (feeds).
            models.UniqueConstraint(fields=["follower", "followee"], name="follow_once"),
            models.CheckConstraint(condition=~Q(follower=F("followee")),
                                   name="follow_not_self"),
        ]
        indexes = [
            # Fan-out walks an author's followers in follower-id chunks (feeds.services).
            models.Index(fields=["followee", "follower"], name="follow_by_followee"),
            # The lists, newest first (cursor on created_at, id).
            models.Index(fields=["followee", "-created_at", "-id"], name="follow_followers"),
            models.Index(fields=["follower", "-created_at", "-id"], name="follow_following"),
        ]

    def __str__(self) -> str:
        return f"{self.follower_id} follows {self.followee_id}"


class SocialCounts(models.Model):
    """A user's follower and following counts. Its row is also the lock that serialises
    follows, unfollows and blocks touching this user (taken in user-id order)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                primary_key=True, related_name="social_counts")
    followers = models.PositiveIntegerField(default=0)
    following = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "social counts"

    def __str__(self) -> str:
        return f"user {self.user_id}: {self.followers} followers, {self.following} following"


class Block(models.Model):
    """`blocker` blocked `blocked`: each side stops seeing the other (README "Social")."""

    blocker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="+")
    blocked = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="block_once"),
            models.CheckConstraint(condition=~Q(blocker=F("blocked")), name="block_not_self"),
        ]
        indexes = [
            models.Index(fields=["blocked", "blocker"], name="block_by_blocked"),
            models.Index(fields=["blocker", "-created_at", "-id"], name="block_list"),
        ]

    def __str__(self) -> str:
        return f"{self.blocker_id} blocked {self.blocked_id}"


class Report(models.Model):
    """A user's report of a post, a comment or a user, reviewed by an operator in the admin.

    One open report per reporter and target: reporting again updates nothing and says so.
    Resolving one report of a target resolves every open report of it (the decision is
    about the content, not about who reported it).
    """

    class Target(models.TextChoices):
        POST = "post", "Post"
        COMMENT = "comment", "Comment"
        USER = "user", "User"

    class Reason(models.TextChoices):
        SPAM = "spam", "Spam"
        HARASSMENT = "harassment", "Harassment or bullying"
        HATE = "hate", "Hate speech"
        VIOLENCE = "violence", "Violence or threats"
        NUDITY = "nudity", "Nudity or sexual content"
        SELF_HARM = "self_harm", "Self-harm"
        IMPERSONATION = "impersonation", "Impersonation"
        OTHER = "other", "Something else"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        HIDDEN = "hidden", "Content hidden"
        DISMISSED = "dismissed", "Dismissed"

    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                 related_name="+")
    target_type = models.CharField(max_length=10, choices=Target.choices)
    target_id = models.BigIntegerField()
    # Whose content it is (the post's or comment's author, or the reported user): lets an
    # operator see every report against one person.
    target_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                    related_name="+")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    details = models.TextField(max_length=1000, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                    null=True, blank=True, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reporter", "target_type", "target_id"],
                                    condition=Q(status="open"), name="report_open_once"),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="report_queue"),
            models.Index(fields=["target_type", "target_id"], name="report_target"),
        ]

    def __str__(self) -> str:
        return f"report {self.pk}: {self.target_type} {self.target_id} ({self.reason})"
