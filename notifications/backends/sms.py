"""SMS backends: console (log), memory (tests) and Twilio's Programmable Messaging REST API.

Twilio (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource):
`POST {TWILIO_API_URL}/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json`, HTTP Basic auth
(account SID and auth token, or an API key SID and secret), form fields `To`, `From` or
`MessagingServiceSid`, `Body`, and `ValidityPeriod` for messages that expire (one-time codes).
The Messages API has no idempotency key; our delivery id is never reused for a second message,
and a retry happens only when no answer (or an error) came back.
"""

from __future__ import annotations

import logging
import threading
from typing import ClassVar

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import InvalidRecipient, Rejected, SmsMessage, TransientError

log = logging.getLogger("notifications.sms")


class ConsoleSmsBackend:
    """Logs each SMS (development). The body may hold a one-time code: development only."""

    def send(self, message: SmsMessage, *, idempotency_key: str) -> str:
        log.info("sms to %s: %s (key %s)", message.to, message.body, idempotency_key)
        return f"console-{idempotency_key}"


class MemorySmsBackend:
    """Keeps each SMS in `MemorySmsBackend.outbox` (tests); `failures` raise on the next sends."""

    outbox: ClassVar[list[tuple[SmsMessage, str]]] = []
    failures: ClassVar[list[Exception]] = []
    _lock = threading.Lock()

    def send(self, message: SmsMessage, *, idempotency_key: str) -> str:
        with self._lock:
            if self.failures:
                raise self.failures.pop(0)
            self.outbox.append((message, idempotency_key))
            return f"memory-sms-{len(self.outbox)}"

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls.outbox.clear()
            cls.failures.clear()


# Twilio error codes meaning the number can never receive from us.
_INVALID_NUMBER_CODES = {21211, 21214, 21217, 21407, 21408, 21610, 21612, 21614}
# ValidityPeriod bounds (seconds) accepted by Twilio.
_VALIDITY_MIN, _VALIDITY_MAX = 1, 36000


class TwilioSmsBackend:
    def __init__(self) -> None:
        self.account_sid = settings.TWILIO_ACCOUNT_SID
        username = settings.TWILIO_API_KEY_SID or self.account_sid
        password = settings.TWILIO_API_KEY_SECRET if settings.TWILIO_API_KEY_SID \
            else settings.TWILIO_AUTH_TOKEN
        if not (self.account_sid and password):
            raise ImproperlyConfigured(
                "The twilio SMS backend needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or "
                "TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET).")
        if not (settings.TWILIO_FROM_NUMBER or settings.TWILIO_MESSAGING_SERVICE_SID):
            raise ImproperlyConfigured(
                "The twilio SMS backend needs a sender: TWILIO_FROM_NUMBER or "
                "TWILIO_MESSAGING_SERVICE_SID.")
        self.url = (f"{settings.TWILIO_API_URL.rstrip('/')}/2010-04-01/Accounts/"
                    f"{self.account_sid}/Messages.json")
        self.session = requests.Session()
        self.session.auth = (username, password)
        self.timeout = settings.NOTIFICATIONS_PROVIDER_TIMEOUT_SECONDS

    def build(self, message: SmsMessage) -> dict[str, str]:
        form = {"To": message.to, "Body": message.body}
        if settings.TWILIO_MESSAGING_SERVICE_SID:
            form["MessagingServiceSid"] = settings.TWILIO_MESSAGING_SERVICE_SID
        else:
            form["From"] = settings.TWILIO_FROM_NUMBER
        if message.validity_seconds is not None:
            form["ValidityPeriod"] = str(min(_VALIDITY_MAX,
                                             max(_VALIDITY_MIN, message.validity_seconds)))
        return form

    def send(self, message: SmsMessage, *, idempotency_key: str) -> str:
        try:
            resp = self.session.post(self.url, data=self.build(message), timeout=self.timeout,
                                     headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise TransientError(f"Twilio request failed: {exc}") from None
        if resp.status_code in (200, 201):
            return resp.json().get("sid", "")
        try:
            body = resp.json()
        except ValueError:
            body = {}
        code = body.get("code")
        text = f"Twilio {resp.status_code} {code or ''}: {body.get('message', resp.text[:300])}"
        if code in _INVALID_NUMBER_CODES:
            raise InvalidRecipient(text)
        if resp.status_code == 429 or resp.status_code >= 500:
            retry_after = resp.headers.get("Retry-After")
            raise TransientError(text, retry_after=float(retry_after)
                                 if retry_after and retry_after.isdigit() else None)
        raise Rejected(text)
