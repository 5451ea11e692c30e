"""Errors a coins service raises on purpose; the API turns each into a 4xx with its `code`."""

from __future__ import annotations

from typing import Any


class CoinsError(Exception):
    code = "coins_error"
    status_code = 400

    def __init__(self, message: str, **extra: Any):
        super().__init__(message)
        self.message = message
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        # The project's error shape (showoff/drf.py): `type` is the stable code.
        return {"type": self.code, "detail": self.message, **self.extra}


class InvalidAmount(CoinsError):
    code = "invalid_amount"


class InsufficientFunds(CoinsError):
    code = "insufficient_funds"


class SelfTransfer(CoinsError):
    code = "self_transfer"


class RecipientUnavailable(CoinsError):
    code = "recipient_unavailable"


class PostNotTippable(CoinsError):
    code = "post_not_tippable"


class InvalidState(CoinsError):
    """The order or withdrawal was already decided (a duplicate or a late operator click)."""

    code = "invalid_state"
    status_code = 409


class KycRequired(CoinsError):
    code = "kyc_required"
    status_code = 403


class RewardUnavailable(CoinsError):
    code = "reward_unavailable"


class AlreadyGranted(CoinsError):
    code = "already_granted"
    status_code = 409


class PaymentMismatch(CoinsError):
    """The provider confirmed a different amount or currency than the order asked for."""

    code = "payment_mismatch"


class PayoutFailed(CoinsError):
    code = "payout_failed"
    status_code = 502
