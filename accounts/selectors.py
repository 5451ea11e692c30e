"""Account reads."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import User


def user_authenticate(*, login: str, password: str) -> User | None:
    """The active user whose username (exact) or email (any case) is `login` and whose password
    is `password`; None otherwise."""
    login = login.strip()
    user = None
    if login:
        user = (User.objects.filter(username=login).first()
                or User.objects.filter(email__iexact=login).order_by("pk").first())
    if user is None:
        # Hash anyway (as Django's ModelBackend does) so the response time does not reveal
        # whether the account exists.
        User().set_password(password)
        return None
    if not user.check_password(password) or not user.is_active:
        return None
    return user


def user_public_queryset() -> QuerySet[User]:
    """Accounts anyone may see: active and not deleted."""
    return User.objects.filter(is_active=True, deleted_at__isnull=True)


def user_public_get(*, user_id: int) -> User:
    return user_public_queryset().get(pk=user_id)
