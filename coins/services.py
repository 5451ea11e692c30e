"""Coins services: every write of the app, each one transaction with its outbox event.

Keyword-only, typed, named `<entity>_<action>`. Each moves coins only through `coins.ledger`,
so every movement is balanced, locked in primary-key order and overdraft-checked.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from outbox.services import publish
from posts.models import Post
from social.selectors import blocked_between

from .errors import (
    AlreadyGranted,
    InvalidAmount,
    InvalidState,
    KycRequired,
    PaymentMismatch,
    PostNotTippable,
    RecipientUnavailable,
    RewardUnavailable,
    SelfTransfer,
)
from .ledger import Leg, is_coin_amount, ledger_move, ledger_post, ledger_transaction_create
from .locks import purchase_order_lock, wallets_lock, withdrawal_lock
from .models import (
    Adjustment,
    CoinPackage,
    EntryKind,
    PurchaseOrder,
    RewardGrant,
    RewardRule,
    SystemAccount,
    Transfer,
    Withdrawal,
)
from .payments import Checkout, PaymentConfirmation, payment_provider
from .payouts import payout_provider

logger = logging.getLogger(__name__)


def _check_amount(amount: Any, *, minimum: int, maximum: int | None = None) -> int:
    if not is_coin_amount(amount):
        raise InvalidAmount(f"The amount must be a whole number of coins, not {amount!r}.")
    if amount < minimum:
        raise InvalidAmount(f"The amount must be at least {minimum} coins.", minimum=minimum)
    if maximum is not None and amount > maximum:
        raise InvalidAmount(f"The amount must be at most {maximum} coins.", maximum=maximum)
    return amount


# --- purchases -------------------------------------------------------------------------------


def purchase_order_create(*, user, package: CoinPackage) -> tuple[PurchaseOrder, Checkout]:
    """A pending order for `package`; coins are credited when the provider confirms it."""
    if not package.active:
        raise InvalidState("This coin package is no longer on sale.")
    provider = payment_provider()
    with transaction.atomic():
        order = PurchaseOrder.objects.create(
            user=user, package=package, coins=package.coins, price_minor=package.price_minor,
            currency=package.currency, provider=provider.name,
        )
        checkout = provider.checkout_create(order=order)
        order.provider_reference = checkout.reference
        order.save(update_fields=["provider_reference", "updated_at"])
    return order, checkout


def purchase_confirm(*, confirmation: PaymentConfirmation) -> tuple[PurchaseOrder, str]:
    """Apply a verified provider confirmation; returns the order and what happened:
    `credited`, `already_credited`, `failed` or `already_failed`.

    Replays are harmless: the order row is locked first, and an order is credited only on its
    way to `completed` (a CHECK ties `completed` to its one ledger transaction).
    """
    with transaction.atomic():
        order = purchase_order_lock(confirmation.order_id)
        if order is None or order.provider != confirmation.provider:
            raise PaymentMismatch(f"No {confirmation.provider} order {confirmation.order_id}.")
        if order.provider_reference and order.provider_reference != confirmation.reference:
            raise PaymentMismatch("The payment reference does not match the order.")
        if order.status == PurchaseOrder.Status.COMPLETED:
            return order, "already_credited"
        if confirmation.outcome == "failed":
            if order.status == PurchaseOrder.Status.FAILED:
                return order, "already_failed"
            order.status = PurchaseOrder.Status.FAILED
            order.failure_reason = confirmation.failure_reason or "payment failed"
            order.save(update_fields=["status", "failure_reason", "updated_at"])
            return order, "failed"
        if (confirmation.amount_minor, confirmation.currency) != (order.price_minor,
                                                                  order.currency):
            logger.error("payment for order %s was %s %s, the order asks %s %s: not credited",
                         order.pk, confirmation.amount_minor, confirmation.currency,
                         order.price_minor, order.currency)
            raise PaymentMismatch(
                f"The payment was {confirmation.amount_minor} {confirmation.currency}, the "
                f"order asks {order.price_minor} {order.currency}."
            )
        # A late success after a failure (the buyer retried with another card) still pays.
        txn = ledger_move(
            kind=EntryKind.PURCHASE,
            legs=[Leg(system=SystemAccount.PURCHASES, amount=-order.coins),
                  Leg(user_id=order.user_id, amount=order.coins)],
            description=f"purchase {order.pk}",
            metadata={"order_id": str(order.pk), "package_id": order.package_id,
                      "provider": order.provider, "provider_event_id": confirmation.event_id},
        )
        order.status = PurchaseOrder.Status.COMPLETED
        order.transaction = txn
        order.failure_reason = ""
        order.completed_at = timezone.now()
        order.save(update_fields=["status", "transaction", "failure_reason", "completed_at",
                                  "updated_at"])
        publish("coins.purchased", {
            "user_id": order.user_id, "order_id": str(order.pk), "package_id": order.package_id,
            "coins": order.coins, "price_minor": order.price_minor, "currency": order.currency,
            "provider": order.provider, "transaction_id": txn.pk,
        })
    return order, "credited"


# --- transfers and tips ----------------------------------------------------------------------


def _tip_recipient(*, post_id: int, recipient) -> Any:
    """A tip goes to the author of a visible post; `recipient` may be omitted (None)."""
    post = Post.objects.visible().filter(pk=post_id).select_related("author").first()
    if post is None:
        raise PostNotTippable(f"Post {post_id} does not exist.")
    if recipient is not None and recipient.pk != post.author_id:
        raise PostNotTippable("A tip goes to the post's author; leave recipient_id out or "
                              "set it to the author.")
    return post.author


def coins_transfer(*, sender, recipient=None, amount: int, post_id: int | None = None,
                   note: str = "") -> Transfer:
    """Send `amount` coins from `sender` to `recipient`; a tip to the post's author when
    `post_id` is given (then `recipient` may be None)."""
    _check_amount(amount, minimum=settings.COINS_TRANSFER_MIN_AMOUNT,
                  maximum=settings.COINS_TRANSFER_MAX_AMOUNT)
    if post_id is not None:
        recipient = _tip_recipient(post_id=post_id, recipient=recipient)
    if recipient is None:
        raise RecipientUnavailable("Name the recipient (recipient_id) or the post to tip.")
    if sender.pk == recipient.pk:
        raise SelfTransfer("You cannot send coins to yourself.")
    if not recipient.is_active:
        raise RecipientUnavailable("This user cannot receive coins.")
    if blocked_between(sender, recipient):
        # Said as for a missing post or an inactive account: a block is never revealed.
        if post_id is not None:
            raise PostNotTippable(f"Post {post_id} does not exist.")
        raise RecipientUnavailable("This user cannot receive coins.")
    kind = EntryKind.TIP if post_id is not None else EntryKind.TRANSFER
    with transaction.atomic():
        txn = ledger_move(
            kind=kind,
            legs=[Leg(user_id=sender.pk, amount=-amount),
                  Leg(user_id=recipient.pk, amount=amount)],
            metadata={"sender_id": sender.pk, "recipient_id": recipient.pk, "post_id": post_id},
        )
        transfer = Transfer.objects.create(sender=sender, recipient=recipient, amount=amount,
                                           post_id=post_id, note=note, transaction=txn)
        publish("coins.transferred", {
            "transfer_id": transfer.pk, "sender_id": sender.pk, "recipient_id": recipient.pk,
            "amount": amount, "post_id": post_id, "kind": kind, "note": note,
            "transaction_id": txn.pk,
        })
    return transfer


# --- rewards ---------------------------------------------------------------------------------

# Rules exist from their first use with these values; operators change amounts, switch rules
# off or add rules in the admin. (Created on demand rather than by a data migration so a
# flushed test database or a fresh install behaves the same.)
DEFAULT_REWARD_RULES: dict[str, dict[str, Any]] = {
    "signup_bonus": {"name": "Welcome bonus", "amount": 100,
                     "period": RewardRule.Period.ONCE},
    "daily_login": {"name": "Daily login bonus", "amount": 10,
                    "period": RewardRule.Period.DAILY, "claimable": True},
    "first_post": {"name": "First post", "amount": 20, "period": RewardRule.Period.ONCE},
    "post_engagement": {"name": "Popular post", "amount": 5,
                        "period": RewardRule.Period.PER_OBJECT},
}


def reward_rule_get(*, code: str) -> RewardRule | None:
    rule = RewardRule.objects.filter(code=code).first()
    if rule is None and code in DEFAULT_REWARD_RULES:
        rule, _ = RewardRule.objects.get_or_create(code=code,
                                                   defaults=DEFAULT_REWARD_RULES[code])
    return rule


def reward_period_key(*, rule: RewardRule, on: dt.date | None = None,
                      object_ref: str | None = None) -> str:
    if rule.period == RewardRule.Period.ONCE:
        return "once"
    if rule.period == RewardRule.Period.DAILY:
        return (on or timezone.now().astimezone(dt.UTC).date()).isoformat()
    if not object_ref:
        raise RewardUnavailable(f"Reward {rule.code} is granted per object: name the object.")
    return object_ref[:64]


def reward_grant(*, user_id: int, rule_code: str, on: dt.date | None = None,
                 object_ref: str | None = None) -> tuple[RewardGrant, bool]:
    """Grant `rule_code` to the user for the period (`on` for daily rules, `object_ref` for
    per-object rules); returns (grant, created). A second grant for the same rule, user and
    period returns the first with created=False, even when both run at the same time.
    """
    rule = reward_rule_get(code=rule_code)
    if rule is None or not rule.active:
        raise RewardUnavailable(f"There is no active reward {rule_code!r}.")
    period_key = reward_period_key(rule=rule, on=on, object_ref=object_ref)
    with transaction.atomic():
        try:
            # The grant row is inserted before any coins move: a concurrent grant for the same
            # period waits on the unique index until this transaction ends, then fails here.
            with transaction.atomic():
                txn = ledger_transaction_create(
                    kind=EntryKind.REWARD, description=rule.name,
                    metadata={"rule": rule.code, "period_key": period_key},
                )
                grant = RewardGrant.objects.create(rule=rule, user_id=user_id,
                                                   period_key=period_key, amount=rule.amount,
                                                   transaction=txn)
        except IntegrityError as exc:
            if _constraint(exc) != "coins_reward_once_per_period":
                raise
            existing = RewardGrant.objects.get(rule=rule, user_id=user_id, period_key=period_key)
            return existing, False
        ledger_post(txn=txn, legs=[Leg(system=SystemAccount.REWARDS, amount=-rule.amount),
                                   Leg(user_id=user_id, amount=rule.amount)])
        publish("coins.rewarded", {
            "grant_id": grant.pk, "user_id": user_id, "rule": rule.code,
            "period_key": period_key, "amount": rule.amount, "transaction_id": txn.pk,
        })
    return grant, True


def reward_claim(*, user, rule_code: str) -> RewardGrant:
    """A user claims a claimable rule (the daily bonus) for the current period."""
    rule = reward_rule_get(code=rule_code)
    if rule is None or not rule.active or not rule.claimable:
        raise RewardUnavailable(f"{rule_code!r} is not a reward you can claim.")
    grant, created = reward_grant(user_id=user.pk, rule_code=rule_code)
    if not created:
        raise AlreadyGranted(f"You already claimed {rule.name} for this period.",
                             period_key=grant.period_key)
    return grant


def _constraint(exc: IntegrityError) -> str | None:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


# --- withdrawals -----------------------------------------------------------------------------


def withdrawal_request(*, user, amount: int, destination: str) -> Withdrawal:
    """Hold `amount` coins for a payout to `destination` until an operator decides."""
    _check_amount(amount, minimum=settings.COINS_WITHDRAWAL_MIN_AMOUNT)
    destination = (destination or "").strip()
    if not destination:
        raise InvalidAmount("Say where the payout goes (destination).")
    fee = amount * settings.COINS_WITHDRAWAL_FEE_BPS // 10_000
    with transaction.atomic():
        if settings.COINS_WITHDRAWAL_REQUIRE_KYC:
            # Lock every wallet the movement below needs, in one pk-ordered call: locking the
            # user's wallet alone first and the held account later could invert the order.
            wallets = wallets_lock(user_ids=[user.pk],
                                   system_codes=[SystemAccount.WITHDRAWALS_HELD])
            wallet = next(w for w in wallets if w.user_id == user.pk)
            if wallet.kyc_verified_at is None:
                raise KycRequired("Withdrawals need a verified identity; contact support to "
                                  "verify yours.")
        txn = ledger_move(
            kind=EntryKind.WITHDRAWAL,
            legs=[Leg(user_id=user.pk, amount=-amount),
                  Leg(system=SystemAccount.WITHDRAWALS_HELD, amount=amount)],
            metadata={"destination": destination, "fee": fee},
        )
        withdrawal = Withdrawal.objects.create(user=user, amount=amount, fee=fee,
                                               destination=destination, hold_transaction=txn)
        publish("coins.withdrawal_requested", {
            "withdrawal_id": withdrawal.pk, "user_id": user.pk, "amount": amount, "fee": fee,
            "transaction_id": txn.pk,
        })
    return withdrawal


def withdrawal_approve(*, withdrawal_id: int, operator) -> Withdrawal:
    """Pay the withdrawal out and move the held coins to payouts (and fees)."""
    with transaction.atomic():
        withdrawal = withdrawal_lock(withdrawal_id)
        if withdrawal is None:
            raise InvalidState(f"No withdrawal {withdrawal_id}.")
        if withdrawal.status != Withdrawal.Status.PENDING:
            raise InvalidState(f"Withdrawal {withdrawal.pk} is already {withdrawal.status}.")
        # The payout moves system coins only, but its event is keyed by the user: take the
        # user's wallet lock too (with the movement's wallets, in pk order, coins/locks.py)
        # before publishing. Inside a relay tick Kafka order is publish order (DESIGN.md §3),
        # so this event and the user's own movements keep their commit order only if every
        # writer of the key serialises on that wallet before it publishes.
        wallets_lock(user_ids=[withdrawal.user_id],
                     system_codes=[SystemAccount.WITHDRAWALS_HELD, SystemAccount.PAYOUTS,
                                   *([SystemAccount.FEES] if withdrawal.fee else [])])
        payout = withdrawal.amount - withdrawal.fee
        reference = payout_provider().payout_send(
            withdrawal=withdrawal, amount=payout, idempotency_key=f"withdrawal-{withdrawal.pk}"
        )
        legs = [Leg(system=SystemAccount.WITHDRAWALS_HELD, amount=-withdrawal.amount),
                Leg(system=SystemAccount.PAYOUTS, amount=payout)]
        if withdrawal.fee:
            legs.append(Leg(system=SystemAccount.FEES, amount=withdrawal.fee))
        txn = ledger_move(kind=EntryKind.WITHDRAWAL_PAYOUT, legs=legs,
                          metadata={"withdrawal_id": withdrawal.pk, "user_id": withdrawal.user_id,
                                    "payout_reference": reference},
                          created_by_id=operator.pk)
        withdrawal.status = Withdrawal.Status.COMPLETED
        withdrawal.payout_reference = reference
        withdrawal.reviewed_by = operator
        withdrawal.reviewed_at = timezone.now()
        withdrawal.settle_transaction = txn
        withdrawal.save()
        publish("coins.withdrawal_completed", {
            "withdrawal_id": withdrawal.pk, "user_id": withdrawal.user_id,
            "amount": withdrawal.amount, "fee": withdrawal.fee, "payout_reference": reference,
            "reviewed_by": operator.pk, "transaction_id": txn.pk,
        })
    return withdrawal


def withdrawal_reject(*, withdrawal_id: int, operator, reason: str) -> Withdrawal:
    """Return the held coins to the user."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidAmount("Give the reason for the rejection; the user sees it.")
    with transaction.atomic():
        withdrawal = withdrawal_lock(withdrawal_id)
        if withdrawal is None:
            raise InvalidState(f"No withdrawal {withdrawal_id}.")
        if withdrawal.status != Withdrawal.Status.PENDING:
            raise InvalidState(f"Withdrawal {withdrawal.pk} is already {withdrawal.status}.")
        txn = ledger_move(
            kind=EntryKind.WITHDRAWAL_RETURN,
            legs=[Leg(system=SystemAccount.WITHDRAWALS_HELD, amount=-withdrawal.amount),
                  Leg(user_id=withdrawal.user_id, amount=withdrawal.amount)],
            metadata={"withdrawal_id": withdrawal.pk, "reason": reason},
            created_by_id=operator.pk,
        )
        withdrawal.status = Withdrawal.Status.REJECTED
        withdrawal.rejection_reason = reason
        withdrawal.reviewed_by = operator
        withdrawal.reviewed_at = timezone.now()
        withdrawal.settle_transaction = txn
        withdrawal.save()
        publish("coins.withdrawal_rejected", {
            "withdrawal_id": withdrawal.pk, "user_id": withdrawal.user_id,
            "amount": withdrawal.amount, "reason": reason, "reviewed_by": operator.pk,
            "transaction_id": txn.pk,
        })
    return withdrawal


