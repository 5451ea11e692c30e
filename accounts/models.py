from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """The project's user from the first migration (changing AUTH_USER_MODEL later is painful).

    Username stays the login name; email is optional but unique when given, so either can be
    used to sign in.
    """

    email = models.EmailField("email address", unique=True, null=True, blank=True)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
