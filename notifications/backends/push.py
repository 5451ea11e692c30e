"""Push backends: console (log), memory (tests) and Firebase Cloud Messaging HTTP v1.

FCM HTTP v1 (https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send):
`POST {FCM_API_URL}/v1/projects/{FCM_PROJECT_ID}/messages:send` with an OAuth 2.0 access token
obtained by the service account's signed JWT (RFC 7523, scope firebase.messaging) from its
`token_uri`. FCM has no request idempotency key; the delivery id travels as the collapse key on
every platform (Android `collapse_key`, APNs `apns-collapse-id`, Web Push `Topic`) and in the
data payload, so a repeated send replaces the first on the device instead of showing twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import jwt
import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import InvalidRecipient, PushMessage, Rejected, TransientError

log = logging.getLogger("notifications.push")

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


class ConsolePushBackend:
    """Logs each push (development)."""

    def send(self, message: PushMessage, *, idempotency_key: str) -> str:
        log.info("push to %s device %s…: %s: %s (key %s)", message.platform,
                 message.token[:12], message.title, message.body, idempotency_key)
        return f"console-{idempotency_key}"


class MemoryPushBackend:
    """Keeps each push in `MemoryPushBackend.outbox` (tests), like Django's locmem email.

    `failures` is a queue of exceptions to raise on the next sends (a provider outage);
    `invalid_tokens` are answered as unregistered."""

    outbox: ClassVar[list[tuple[PushMessage, str]]] = []
    failures: ClassVar[list[Exception]] = []
    invalid_tokens: ClassVar[set[str]] = set()
    _lock = threading.Lock()

    def send(self, message: PushMessage, *, idempotency_key: str) -> str:
        with self._lock:
            if message.token in self.invalid_tokens:
                raise InvalidRecipient("Requested entity was not found. (UNREGISTERED)")
            if self.failures:
                raise self.failures.pop(0)
            self.outbox.append((message, idempotency_key))
            return f"memory-push-{len(self.outbox)}"

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls.outbox.clear()
            cls.failures.clear()
            cls.invalid_tokens.clear()


def _service_account() -> dict[str, Any]:
    raw = settings.FCM_SERVICE_ACCOUNT_JSON
    if not raw and settings.FCM_SERVICE_ACCOUNT_FILE:
        try:
            raw = Path(settings.FCM_SERVICE_ACCOUNT_FILE).read_text()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"FCM_SERVICE_ACCOUNT_FILE {settings.FCM_SERVICE_ACCOUNT_FILE!r} cannot be "
                f"read: {exc}") from None
    if not raw:
        raise ImproperlyConfigured(
            "The fcm push backend needs a service account key: set FCM_SERVICE_ACCOUNT_FILE "
            "(path to the JSON key) or FCM_SERVICE_ACCOUNT_JSON (its content).")
    try:
        account = json.loads(raw)
        for field in ("client_email", "private_key", "token_uri"):
            if not account.get(field):
                raise ValueError(f"{field} is missing")
    except ValueError as exc:
        raise ImproperlyConfigured(f"The FCM service account key is not usable: {exc}") from None
    return account


class FcmPushBackend:
    def __init__(self) -> None:
        self.project_id = settings.FCM_PROJECT_ID
        if not self.project_id:
            raise ImproperlyConfigured("The fcm push backend needs FCM_PROJECT_ID.")
        self.account = _service_account()
        self.url = (f"{settings.FCM_API_URL.rstrip('/')}/v1/projects/{self.project_id}"
                    "/messages:send")
        self.timeout = settings.NOTIFICATIONS_PROVIDER_TIMEOUT_SECONDS
        self.session = requests.Session()
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()

    # --- OAuth 2.0 for service accounts (JWT bearer grant) --------------------------------

    def _access_token(self) -> str:
        with self._lock:
            if self._token and time.time() < self._token_expires - 60:
                return self._token
            now = int(time.time())
            assertion = jwt.encode(
                {"iss": self.account["client_email"], "scope": FCM_SCOPE,
                 "aud": self.account["token_uri"], "iat": now, "exp": now + 3600},
                self.account["private_key"], algorithm="RS256",
                headers={"kid": self.account.get("private_key_id", "")},
            )
            try:
                resp = self.session.post(self.account["token_uri"], data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": assertion,
                }, timeout=self.timeout)
            except requests.RequestException as exc:
                raise TransientError(f"FCM OAuth token request failed: {exc}") from None
            if resp.status_code >= 500 or resp.status_code == 429:
                raise TransientError(f"FCM OAuth token endpoint answered {resp.status_code}")
            if resp.status_code != 200:
                # Wrong or revoked key: retrying will not fix it.
                raise Rejected(f"FCM OAuth token refused ({resp.status_code}): "
                               f"{resp.text[:300]}")
            body = resp.json()
            self._token = body["access_token"]
            self._token_expires = time.time() + int(body.get("expires_in", 3600))
            return self._token

    # --- sending --------------------------------------------------------------------------

    def build(self, message: PushMessage, *, idempotency_key: str) -> dict[str, Any]:
        data = {k: str(v) for k, v in message.data.items()}
        data["delivery_id"] = idempotency_key
        return {
            "message": {
                "token": message.token,
                "notification": {"title": message.title, "body": message.body},
                "data": data,
                "android": {"collapse_key": idempotency_key, "priority": "high"},
                "apns": {"headers": {"apns-collapse-id": idempotency_key,
                                     "apns-priority": "10"}},
                # Web Push `Topic`: at most 32 URL-safe characters (the UUID's hex).
                "webpush": {"headers": {"Topic": idempotency_key.replace("-", "")[:32],
                                        "Urgency": "high"}},
            }
        }

    def send(self, message: PushMessage, *, idempotency_key: str) -> str:
        payload = self.build(message, idempotency_key=idempotency_key)
        token = self._access_token()
        try:
            resp = self.session.post(self.url, json=payload, timeout=self.timeout,
                                     headers={"Authorization": f"Bearer {token}"})
        except requests.RequestException as exc:
            raise TransientError(f"FCM request failed: {exc}") from None
        if resp.status_code == 200:
            return resp.json().get("name", "")
        if resp.status_code == 401:
            self.forget_token()
        raise _fcm_error(resp)

    def forget_token(self) -> None:
        self._token = None


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _fcm_error(resp: requests.Response) -> Exception:
    """Map an FCM v1 error response (google.rpc.Status with FcmError details)."""
    try:
        error = resp.json().get("error", {})
    except ValueError:
        error = {}
    codes = [d.get("errorCode") for d in error.get("details", []) if isinstance(d, dict)]
    code = next((c for c in codes if c), error.get("status", ""))
    text = f"FCM {resp.status_code} {code}: {error.get('message', resp.text[:300])}"
    if code in ("UNREGISTERED", "SENDER_ID_MISMATCH"):
        return InvalidRecipient(text)
    if code == "INVALID_ARGUMENT" and "token" in error.get("message", "").lower():
        return InvalidRecipient(text)
    if resp.status_code in (429, 500, 502, 503, 504) or code in (
            "QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"):
        return TransientError(text, retry_after=_retry_after(resp))
    if resp.status_code == 401:
        # An expired access token: fetch a new one on the retry.
        return TransientError(text)
    return Rejected(text)
