"""Sealing secrets that travel inside events (a one-time code, a password-reset link).

Some events must carry a value that nobody reading the topic, the outbox table or a dead-letter
record may use: `sms.requested` carries a phone code, `email.requested` a single-use link. The
sender puts `seal(value)` in the event's `secret` field; only the worker that sends the message
calls `unseal()`, at send time. Fernet (AES-128-CBC + HMAC-SHA256) with SMS_SEAL_KEYS, newest
first (MultiFernet: old keys still open what they sealed while they are listed); empty: one key
derived from SECRET_KEY. The setting keeps its first name (it sealed SMS codes first).
"""

from __future__ import annotations

import base64
import hashlib

from django.conf import settings


def _fernet():
    from cryptography.fernet import Fernet, MultiFernet

    keys = list(settings.SMS_SEAL_KEYS)
    if not keys:
        digest = hashlib.sha256(b"showoff.sms-seal:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(k) for k in keys])


def seal(value: str) -> str:
    """Encrypt and authenticate `value` for a `secret` field (Fernet, SMS_SEAL_KEYS[0])."""
    return _fernet().encrypt(value.encode()).decode()


def unseal(token: str) -> str:
    """Open a `secret` sealed by `seal()` with any of SMS_SEAL_KEYS (raises InvalidToken)."""
    return _fernet().decrypt(token.encode()).decode()
