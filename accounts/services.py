"""Account writes. Each service is one transaction that also writes its events (outbox).

Services raise `django.core.exceptions.ValidationError` with field messages for bad input and
`showoff.drf.RateLimited` for limits and locks; the API turns them into 400 and 429.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
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

from outbox.events.sms_events import seal
from outbox.services import publish
from showoff.drf import RateLimited

from . import selectors
from .models import PhoneVerification, User

UNSET: Any = object()


def _now_iso(now) -> str:
    return now.isoformat().replace("+00:00", "Z")


def _avatar_url(user: User) -> str | None:
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
                  display_name: str = "") -> User:
    """Register with a username, an email, or both (a username is derived from the email when
    not given); either can be used to log in."""
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
                                         "changed": {"avatar_url": _avatar_url(user)}})
        if old_name:
            storage = user.avatar.storage
            transaction.on_commit(lambda: storage.delete(old_name))
    return _avatar_url(user)


# --- account changes ----------------------------------------------------------------------


def _require_password(user: User, password: str, field: str = "password") -> None:
    if not user.check_password(password):
        raise ValidationError({field: ["Wrong password."]})


def user_email_change(*, user: User, password: str, new_email: str) -> None:
    _require_password(user, password)
    new_email = BaseUserManager.normalize_email(new_email)
    if User.objects.filter(email__iexact=new_email).exclude(pk=user.pk).exists():
        raise ValidationError({"new_email": ["Another account uses this email."]})
    old_email = user.email
    if old_email == new_email:
        return
    try:
        with transaction.atomic():
            user.email = new_email
            user.save(update_fields=["email"])
            publish("user.account_changed", {
                "user_id": user.pk, "change": "email", "old_email": old_email,
                "new_email": new_email, "changed_at": _now_iso(timezone.now()),
            })
    except IntegrityError:
        user.email = old_email
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


# --- phone verification -------------------------------------------------------------------


def _code_hash(phone: str, code: str) -> str:
    # Keyed so that a leaked table does not give the codes away by a 10^6 brute force.
    key = hashlib.sha256(b"showoff.otp:" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()


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
