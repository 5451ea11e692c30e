"""Channel backends: push and SMS providers behind one small interface each.

A backend's `send(message, *, idempotency_key)` returns the provider's message id or raises:
- `InvalidRecipient`: the address can never receive (a push token the provider reports as
  unregistered, a phone number the provider refuses): no retry; a push device is removed;
- `Rejected`: the provider refused this message for good (bad request, bad credentials that
  will not fix themselves): no retry;
- `TransientError` (or any other exception): retried with backoff; `retry_after` (seconds)
  when the provider said when to come back.

Backends are chosen by name or dotted path in NOTIFICATIONS_PUSH_BACKEND and
NOTIFICATIONS_SMS_BACKEND ("console", "memory", "fcm" / "twilio").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string


class DeliveryError(Exception):
    retry_after: float | None = None

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(DeliveryError):
    pass


class Rejected(DeliveryError):
    pass


class InvalidRecipient(Rejected):
    pass


@dataclass(frozen=True)
class PushMessage:
    token: str
    platform: str
    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SmsMessage:
    to: str
    body: str
    # Seconds the provider may keep trying before the message is useless (an OTP's expiry).
    validity_seconds: int | None = None


_ALIASES = {
    "push": {
        "console": "notifications.backends.push.ConsolePushBackend",
        "memory": "notifications.backends.push.MemoryPushBackend",
        "fcm": "notifications.backends.push.FcmPushBackend",
    },
    "sms": {
        "console": "notifications.backends.sms.ConsoleSmsBackend",
        "memory": "notifications.backends.sms.MemorySmsBackend",
        "twilio": "notifications.backends.sms.TwilioSmsBackend",
    },
}

_instances: dict[str, Any] = {}


def get_backend(channel: str):
    """The configured backend of `channel` ("push" or "sms"), one instance per class (FCM
    keeps its OAuth token between sends)."""
    name = settings.NOTIFICATIONS_PUSH_BACKEND if channel == "push" \
        else settings.NOTIFICATIONS_SMS_BACKEND
    path = _ALIASES[channel].get(name, name)
    backend = _instances.get(path)
    if backend is None:
        backend = _instances[path] = import_string(path)()
    return backend


def reset_backends() -> None:
    """Forget built backends (settings changed: tests)."""
    _instances.clear()
