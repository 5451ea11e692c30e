"""Coins admin. Wallets and the ledger are read-only; the only writes offered are the services
(approve or reject a withdrawal, adjust a balance, record a KYC check), so every movement is
balanced, locked, audited with its operator and announced by its event."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from . import services
from .errors import CoinsError
from .models import (
    Adjustment,
    CoinPackage,
    Entry,
    LedgerTransaction,
    PurchaseOrder,
    RewardGrant,
    RewardRule,
    Transfer,
    Wallet,
    Withdrawal,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ActionsOnlyAdmin(ReadOnlyAdmin):
    """Objects are read-only; the model's change permission only unlocks the list actions."""

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super(ReadOnlyAdmin, self).has_change_permission(request)


def _action_form(modeladmin, request, *, title: str, form, objects, action: str,
                 submit: str):
    return TemplateResponse(request, "admin/coins/action_form.html", {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "objects": objects,
        "action": action,
        "submit": submit,
        "opts": modeladmin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    })


class AdjustmentForm(forms.Form):
    amount = forms.IntegerField(min_value=-(10**15), max_value=10**15,
                                help_text="Coins to credit (positive) or debit (negative).")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="Why: kept with the movement and shown in the history.")

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("An adjustment moves at least one coin.")
        return amount


class RejectForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="Shown to the user; the held coins go back to them.")


@admin.register(Wallet)
class WalletAdmin(ActionsOnlyAdmin):
    list_display = ("id", "owner", "balance", "kyc_verified_at", "updated_at")
    list_filter = (("system_code", admin.EmptyFieldListFilter),
                   ("kyc_verified_at", admin.EmptyFieldListFilter))
    search_fields = ("user__username", "user__email", "=id", "system_code")
    list_select_related = ("user",)
    readonly_fields = ("user", "system_code", "balance", "kyc_verified_at", "created_at",
                       "updated_at")
    actions = ["adjust_balance", "verify_kyc"]

    @admin.display(description="owner")
    def owner(self, wallet: Wallet) -> str:
        return f"system: {wallet.system_code}" if wallet.system_code else str(wallet.user)

    def has_adjust_permission(self, request) -> bool:
        return request.user.has_perm("coins.add_adjustment")

    def has_verify_kyc_permission(self, request) -> bool:
        return request.user.has_perm("coins.change_wallet")

    @admin.action(description="Adjust the balance (credit or debit, with a reason)…",
                  permissions=["adjust"])
    def adjust_balance(self, request, queryset):
        wallets = list(queryset.select_related("user"))
        if len(wallets) != 1 or wallets[0].user_id is None:
            self.message_user(request, "Select exactly one user wallet to adjust.",
                              messages.ERROR)
            return None
        wallet = wallets[0]
        form = AdjustmentForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                adjustment = services.wallet_adjust(
                    user=wallet.user, amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"], operator=request.user)
            except CoinsError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return None
            self.message_user(request, f"Adjusted {wallet.user}'s balance by "
                                       f"{adjustment.amount:+d} coins (adjustment "
                                       f"{adjustment.pk}).", messages.SUCCESS)
            return None
        return _action_form(self, request, title=f"Adjust the balance of {wallet.user}",
                            form=form, objects=wallets, action="adjust_balance",
                            submit="Adjust")

    @admin.action(description="Record the identity (KYC) check as passed",
                  permissions=["verify_kyc"])
    def verify_kyc(self, request, queryset):
        count = 0
        for wallet in queryset.filter(user__isnull=False).select_related("user"):
            services.wallet_kyc_verify(user=wallet.user, operator=request.user)
            count += 1
        self.message_user(request, f"{count} wallet(s) verified.", messages.SUCCESS)


class EntryInline(admin.TabularInline):
    model = Entry
    fields = ("wallet", "amount", "balance_after", "kind", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "description", "created_by", "created_at")
    list_filter = ("kind", "created_at")
    search_fields = ("=id", "description")
    readonly_fields = ("kind", "description", "metadata", "created_by", "created_at")
    inlines = [EntryInline]
    date_hierarchy = "created_at"


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "transaction", "wallet", "amount", "balance_after", "kind",
                    "created_at")
    list_filter = ("kind", "created_at")
    search_fields = ("=wallet__id", "=transaction__id", "wallet__user__username")
    list_select_related = ("transaction", "wallet", "wallet__user")


