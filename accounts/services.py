"""Account writes. Each service is one transaction that also writes its events (outbox).

Services raise `django.core.exceptions.ValidationError` with field messages for bad input and
`showoff.drf.RateLimited` for limits and locks; the API turns them into 400 and 429.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.base_user import BaseUserManager
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from outbox.sealing import seal
from outbox.services import publish
from showoff.drf import RateLimited

from . import selectors
from .models import AccountToken, PhoneVerification, User

UNSET: Any = object()


def _now_iso(now) -> str:
    return now.isoformat().replace("+00:00", "Z")


def avatar_url(user: User) -> str | None:
    """The avatar's stable site-relative URL (`/media/avatars/...`), or None."""
    return user.avatar.url if user.avatar else None


# --- registration, login, logout ----------------------------------------------------------


def _username_from_email(email: str) -> str:
    """A free username made from the email's local part (`ana.b@x.org` → `ana.b`, `ana.b2`)."""
    base = re.sub(r"[^\w.@+-]", "", email.split("@", 1)[0])[:140] or "user"
    candidate, n = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}{n}"
    return candidate


def user_register(*, password: str, username: str | None = None, email: str | None = None,
                  display_name: str = "", ip: str | None = None) -> User:
    """Register with a username, an email, or both (a username is derived from the email when
    not given); either can be used to log in. An email gets a verification link."""
    email = BaseUserManager.normalize_email(email) if email else None
    if not username and not email:
        raise ValidationError({"username": ["Give a username, an email address, or both."]})
    username = username or _username_from_email(email)
    errors: dict[str, list[str]] = {}
    if User.objects.filter(username__iexact=username).exists():
        errors["username"] = ["This username is taken; choose another."]
    if email and User.objects.filter(email__iexact=email).exists():
        errors["email"] = ["An account with this email already exists; sign in instead."]
    candidate = User(username=username, email=email, display_name=display_name)
    try:
        password_validation.validate_password(password, candidate)
    except ValidationError as exc:
        errors["password"] = list(exc.messages)
    if errors:
        raise ValidationError(errors)

    try:
        with transaction.atomic():
            candidate.set_password(password)
            candidate.save()
            publish("user.registered", {
                "user_id": candidate.pk,
                "username": candidate.username,
                "email": candidate.email,
                "display_name": candidate.display_name,
                "registered_at": _now_iso(candidate.date_joined),
            })
            if candidate.email:
                _email_verification_issue(user=candidate, ip=ip, now=candidate.date_joined)
    except IntegrityError:
        # Two registrations raced for the same username or email; the other one won.
        raise ValidationError({"username": ["This username or email was just taken; "
                                            "choose another."]})
    return candidate


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def _issue_tokens(user: User) -> TokenPair:
    refresh = RefreshToken.for_user(user)  # also records it as outstanding (revocable)
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


def user_login(*, login: str, password: str, ip: str | None, user_agent: str) -> tuple[
        User, TokenPair]:
    """Check the credentials (username or email), record the login and its event, issue tokens.

    Wrong credentials and inactive accounts get the same error, so the answer does not tell
    which accounts exist.
    """
    user = selectors.user_authenticate(login=login, password=password)
    if user is None:
        raise ValidationError({"non_field_errors": [
            "Wrong username/email or password, or the account is deactivated."]})
    now = timezone.now()
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(last_login=now)
        user.last_login = now
        tokens = _issue_tokens(user)
        publish("user.logged_in", {
            "user_id": user.pk,
            "ip": ip,
            "user_agent": user_agent[:1024],
            "logged_in_at": _now_iso(now),
        })
    return user, tokens


def user_revoke_all_tokens(*, user: User) -> int:
    """Blacklist every refresh token of the user; returns how many were still valid."""
    pending = OutstandingToken.objects.filter(user=user, blacklistedtoken__isnull=True,
                                              expires_at__gt=timezone.now())
    rows = [BlacklistedToken(token=t) for t in pending]
    BlacklistedToken.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


# --- profile ------------------------------------------------------------------------------


def user_profile_update(*, user: User, display_name: str = UNSET, bio: str = UNSET) -> dict:
    """Update the given fields; publishes `user.profile_updated` with only the changed ones.

    Returns the changed fields (empty: nothing changed, no event).
    """
    changed: dict[str, Any] = {}
    for field, value in (("display_name", display_name), ("bio", bio)):
        if value is not UNSET and getattr(user, field) != value:
            changed[field] = value
    if not changed:
        return {}
    with transaction.atomic():
        for field, value in changed.items():
            setattr(user, field, value)
        user.full_clean(exclude=["password", "avatar"], validate_unique=False)
        user.save(update_fields=list(changed))
        publish("user.profile_updated", {"user_id": user.pk, "changed": changed})
    return changed


