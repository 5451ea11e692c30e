"""Coins: wallets, a double-entry ledger, and the domain rows that move coins.

Money model:
- Every wallet is an account of the ledger: one per user, plus system accounts (`SystemAccount`)
  that are the other side of every movement that enters or leaves user hands.
- A movement is one `LedgerTransaction` with two or more `Entry` rows whose amounts sum to zero
  (a deferred constraint trigger checks it at commit); entries and transactions are immutable
  (a trigger rejects UPDATE and DELETE). So the sum of all wallet balances is always zero.
- `Wallet.balance` caches the sum of the wallet's entries; it is updated in the same transaction
  as the entries, with the wallet row locked. A CHECK keeps user balances >= 0; system accounts
  go negative by design (coins issued against money received, for example).
- Amounts are whole coins in 64-bit integers: no floats anywhere.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class SystemAccount(models.TextChoices):
    PURCHASES = "purchases", "Purchases (coins issued for payments)"
    REWARDS = "rewards", "Rewards (coins granted by rules)"
    WITHDRAWALS_HELD = "withdrawals_held", "Withdrawals in flight (held)"
    PAYOUTS = "payouts", "Payouts (coins redeemed for money)"
    FEES = "fees", "Fees"
    ADJUSTMENTS = "adjustments", "Manual adjustments"


class Wallet(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
        related_name="coin_wallet",
    )
    system_code = models.CharField(
        max_length=32, choices=SystemAccount.choices, null=True, blank=True, unique=True
    )
    balance = models.BigIntegerField(default=0)
    # Withdrawals may require a verified identity (COINS_WITHDRAWAL_REQUIRE_KYC); an operator
    # records the verification in the admin.
    kyc_verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "coins_wallet"
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False, system_code__isnull=True)
                           | Q(user__isnull=True, system_code__isnull=False)),
                name="coins_wallet_user_xor_system",
            ),
            # The last line of defence against overdrafts: services check first and give a
            # clear error, but a bug or a race that slips past them fails here instead of
            # creating money.
            models.CheckConstraint(
                condition=Q(user__isnull=True) | Q(balance__gte=0),
                name="coins_wallet_user_balance_non_negative",
            ),
        ]

    def __str__(self) -> str:
        owner = f"system:{self.system_code}" if self.system_code else f"user:{self.user_id}"
        return f"wallet {self.pk} ({owner}) balance {self.balance}"

    @property
    def is_system(self) -> bool:
        return self.system_code is not None


class EntryKind(models.TextChoices):
    PURCHASE = "purchase", "Purchase"
    TRANSFER = "transfer", "Transfer"
    TIP = "tip", "Tip"
    REWARD = "reward", "Reward"
    WITHDRAWAL = "withdrawal", "Withdrawal (held)"
    WITHDRAWAL_PAYOUT = "withdrawal_payout", "Withdrawal paid out"
    WITHDRAWAL_RETURN = "withdrawal_return", "Withdrawal returned"
    ADJUSTMENT = "adjustment", "Adjustment"


class LedgerTransaction(models.Model):
    """One balanced movement. Immutable."""

    kind = models.CharField(max_length=32, choices=EntryKind.choices)
    description = models.CharField(max_length=255, blank=True)
    # Who and what: ids of the domain rows involved, so history needs no joins.
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "coins_transaction"

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class Entry(models.Model):
    """One leg of a ledger transaction: `amount` > 0 credits the wallet, < 0 debits it."""

    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="entries"
    )
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    amount = models.BigIntegerField()
    # The wallet's balance right after this entry (the wallet was locked while writing it).
    balance_after = models.BigIntegerField()
    # Copied from the transaction so a wallet's history filters by kind on one index.
    kind = models.CharField(max_length=32, choices=EntryKind.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "coins_entry"
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="coins_entry_amount_non_zero"),
        ]
        indexes = [
            models.Index(F("wallet"), F("id").desc(), name="coins_entry_wallet_id"),
            models.Index(F("wallet"), F("kind"), F("id").desc(), name="coins_entry_wallet_kind"),
        ]

    def __str__(self) -> str:
        return f"entry {self.pk}: wallet {self.wallet_id} {self.amount:+d}"


# --- purchases -------------------------------------------------------------------------------


class CoinPackage(models.Model):
    name = models.CharField(max_length=100)
    coins = models.PositiveIntegerField()
    # In the currency's minor unit (cents for USD/EUR): integers, like the payment providers.
    price_minor = models.PositiveIntegerField(help_text="Price in minor units (e.g. cents).")
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217, e.g. USD.")
    active = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "coins_package"
        ordering = ["sort_order", "coins"]
        constraints = [
            models.CheckConstraint(condition=Q(coins__gt=0), name="coins_package_coins_positive"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"),
                                   name="coins_package_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.coins} coins, {self.price_minor} {self.currency})"


class PurchaseOrder(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending payment"
        COMPLETED = "completed", "Completed (credited)"
        FAILED = "failed", "Payment failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="coin_orders")
    package = models.ForeignKey(CoinPackage, null=True, on_delete=models.PROTECT,
                                related_name="orders")
    # Snapshot of the package at order time: an admin edit never changes an open order.
    coins = models.PositiveIntegerField()
    price_minor = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    provider = models.CharField(max_length=32)
    # NULL until the provider answers; unique with `provider` (NULLs never collide).
    provider_reference = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.CharField(max_length=255, blank=True)
    transaction = models.OneToOneField(LedgerTransaction, null=True, blank=True,
                                       on_delete=models.PROTECT, related_name="purchase_order")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "coins_purchase_order"
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_reference"],
                                    name="coins_purchase_provider_reference"),
            # Credited exactly when completed.
            models.CheckConstraint(
                condition=(Q(status="completed", transaction__isnull=False)
                           | (~Q(status="completed") & Q(transaction__isnull=True))),
                name="coins_purchase_completed_has_transaction",
            ),
        ]
        indexes = [models.Index(fields=["user", "-created_at"], name="coins_purchase_user")]

    def __str__(self) -> str:
        return f"order {self.pk} ({self.status})"


# --- transfers and tips ----------------------------------------------------------------------


class Transfer(models.Model):
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                               related_name="coin_transfers_sent")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                  related_name="coin_transfers_received")
    amount = models.PositiveBigIntegerField()
    # A tip when set: the recipient is the post's author. Posts are soft-deleted, so PROTECT
    # never stands in the way of hiding a post.
    post = models.ForeignKey("posts.Post", null=True, blank=True, on_delete=models.PROTECT,
                             related_name="tips")
    note = models.CharField(max_length=140, blank=True)
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT,
                                       related_name="transfer")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "coins_transfer"
        constraints = [
            models.CheckConstraint(condition=~Q(sender=F("recipient")),
                                   name="coins_transfer_not_to_self"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="coins_transfer_positive"),
        ]

    def __str__(self) -> str:
        return f"transfer {self.pk}: {self.sender_id} -> {self.recipient_id} {self.amount}"

    @property
    def kind(self) -> str:
        return EntryKind.TIP if self.post_id else EntryKind.TRANSFER


# --- rewards ---------------------------------------------------------------------------------


class RewardRule(models.Model):
    class Period(models.TextChoices):
        ONCE = "once", "Once per user"
        DAILY = "daily", "Once per user per day (UTC)"
        PER_OBJECT = "per_object", "Once per user per object (e.g. per post)"

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    amount = models.PositiveIntegerField()
    period = models.CharField(max_length=16, choices=Period.choices)
    active = models.BooleanField(default=True)
    # Users may claim it themselves through the API (the daily bonus button).
    claimable = models.BooleanField(default=False)
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        db_table = "coins_reward_rule"
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="coins_reward_rule_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.amount} coins, {self.period})"


class RewardGrant(models.Model):
    rule = models.ForeignKey(RewardRule, on_delete=models.PROTECT, related_name="grants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="coin_rewards")
    # "once", a UTC date ("2025-01-31") or an object reference ("post:42").
    period_key = models.CharField(max_length=64)
    amount = models.PositiveIntegerField()
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT,
                                       related_name="reward_grant")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "coins_reward_grant"
        constraints = [
            # "At most once per rule and period" holds under retries and concurrent requests
            # because the database, not a read-then-write check, refuses the second grant.
            models.UniqueConstraint(fields=["rule", "user", "period_key"],
                                    name="coins_reward_once_per_period"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.user_id}/{self.period_key}"


# --- withdrawals -----------------------------------------------------------------------------


class Withdrawal(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending review"
        COMPLETED = "completed", "Paid out"
        REJECTED = "rejected", "Rejected (coins returned)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="coin_withdrawals")
    amount = models.PositiveBigIntegerField()
    # Fixed at request time from COINS_WITHDRAWAL_FEE_BPS; kept by the fees account on payout.
    fee = models.PositiveBigIntegerField(default=0)
    destination = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    payout_reference = models.CharField(max_length=255, blank=True)
    rejection_reason = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    hold_transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT,
                                            related_name="withdrawal_hold")
    settle_transaction = models.OneToOneField(LedgerTransaction, null=True, blank=True,
                                              on_delete=models.PROTECT,
                                              related_name="withdrawal_settle")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "coins_withdrawal"
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0) & Q(fee__lt=F("amount")),
                                   name="coins_withdrawal_amount_fee"),
            models.CheckConstraint(
                condition=(Q(status="pending", settle_transaction__isnull=True)
                           | (~Q(status="pending") & Q(settle_transaction__isnull=False))),
                name="coins_withdrawal_settled_when_decided",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="coins_withdrawal_user"),
            models.Index(fields=["status", "created_at"], name="coins_withdrawal_status"),
        ]

    def __str__(self) -> str:
        return f"withdrawal {self.pk} ({self.status}, {self.amount})"


# --- manual adjustments ----------------------------------------------------------------------


class Adjustment(models.Model):
    """An operator's manual credit or debit, balanced against the adjustments account."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="coin_adjustments")
    amount = models.BigIntegerField()
    reason = models.TextField()
    operator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                 related_name="+")
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT,
                                       related_name="adjustment")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "coins_adjustment"
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="coins_adjustment_non_zero"),
            models.CheckConstraint(condition=~Q(reason=""), name="coins_adjustment_has_reason"),
        ]

    def __str__(self) -> str:
        return f"adjustment {self.pk}: user {self.user_id} {self.amount:+d}"


# --- idempotency -----------------------------------------------------------------------------


class IdempotencyKey(models.Model):
    """The stored first result of a money-moving request sent with an `Idempotency-Key`.

    The row is inserted in the same transaction as the movement and committed with it, so a
    stored key always means "this request's coins moved", and the unique constraint makes a
    concurrent duplicate wait for the first one's outcome (see `coins/idempotency.py`).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="+")
    key = models.CharField(max_length=255)
    # sha256 of method, path and canonical JSON body.
    fingerprint = models.CharField(max_length=64)
    # Filled before the transaction commits; NULL is only ever seen by the inserting transaction.
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "coins_idempotency_key"
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="coins_idempotency_user_key"),
        ]
        indexes = [models.Index(fields=["created_at"], name="coins_idempotency_created")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"
