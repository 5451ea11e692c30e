"""Payout providers: send money for an approved withdrawal.

`payout_send` is called while the withdrawal row is locked and before the ledger moves; the
withdrawal's id is the provider's idempotency key, so approving again after a crash or a
timeout pays once at a provider that honours it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .errors import PayoutFailed
from .models import Withdrawal


class PayoutProvider(ABC):
    name: str

    @abstractmethod
    def payout_send(self, *, withdrawal: Withdrawal, amount: int, idempotency_key: str) -> str:
        """Pay `amount` coins' worth to `withdrawal.destination`; returns the provider's
        reference. Raises `PayoutFailed` when the provider refuses."""


class TestPayoutProvider(PayoutProvider):
    """Pays nobody. A destination starting with `fail:` is refused, to exercise that path."""

    __test__ = False
    name = "test"

    def payout_send(self, *, withdrawal: Withdrawal, amount: int, idempotency_key: str) -> str:
        if withdrawal.destination.startswith("fail:"):
            raise PayoutFailed(f"The payout provider refused {withdrawal.destination!r}.")
        return f"test_payout_{idempotency_key}"


PROVIDERS: dict[str, type[PayoutProvider]] = {"test": TestPayoutProvider}


def payout_provider(name: str | None = None) -> PayoutProvider:
    name = name or settings.COINS_PAYOUT_PROVIDER
    try:
        return PROVIDERS[name]()
    except KeyError:
        raise ImproperlyConfigured(
            f"unknown payout provider {name!r}: COINS_PAYOUT_PROVIDER must be one of "
            f"{sorted(PROVIDERS)}"
        ) from None
