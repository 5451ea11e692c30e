from __future__ import annotations

from django.urls import path

from . import apis

app_name = "coins"

urlpatterns = [
    path("wallet/", apis.WalletApi.as_view(), name="wallet"),
    path("history/", apis.HistoryApi.as_view(), name="history"),
    path("packages/", apis.PackageListApi.as_view(), name="packages"),
    path("purchases/", apis.PurchaseCreateApi.as_view(), name="purchase-create"),
    path("purchases/<uuid:order_id>/", apis.PurchaseDetailApi.as_view(), name="purchase-detail"),
    path("purchases/webhook/<slug:provider>/", apis.PaymentWebhookApi.as_view(),
         name="payment-webhook"),
    path("transfers/", apis.TransferCreateApi.as_view(), name="transfer-create"),
    path("rewards/claim/", apis.RewardClaimApi.as_view(), name="reward-claim"),
    path("withdrawals/", apis.WithdrawalListCreateApi.as_view(), name="withdrawals"),
    path("withdrawals/<int:withdrawal_id>/", apis.WithdrawalDetailApi.as_view(),
         name="withdrawal-detail"),
]
