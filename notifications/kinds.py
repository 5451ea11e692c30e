"""Notification kinds: what a notification is about, its channels and their defaults.

A kind's in-app/push text comes from two translatable templates,
`notifications/templates/notifications/kinds/<kind>/title.txt` and `body.txt`; its email uses
the email template named by `email_template`. `defaults` lists the channels a user may choose
for the kind, each with its default (a user's `Preference` row overrides it). Marketing is off
everywhere until the user opts in.

Which domain events create which kind is in `notifications/triggers.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _


class Channel:
    IN_APP = "in_app"
    PUSH = "push"
    EMAIL = "email"
    SMS = "sms"

    ALL = (IN_APP, PUSH, EMAIL, SMS)
    CHOICES = [(IN_APP, _("In-app")), (PUSH, _("Push")), (EMAIL, _("Email")), (SMS, _("SMS"))]


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    category: str
    defaults: dict[str, bool]
    email_template: str = "notification"
    # The `kind` of the `sms.requested` it sends (OTP never comes from here).
    sms_kind: str = "notification"

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for c in Channel.ALL if c in self.defaults)

    @property
    def is_marketing(self) -> bool:
        return self.category == "marketing"


KINDS: dict[str, Kind] = {}


def register(name: str, *, label, category: str, email_template: str = "notification",
             sms_kind: str = "notification", **defaults: bool) -> Kind:
    unknown = set(defaults) - set(Channel.ALL)
    if unknown:
        raise ValueError(f"kind {name}: unknown channel(s) {sorted(unknown)}")
    kind = Kind(name, label, category, dict(defaults), email_template, sms_kind)
    KINDS[name] = kind
    return kind


def get(name: str) -> Kind | None:
    return KINDS.get(name)


T, F = True, False
register("welcome", label=_("Welcome"), category="account", email_template="welcome",
         in_app=T, email=T)
register("post_liked", label=_("Likes on your posts"), category="social",
         in_app=T, push=T, email=F)
register("post_commented", label=_("Comments on your posts"), category="social",
         in_app=T, push=T, email=F)
register("new_follower", label=_("New followers"), category="social",
         in_app=T, push=T, email=F)
register("coins_received", label=_("Coins you receive"), category="coins",
         in_app=T, push=T, email=F)
register("tip_received", label=_("Tips on your posts"), category="coins",
         in_app=T, push=T, email=F)
register("video_ready", label=_("Your video is ready"), category="media",
         in_app=T, push=T, email=F)
register("video_failed", label=_("Your video could not be processed"), category="media",
         email_template="transactional", in_app=T, push=T, email=T)
register("withdrawal_completed", label=_("Withdrawal completed"), category="coins",
         email_template="transactional", sms_kind="alert", in_app=T, push=T, email=T, sms=F)
register("withdrawal_rejected", label=_("Withdrawal rejected"), category="coins",
         email_template="transactional", sms_kind="alert", in_app=T, push=T, email=T, sms=F)
register("announcement", label=_("Announcements"), category="announcement",
         in_app=T, push=T, email=F)
register("marketing", label=_("News and offers"), category="marketing",
         email_template="marketing", sms_kind="marketing", in_app=F, push=F, email=F, sms=F)