AVATAR_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
AVATAR_MAX_SIDE = 4096


def _check_avatar(upload: UploadedFile) -> str:
    from PIL import Image, UnidentifiedImageError

    limit = settings.ACCOUNTS_AVATAR_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise ValidationError({"avatar": [
            f"The image is {upload.size} bytes; the limit is {limit} bytes."]})
    try:
        upload.seek(0)
        with Image.open(upload) as img:
            fmt, (w, h) = img.format, img.size
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError):
        raise ValidationError({"avatar": [
            "The file is not a readable image; upload a JPEG, PNG, WebP or GIF."]})
    finally:
        upload.seek(0)
    if fmt not in AVATAR_FORMATS:
        raise ValidationError({"avatar": [
            f"{fmt} images are not accepted; upload a JPEG, PNG, WebP or GIF."]})
    if w > AVATAR_MAX_SIDE or h > AVATAR_MAX_SIDE:
        raise ValidationError({"avatar": [
            f"The image is {w}x{h}; the largest accepted is {AVATAR_MAX_SIDE} pixels a side."]})
    return AVATAR_FORMATS[fmt]


def user_avatar_set(*, user: User, avatar: UploadedFile | None) -> str | None:
    """Replace (or with None remove) the avatar; returns the new URL."""
    ext = _check_avatar(avatar) if avatar is not None else None
    old_name = user.avatar.name if user.avatar else None
    if avatar is None and old_name is None:
        return None
    with transaction.atomic():
        if avatar is not None:
            user.avatar_version += 1
            user.avatar.save(f"avatar.{ext}", avatar, save=False)
        else:
            user.avatar = ""
        user.save(update_fields=["avatar", "avatar_version"])
        publish("user.profile_updated", {"user_id": user.pk,
                                         "changed": {"avatar_url": avatar_url(user)}})
        if old_name:
            storage = user.avatar.storage
            transaction.on_commit(lambda: storage.delete(old_name))
    return avatar_url(user)


# --- account changes ----------------------------------------------------------------------


def _require_password(user: User, password: str, field: str = "password") -> None:
    if not user.check_password(password):
        raise ValidationError({field: ["Wrong password."]})


def user_email_change(*, user: User, password: str, new_email: str,
                      ip: str | None = None) -> None:
    _require_password(user, password)
    new_email = BaseUserManager.normalize_email(new_email)
    if User.objects.filter(email__iexact=new_email).exclude(pk=user.pk).exists():
        raise ValidationError({"new_email": ["Another account uses this email."]})
    old_email = user.email
    if old_email == new_email:
        return
    old_verified_at = user.email_verified_at
    try:
        with transaction.atomic():
            now = timezone.now()
            user.email = new_email
            # The new address is unproven until its link is opened; links sent to the old
            # one stop working (a token is bound to the address it was sent to).
            user.email_verified_at = None
            user.save(update_fields=["email", "email_verified_at"])
            publish("user.account_changed", {
                "user_id": user.pk, "change": "email", "old_email": old_email,
                "new_email": new_email, "changed_at": _now_iso(now),
            })
            _email_verification_issue(user=user, ip=ip, now=now)
    except IntegrityError:
        user.email, user.email_verified_at = old_email, old_verified_at
        raise ValidationError({"new_email": ["Another account uses this email."]})


def user_password_change(*, user: User, old_password: str, new_password: str) -> TokenPair:
    """Change the password, revoke every session, and return a fresh pair for this client.

    Every access token carries a hash of the password hash (SIMPLE_JWT CHECK_REVOKE_TOKEN), so
    all of them stop working at once; every refresh token is blacklisted.
    """
    _require_password(user, old_password, "old_password")
    try:
        password_validation.validate_password(new_password, user)
    except ValidationError as exc:
        raise ValidationError({"new_password": list(exc.messages)})
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        user_revoke_all_tokens(user=user)
        tokens = _issue_tokens(user)
        publish("user.account_changed", {"user_id": user.pk, "change": "password",
                                         "changed_at": _now_iso(timezone.now())})
    return tokens


