"""Payment providers: start a checkout for an order, verify and parse the provider's webhook.

A provider is chosen by name (`COINS_PAYMENT_PROVIDER`; the webhook URL names it too). The
`test` provider is a real HMAC-signed webhook flow with no money involved: it signs like the
large providers do (Stripe's `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`), so the
verification, replay and forgery paths are exercised exactly as they will be in production.
A real provider is added by subclassing `PaymentProvider` and listing it in `PROVIDERS`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .models import PurchaseOrder


class WebhookRejected(Exception):
    """The webhook is not authentic or not understood: answer 400, credit nothing."""


@dataclass(frozen=True)
class Checkout:
    reference: str
    # What the client needs to pay (a checkout URL, a client secret): passed through as is.
    client_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentConfirmation:
    provider: str
    event_id: str
    order_id: uuid.UUID
    outcome: Literal["succeeded", "failed"]
    amount_minor: int
    currency: str
    reference: str
    failure_reason: str = ""


class PaymentProvider(ABC):
    name: str

    @abstractmethod
    def checkout_create(self, *, order: PurchaseOrder) -> Checkout: ...

    @abstractmethod
    def webhook_verify(self, *, body: bytes, headers: Mapping[str, str]
                       ) -> PaymentConfirmation | None:
        """The confirmation in an authentic webhook, None for an authentic event that is not
        about a payment outcome; raises `WebhookRejected` for anything else."""


SIGNATURE_HEADER = "Showoff-Signature"


def _secret() -> str:
    secret = settings.COINS_PAYMENT_WEBHOOK_SECRET
    if not secret:
        raise ImproperlyConfigured(
            "COINS_PAYMENT_WEBHOOK_SECRET is not set: the payment webhook refuses every "
            "request until it is (set it to the secret shared with the payment provider)."
        )
    return secret


def test_signature(body: bytes, *, timestamp: int | None = None, secret: str | None = None
                   ) -> str:
    """The `Showoff-Signature` header value the test provider sends with `body`."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new((secret or _secret()).encode(), f"{ts}.".encode() + body, hashlib.sha256)
    return f"t={ts},v1={mac.hexdigest()}"


test_signature.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


class TestPaymentProvider(PaymentProvider):
    __test__ = False  # not a pytest test class
    name = "test"

    def checkout_create(self, *, order: PurchaseOrder) -> Checkout:
        reference = f"test_{order.pk.hex}"
        return Checkout(reference=reference, client_data={
            "provider": self.name,
            "reference": reference,
            "webhook": f"POST /api/coins/purchases/webhook/{self.name}/ with a "
                       f"{SIGNATURE_HEADER} header (coins.payments.test_signature)",
        })

    def webhook_verify(self, *, body: bytes, headers: Mapping[str, str]
                       ) -> PaymentConfirmation | None:
        secret = _secret()
        header = headers.get(SIGNATURE_HEADER, "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            ts = int(parts["t"])
            given = parts["v1"]
        except (KeyError, ValueError):
            raise WebhookRejected(f"missing or malformed {SIGNATURE_HEADER} header")
        expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            raise WebhookRejected("signature does not match")
        if abs(time.time() - ts) > settings.COINS_PAYMENT_WEBHOOK_TOLERANCE:
            raise WebhookRejected("signature timestamp is outside the allowed window")
        try:
            payload = json.loads(body)
            event_type = payload["type"]
            data = payload["data"]
            if event_type not in ("payment.succeeded", "payment.failed"):
                return None
            amount = data["amount_minor"]
            if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
                raise ValueError("amount_minor must be a non-negative integer")
            return PaymentConfirmation(
                provider=self.name,
                event_id=str(payload["id"]),
                order_id=uuid.UUID(str(data["order_id"])),
                outcome="succeeded" if event_type == "payment.succeeded" else "failed",
                amount_minor=amount,
                currency=str(data["currency"]),
                reference=str(data["reference"]),
                failure_reason=str(data.get("reason", ""))[:255],
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WebhookRejected(f"malformed payment event: {exc}")


PROVIDERS: dict[str, type[PaymentProvider]] = {"test": TestPaymentProvider}


def payment_provider(name: str | None = None) -> PaymentProvider:
    name = name or settings.COINS_PAYMENT_PROVIDER
    try:
        return PROVIDERS[name]()
    except KeyError:
        raise ImproperlyConfigured(
            f"unknown payment provider {name!r}: COINS_PAYMENT_PROVIDER must be one of "
            f"{sorted(PROVIDERS)}"
        ) from None