@admin.register(Withdrawal)
class WithdrawalAdmin(ActionsOnlyAdmin):
    list_display = ("id", "user", "amount", "fee", "destination", "status", "created_at",
                    "reviewed_by", "reviewed_at")
    list_filter = ("status", "created_at")
    search_fields = ("=id", "user__username", "destination", "payout_reference")
    list_select_related = ("user", "reviewed_by")
    readonly_fields = ("user", "amount", "fee", "destination", "status", "payout_reference",
                       "rejection_reason", "reviewed_by", "reviewed_at", "hold_transaction",
                       "settle_transaction", "created_at", "updated_at")
    actions = ["approve", "reject"]

    @admin.action(description="Approve and pay out the selected withdrawals",
                  permissions=["change"])
    def approve(self, request, queryset):
        for pk in queryset.values_list("pk", flat=True):
            try:
                services.withdrawal_approve(withdrawal_id=pk, operator=request.user)
            except CoinsError as exc:
                self.message_user(request, f"Withdrawal {pk}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"Withdrawal {pk} paid out.", messages.SUCCESS)

    @admin.action(description="Reject the selected withdrawals (coins go back)…",
                  permissions=["change"])
    def reject(self, request, queryset):
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for pk in queryset.values_list("pk", flat=True):
                try:
                    services.withdrawal_reject(withdrawal_id=pk, operator=request.user,
                                               reason=form.cleaned_data["reason"])
                except CoinsError as exc:
                    self.message_user(request, f"Withdrawal {pk}: {exc.message}",
                                      messages.ERROR)
                else:
                    self.message_user(request, f"Withdrawal {pk} rejected; coins returned.",
                                      messages.SUCCESS)
            return None
        return _action_form(self, request, title="Reject withdrawals", form=form,
                            objects=list(queryset), action="reject", submit="Reject")


@admin.register(Adjustment)
class AdjustmentAdmin(ReadOnlyAdmin):
    """Created through the wallet list's "Adjust the balance" action only."""

    list_display = ("id", "user", "amount", "reason", "operator", "created_at")
    search_fields = ("user__username", "reason", "operator__username")
    list_select_related = ("user", "operator")


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ("id", "sender", "recipient", "amount", "post", "created_at")
    search_fields = ("=id", "sender__username", "recipient__username")
    list_select_related = ("sender", "recipient")
    raw_id_fields = ("post",)


@admin.register(PurchaseOrder)
class PurchaseOrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "coins", "price_minor", "currency", "provider", "status",
                    "created_at", "completed_at")
    list_filter = ("status", "provider", "created_at")
    search_fields = ("=id", "user__username", "provider_reference")
    list_select_related = ("user",)


@admin.register(CoinPackage)
class CoinPackageAdmin(admin.ModelAdmin):
    list_display = ("name", "coins", "price_minor", "currency", "active", "sort_order")
    list_editable = ("active", "sort_order")
    list_filter = ("active", "currency")

    def has_delete_permission(self, request, obj=None) -> bool:
        # Orders keep a reference; take a package off sale with `active` instead.
        return False


@admin.register(RewardRule)
class RewardRuleAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "amount", "period", "active", "claimable")
    list_editable = ("amount", "active")
    list_filter = ("period", "active", "claimable")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        # The code and period key the unique grants: changing them would re-open old periods.
        return ("code", "period") if obj else ()


@admin.register(RewardGrant)
class RewardGrantAdmin(ReadOnlyAdmin):
    list_display = ("id", "rule", "user", "period_key", "amount", "created_at")
    list_filter = ("rule",)
    search_fields = ("user__username", "period_key")
    list_select_related = ("rule", "user")