def user_deactivate(*, user: User, password: str) -> None:
    _require_password(user, password)
    with transaction.atomic():
        user.is_active = False
        user.save(update_fields=["is_active"])
        user_revoke_all_tokens(user=user)
        publish("user.account_changed", {"user_id": user.pk, "change": "deactivated",
                                         "changed_at": _now_iso(timezone.now())})


def user_deactivate_by_operator(*, user: User) -> bool:
    """An operator's deactivation (admin action, or hiding a reported user): hidden and signed
    out everywhere, as the user's own deactivation. Returns whether it changed."""
    with transaction.atomic():
        updated = User.objects.filter(pk=user.pk, is_active=True).update(is_active=False)
        if not updated:
            return False
        user.is_active = False
        user_revoke_all_tokens(user=user)
        publish("user.account_changed", {"user_id": user.pk, "change": "deactivated",
                                         "changed_at": _now_iso(timezone.now())})
    return True


def user_delete(*, user: User, password: str) -> None:
    """Delete the account: personal data removed, the row kept as an anonymous tombstone.

    Removed: names, email, phone, bio, avatar, password, phone codes (they hold IPs), the
    user's comments, follows (both ways), blocks and open reports; the user's posts are
    soft-deleted with their text cleared. Kept: the id
    (ledgers and other rows refer to it), likes and views (counts stay true; they now point at
    an anonymous id). See docs/api-accounts-posts.md.
    """
    from posts.services import posts_erase_for_deleted_user
    from social.services import social_erase_for_deleted_user

    _require_password(user, password)
    now = timezone.now()
    with transaction.atomic():
        posts_erase_for_deleted_user(user=user)
        social_erase_for_deleted_user(user=user)
        PhoneVerification.objects.filter(user=user).delete()
        AccountToken.objects.filter(user=user).delete()
        old_avatar = user.avatar.name if user.avatar else None
        user.username = f"deleted-{user.pk}"
        user.email = None
        user.first_name = user.last_name = user.display_name = user.bio = ""
        user.avatar = ""
        user.phone = None
        user.phone_verified_at = None
        user.set_unusable_password()
        user.is_active = False
        user.is_staff = user.is_superuser = False
        user.deleted_at = now
        user.save()
        user_revoke_all_tokens(user=user)
        publish("user.account_changed", {"user_id": user.pk, "change": "deleted",
                                         "changed_at": _now_iso(now)})
        if old_avatar:
            storage = user.avatar.storage
            transaction.on_commit(lambda: storage.delete(old_avatar))


# --- account recovery: password reset and email verification ------------------------------
#
# A link token is 256 random bits, sent only inside the email (sealed in its event); the
# database keeps its keyed hash. Lock order everywhere: the user row, then its token rows.

_TOKEN_EVENTS = uuid.UUID("9d1f3c52-4b8e-4c1a-9a57-1e0b8f6d2c44")
Purpose = AccountToken.Purpose
_LINK_SETTING = {Purpose.PASSWORD_RESET: "ACCOUNTS_PASSWORD_RESET_URL",
                 Purpose.EMAIL_VERIFICATION: "ACCOUNTS_EMAIL_VERIFICATION_URL"}
_TTL_SETTING = {Purpose.PASSWORD_RESET: "ACCOUNTS_PASSWORD_RESET_TTL_SECONDS",
                Purpose.EMAIL_VERIFICATION: "ACCOUNTS_EMAIL_VERIFICATION_TTL_SECONDS"}


def _token_hash(token: str) -> str:
    return _keyed_hash("account-token", token)


def _password_fingerprint(user: User) -> str:
    # Any change of the password hash (API, admin, `changepassword`) changes this.
    return _keyed_hash("password-fingerprint", user.password or "")


def normalize_recovery_email(email: str) -> str:
    """The form an address is looked up, throttled and keyed by: trimmed, lower case."""
    return email.strip().lower()