# --- operators -------------------------------------------------------------------------------


def wallet_adjust(*, user, amount: int, reason: str, operator) -> Adjustment:
    """An operator's manual credit (amount > 0) or debit (< 0), balanced against the
    adjustments account, with the reason and the operator recorded."""
    if not is_coin_amount(amount) or amount == 0:
        raise InvalidAmount("An adjustment is a non-zero whole number of coins.")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidAmount("An adjustment needs a reason.")
    with transaction.atomic():
        txn = ledger_move(
            kind=EntryKind.ADJUSTMENT,
            legs=[Leg(system=SystemAccount.ADJUSTMENTS, amount=-amount),
                  Leg(user_id=user.pk, amount=amount)],
            description=reason[:255],
            metadata={"reason": reason, "operator_id": operator.pk},
            created_by_id=operator.pk,
        )
        adjustment = Adjustment.objects.create(user=user, amount=amount, reason=reason,
                                               operator=operator, transaction=txn)
        publish("coins.adjusted", {
            "adjustment_id": adjustment.pk, "user_id": user.pk, "amount": amount,
            "reason": reason, "operator_id": operator.pk, "transaction_id": txn.pk,
        })
    return adjustment


def wallet_kyc_verify(*, user, operator) -> None:
    with transaction.atomic():
        wallet = wallets_lock(user_ids=[user.pk])[0]
        if wallet.kyc_verified_at is None:
            wallet.kyc_verified_at = timezone.now()
            wallet.save(update_fields=["kyc_verified_at", "updated_at"])
            logger.info("operator %s verified the identity of user %s", operator.pk, user.pk)
