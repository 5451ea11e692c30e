"""Production settings: secure defaults; refuses to start without the secrets it needs."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import COINS_DEV_WEBHOOK_SECRET, LOG_FORMATS, LOGGING, env, token_link


def _required(name: str, hint: str) -> str:
    value = env(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. Production settings need it: {hint}"
        )
    return value


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = _required(
    "SECRET_KEY",
    "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(50))'` "
    "and pass it in the environment.",
)
ALLOWED_HOSTS = [
    h.strip()
    for h in _required(
        "ALLOWED_HOSTS", "a comma-separated list of the host names this API serves."
    ).split(",")
    if h.strip()
]

# Only from the environment: the development default must never sign real payments.
COINS_PAYMENT_WEBHOOK_SECRET = env("COINS_PAYMENT_WEBHOOK_SECRET", default="")
if COINS_PAYMENT_WEBHOOK_SECRET == COINS_DEV_WEBHOOK_SECRET:
    raise ImproperlyConfigured(
        "COINS_PAYMENT_WEBHOOK_SECRET is the development default; set the secret your payment "
        "provider gave you.")

# No local Prometheus to assume in production: set PROMETHEUS_URL to the one that scrapes you.
PROMETHEUS_URL = env("PROMETHEUS_URL", default="")

# The pages the account-recovery emails link to (README "Accounts"): the development default
# would send users to localhost.
ACCOUNTS_PASSWORD_RESET_URL = token_link("ACCOUNTS_PASSWORD_RESET_URL", _required(
    "ACCOUNTS_PASSWORD_RESET_URL", "the frontend page a password reset email links to, with "
    "{token} where the token goes, for example https://showoff.life/reset-password?token={token}."))
ACCOUNTS_EMAIL_VERIFICATION_URL = token_link("ACCOUNTS_EMAIL_VERIFICATION_URL", _required(
    "ACCOUNTS_EMAIL_VERIFICATION_URL", "the frontend page a verification email links to, with "
    "{token} where the token goes, for example https://showoff.life/verify-email?token={token}."))

# No other origin may call the API from a browser unless listed (https://app.example.com,...).
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Health probes come over plain HTTP from inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# One JSON object per log line, with the event id, type and trace id as fields (showoff/log.py);
# LOG_FORMAT=readable to read them by eye.
LOG_FORMAT = env("LOG_FORMAT", default="json")
if LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured(
        f"LOG_FORMAT={LOG_FORMAT!r}: choose one of {', '.join(LOG_FORMATS)}.")
LOGGING["handlers"]["console"]["formatter"] = LOG_FORMAT