def _account_token_issue(*, user: User, purpose: str, ip: str | None, now: datetime,
                         event_id: uuid.UUID | None = None) -> AccountToken:
    """Supersede the user's unused tokens of `purpose`, store a new one, and publish the
    `email.requested` that carries its link (sealed). Call inside a transaction."""
    User.objects.select_for_update().filter(pk=user.pk).first()
    AccountToken.objects.filter(user=user, purpose=purpose, used_at__isnull=True,
                                superseded_at__isnull=True).update(superseded_at=now)
    token = secrets.token_urlsafe(32)
    ttl = getattr(settings, _TTL_SETTING[purpose])
    row = AccountToken.objects.create(
        user=user, purpose=purpose, token_hash=_token_hash(token), email=user.email,
        password_fingerprint=(_password_fingerprint(user)
                              if purpose == Purpose.PASSWORD_RESET else ""),
        requested_ip=ip, created_at=now, expires_at=now + timedelta(seconds=ttl),
    )
    link = getattr(settings, _LINK_SETTING[purpose]).replace("{token}", token)
    context: dict[str, Any] = {"email": user.email}
    if purpose == Purpose.PASSWORD_RESET:
        context["expires_in_minutes"] = max(1, ttl // 60)
    else:
        context["expires_in_hours"] = max(1, ttl // 3600)
    publish("email.requested", {
        "to": user.email,
        "user_id": user.pk,
        "template": str(purpose),
        "context": context,
        "secret": seal(link),
        "not_after": _now_iso(row.expires_at),
        "requested_at": _now_iso(now),
    }, event_id=event_id)
    return row


def password_reset_request(*, email: str, ip: str | None) -> None:
    """Ask for a password reset link for `email`, which may belong to no account.

    Writes one `email.password_reset_requested` and nothing else, the same for every address:
    the answer, the statements run and so the time taken do not depend on whether an account
    uses it. The `accounts` consumer looks it up (`password_reset_issue`)."""
    with transaction.atomic():
        publish("email.password_reset_requested", {
            "email": normalize_recovery_email(email), "ip": ip,
            "requested_at": _now_iso(timezone.now()),
        })


def password_reset_issue(*, email: str, ip: str | None, requested_at: datetime,
                         source_event_id: uuid.UUID) -> AccountToken | None:
    """Consumer side of a reset request: for the active account using `email`, issue a link
    (superseding older ones) and request its email. None when no active account uses the
    address, or the request is older than a link's lifetime (nobody waits for it any more)."""
    now = timezone.now()
    ttl = timedelta(seconds=settings.ACCOUNTS_PASSWORD_RESET_TTL_SECONDS)
    if requested_at + ttl <= now:
        return None
    user = (selectors.user_public_queryset().filter(email__iexact=email)
            .order_by("pk").first())
    if user is None:
        return None
    # Derived from the request, so even a replay past the inbox asks for the same email.
    event_id = uuid.uuid5(_TOKEN_EVENTS, f"{source_event_id}:password_reset")
    return _account_token_issue(user=user, purpose=Purpose.PASSWORD_RESET, ip=ip, now=now,
                                event_id=event_id)


def _email_verification_issue(*, user: User, ip: str | None, now: datetime) -> AccountToken:
    return _account_token_issue(user=user, purpose=Purpose.EMAIL_VERIFICATION, ip=ip, now=now)


def email_verification_request(*, user: User, ip: str | None) -> AccountToken:
    """Send (again) a verification link to the signed-in user's email address."""
    if not user.email:
        raise ValidationError({"non_field_errors": [
            "Your account has no email address; add one with POST /api/me/email/."]})
    if user.email_verified_at is not None:
        raise ValidationError({"non_field_errors": [
            "Your email address is already verified."]})
    with transaction.atomic():
        return _email_verification_issue(user=user, ip=ip, now=timezone.now())


_INVALID_LINK = "This link is not valid. Request a new one."


def _account_token_claim(*, token: str, purpose: str, now: datetime) -> tuple[AccountToken, User]:
    """The usable token row for `token` and its user, both locked; ValidationError on the
    `token` field (saying why) otherwise. Call inside a transaction."""
    found = (AccountToken.objects.filter(token_hash=_token_hash(token), purpose=purpose)
             .values_list("pk", "user_id").first())
    if found is None:
        raise ValidationError({"token": [_INVALID_LINK]})
    # User row first, then the token (the order _account_token_issue takes them in).
    user = User.objects.select_for_update().get(pk=found[1])
    row = AccountToken.objects.select_for_update().get(pk=found[0])
    if row.used_at is not None:
        raise ValidationError({"token": ["This link was already used. Request a new one if "
                                         "you still need it."]})
    if row.superseded_at is not None:
        raise ValidationError({"token": ["A newer link was sent after this one; use the "
                                         "link in the most recent email."]})
    if row.expires_at <= now:
        raise ValidationError({"token": ["This link has expired. Request a new one."]})
    if not user.is_active or user.deleted_at is not None:
        raise ValidationError({"token": [_INVALID_LINK]})
    if (user.email or "").lower() != row.email.lower():
        raise ValidationError({"token": ["This link was sent to an address the account no "
                                         "longer uses. Request a new one."]})
    if purpose == Purpose.PASSWORD_RESET and not hmac.compare_digest(
            row.password_fingerprint, _password_fingerprint(user)):
        raise ValidationError({"token": ["The password was changed after this link was "
                                         "sent, so it no longer works. Request a new one."]})
    return row, user


def user_password_reset(*, token: str, new_password: str, ip: str | None) -> User:
    """Set a new password with an emailed reset link: the link is used up, every session and
    token of the account is revoked (refresh tokens blacklisted; access tokens and admin
    sessions carry a hash of the old password hash), and the address counts as verified
    (the link proved it). A refused password leaves the link unused."""
    now = timezone.now()
    with transaction.atomic():
        row, user = _account_token_claim(token=token, purpose=Purpose.PASSWORD_RESET, now=now)
        try:
            password_validation.validate_password(new_password, user)
        except ValidationError as exc:
            raise ValidationError({"new_password": list(exc.messages)})
        user.set_password(new_password)
        fields = ["password"]
        if user.email_verified_at is None:
            user.email_verified_at = now
            fields.append("email_verified_at")
        user.save(update_fields=fields)
        row.used_at = now
        row.save(update_fields=["used_at"])
        user_revoke_all_tokens(user=user)
        publish("user.password_reset", {"user_id": user.pk, "ip": ip,
                                        "reset_at": _now_iso(now)})
        if "email_verified_at" in fields:
            publish("user.email_verified", {"user_id": user.pk, "email": user.email,
                                            "verified_at": _now_iso(now)})
    return user


def user_email_verify(*, token: str) -> User:
    """Mark the account's email verified with an emailed verification link (used up)."""
    now = timezone.now()
    with transaction.atomic():
        row, user = _account_token_claim(token=token, purpose=Purpose.EMAIL_VERIFICATION,
                                         now=now)
        row.used_at = now
        row.save(update_fields=["used_at"])
        if user.email_verified_at is None:
            user.email_verified_at = now
            user.save(update_fields=["email_verified_at"])
            publish("user.email_verified", {"user_id": user.pk, "email": user.email,
                                            "verified_at": _now_iso(now)})
    return user


def account_tokens_prune(*, now: datetime | None = None) -> int:
    """Delete tokens expired more than ACCOUNTS_TOKEN_RETENTION_HOURS ago (used or not)."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.ACCOUNTS_TOKEN_RETENTION_HOURS)
    deleted, _ = AccountToken.objects.filter(expires_at__lt=cutoff).delete()
    return deleted



# --- phone verification -------------------------------------------------------------------


def _keyed_hash(purpose: str, value: str) -> str:
    """HMAC-SHA256 of `value` under a key derived from SECRET_KEY for this purpose."""
    key = hashlib.sha256(f"showoff.{purpose}:".encode() + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _code_hash(phone: str, code: str) -> str:
    # Keyed so that a leaked table does not give the codes away by a 10^6 brute force.
    return _keyed_hash("otp", f"{phone}:{code}")


def _advisory_lock(*parts: str) -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [":".join(parts)])


def _lock_in_force(user: User, now) -> PhoneVerification | None:
    return (PhoneVerification.objects.filter(user=user, locked_until__gt=now)
            .order_by("-locked_until").first())


def _raise_locked(locked: PhoneVerification, now) -> None:
    wait = (locked.locked_until - now).total_seconds()
    raise RateLimited(
        "Too many wrong codes: phone verification is locked for this account.", wait=wait)


def phone_code_request(*, user: User, phone: str, ip: str | None) -> PhoneVerification:
    """Send a one-time code to `phone`: a hashed row plus an `sms.requested` event.

    Limits: ACCOUNTS_OTP_PER_PHONE codes per phone and ACCOUNTS_OTP_PER_IP per client IP in
    ACCOUNTS_OTP_WINDOW_SECONDS; none while the account's verification is locked.
    """
    now = timezone.now()
    window_start = now - timedelta(seconds=settings.ACCOUNTS_OTP_WINDOW_SECONDS)
    if user.phone == phone and user.phone_verified_at:
        raise ValidationError({"phone": ["This number is already verified on your account."]})
    with transaction.atomic():
        # Serialise requests per phone, then per IP (always in this order: no deadlock), so
        # concurrent requests cannot both pass a count that allows only one more.
        _advisory_lock("otp-phone", phone)
        if ip:
            _advisory_lock("otp-ip", ip)
        locked = _lock_in_force(user, now)
        if locked:
            _raise_locked(locked, now)
        if User.objects.filter(phone=phone).exclude(pk=user.pk).exists():
            raise ValidationError({"phone": ["This number is verified on another account."]})
        for field, value, limit in (("phone", phone, settings.ACCOUNTS_OTP_PER_PHONE),
                                    ("requested_ip", ip, settings.ACCOUNTS_OTP_PER_IP)):
            if value is None:
                continue
            recent = list(PhoneVerification.objects
                          .filter(**{field: value, "created_at__gte": window_start})
                          .order_by("-created_at").values_list("created_at", flat=True)[:limit])
            if len(recent) >= limit:
                wait = (recent[-1] + timedelta(seconds=settings.ACCOUNTS_OTP_WINDOW_SECONDS)
                        - now).total_seconds()
                who = "this phone number" if field == "phone" else "your network address"
                raise RateLimited(f"Too many codes were sent to {who}.", wait=max(wait, 1))
        code = f"{secrets.randbelow(10**6):06d}"
        expires_at = now + timedelta(seconds=settings.ACCOUNTS_OTP_TTL_SECONDS)
        pv = PhoneVerification.objects.create(
            user=user, phone=phone, code_hash=_code_hash(phone, code), requested_ip=ip,
            expires_at=expires_at,
        )
        publish("sms.requested", {
            "phone": phone,
            "kind": "otp",
            "user_id": user.pk,
            "body": None,
            "template": "phone_verification_code",
            "context": {"expires_in_minutes": max(1, settings.ACCOUNTS_OTP_TTL_SECONDS // 60)},
            "secret": seal(code),
            "not_after": _now_iso(expires_at),
            "requested_at": _now_iso(now),
        })
    return pv


def phone_code_verify(*, user: User, phone: str, code: str) -> User:
    """Check the latest code sent to `phone` for this user; on success set the verified phone.

    A wrong code counts an attempt (committed, even though the answer is an error); the
    ACCOUNTS_OTP_MAX_ATTEMPTS-th wrong one locks verification for ACCOUNTS_OTP_LOCK_SECONDS.
    """
    now = timezone.now()
    error: Exception | None = None
    try:
        with transaction.atomic():
            locked = _lock_in_force(user, now)
            if locked:
                _raise_locked(locked, now)
            pv = (PhoneVerification.objects.select_for_update()
                  .filter(user=user, phone=phone, verified_at__isnull=True)
                  .order_by("-created_at").first())
            if pv is None:
                raise ValidationError({"code": [
                    "No code was sent to this number; request one first."]})
            if pv.expires_at <= now:
                raise ValidationError({"code": ["This code has expired; request a new one."]})
            if hmac.compare_digest(pv.code_hash, _code_hash(phone, code)):
                if User.objects.filter(phone=phone).exclude(pk=user.pk).exists():
                    raise ValidationError({"phone": [
                        "This number is verified on another account."]})
                pv.verified_at = now
                pv.save(update_fields=["verified_at"])
                user.phone = phone
                user.phone_verified_at = now
                user.save(update_fields=["phone", "phone_verified_at"])
                publish("user.phone_verified", {"user_id": user.pk, "phone": phone,
                                                "verified_at": _now_iso(now)})
            else:
                # The attempt is committed; the error is raised after the commit.
                pv.attempts += 1
                left = settings.ACCOUNTS_OTP_MAX_ATTEMPTS - pv.attempts
                if left <= 0:
                    pv.locked_until = now + timedelta(seconds=settings.ACCOUNTS_OTP_LOCK_SECONDS)
                    error = RateLimited("Too many wrong codes: phone verification is locked "
                                        "for this account.",
                                        wait=settings.ACCOUNTS_OTP_LOCK_SECONDS)
                else:
                    error = ValidationError({"code": [
                        f"Wrong code; {left} attempt{'s' if left != 1 else ''} left."]})
                pv.save(update_fields=["attempts", "locked_until"])
    except IntegrityError:
        # Another account verified the same number at the same moment.
        raise ValidationError({"phone": ["This number is verified on another account."]})
    if error is not None:
        raise error
    return user
