from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from media.storage import PublicMediaStorage

PHONE_VALIDATOR = RegexValidator(
    r"^\+[1-9][0-9]{7,14}$",
    "Enter the phone number in international format, for example +14155550123.",
)


def avatar_path(instance: User, filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "img"
    return f"avatars/{instance.pk}/{instance.avatar_version}.{ext}"


class User(AbstractUser):
    """The project's user from the first migration (changing AUTH_USER_MODEL later is painful).

    Username stays the login name; email is optional but unique when given, so either can be
    used to sign in. `phone` is set only by a verified one-time code (accounts.services).
    A deleted account keeps its row (ids referenced by ledgers and counts stay valid) with its
    personal data removed: see docs/api-accounts-posts.md.
    """

    email = models.EmailField("email address", unique=True, null=True, blank=True)
    display_name = models.CharField(max_length=80, blank=True)
    bio = models.TextField(max_length=500, blank=True)
    # In the media storage (local or S3, shared by every web worker), served at a stable public
    # URL (media/storage.py).
    avatar = models.ImageField(upload_to=avatar_path, storage=PublicMediaStorage(), blank=True)
    # Bumped on each upload so a new avatar gets a new URL (caches never serve the old one).
    avatar_version = models.PositiveIntegerField(default=0)
    phone = models.CharField(max_length=16, null=True, blank=True, unique=True,
                             validators=[PHONE_VALIDATOR])
    phone_verified_at = models.DateTimeField(null=True, blank=True)
    # Set when the user opened a verification (or password reset) link sent to `email`;
    # cleared when the email changes.
    email_verified_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"


class PhoneVerification(models.Model):
    """One code sent to one phone. Only an HMAC of the code is stored.

    Rows also serve as the send log that rate-limits codes per phone and per client IP.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="phone_verifications")
    phone = models.CharField(max_length=16, validators=[PHONE_VALIDATOR])
    code_hash = models.CharField(max_length=64)
    requested_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["phone", "created_at"], name="phoneverif_phone_created"),
            models.Index(fields=["requested_ip", "created_at"], name="phoneverif_ip_created"),
            models.Index(fields=["user", "created_at"], name="phoneverif_user_created"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(attempts__gte=0), name="phoneverif_attempts_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.phone} for user {self.user_id}"


class AccountToken(models.Model):
    """A single-use link token sent by email: password reset or email verification.

    Only a keyed hash (HMAC-SHA256 under a key derived from SECRET_KEY) of the token is stored,
    so a leaked table or backup gives no usable link. The token is bound to the address it was
    sent to and, for a password reset, to the password it would replace: a changed email or
    password makes it useless, whatever path changed them (API, admin, `changepassword`).
    A newer token of the same purpose supersedes older unused ones.
    """

    class Purpose(models.TextChoices):
        PASSWORD_RESET = "password_reset", "Password reset"
        EMAIL_VERIFICATION = "email_verification", "Email verification"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="account_tokens")
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    email = models.EmailField()
    # Keyed hash of the password hash at issue time (password resets only; "" otherwise).
    password_fingerprint = models.CharField(max_length=64, blank=True)
    requested_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    superseded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "purpose", "created_at"],
                         name="accounttoken_user_purpose"),
            models.Index(fields=["expires_at"], name="accounttoken_expires"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} for user {self.user_id}"
