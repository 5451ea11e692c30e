"""JWT authentication with revocable access tokens.

simplejwt's refresh tokens are revoked through its blacklist (logout, rotation, password
change). An access token is short-lived and stateless; to make logout take effect at once
instead of when it expires, logout also records the access token's `jti` in the cache until
its expiry, and this class refuses such tokens.
"""

from __future__ import annotations

import time

from django.core.cache import cache
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token

_PREFIX = "accounts:revoked-access:"


def revoke_access_token(token: Token) -> None:
    jti = token.get(api_settings.JTI_CLAIM)
    remaining = int(token.get("exp", 0) - time.time()) + 1
    if jti and remaining > 0:
        cache.set(_PREFIX + jti, 1, timeout=remaining)


def is_access_token_revoked(token: Token) -> bool:
    jti = token.get(api_settings.JTI_CLAIM)
    return bool(jti) and cache.get(_PREFIX + jti) is not None


class JWTAuthentication(authentication.JWTAuthentication):
    def get_validated_token(self, raw_token: bytes) -> Token:
        token = super().get_validated_token(raw_token)
        if is_access_token_revoked(token):
            raise InvalidToken({"detail": "This token was revoked by a logout; sign in again.",
                                "code": "token_revoked"})
        return token


class JWTScheme(SimpleJWTScheme):
    """OpenAPI: the bearer scheme for our subclass (spectacular matches exact classes)."""

    target_class = "accounts.authentication.JWTAuthentication"
    name = "jwtAuth"
