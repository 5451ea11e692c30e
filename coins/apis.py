"""Coins HTTP API (thin: validate input, call one service or selector, shape the output)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from showoff.drf import CursorPage, InputSerializer

from . import selectors, services
from .errors import CoinsError
from .idempotency import HEADER as IDEMPOTENCY_HEADER
from .idempotency import idempotent
from .models import CoinPackage, Entry, EntryKind, PurchaseOrder, RewardGrant, Withdrawal
from .payments import PROVIDERS, WebhookRejected, payment_provider

logger = logging.getLogger(__name__)
User = get_user_model()

# Far above any real balance, far below bigint: keeps absurd numbers out of the database.
MAX_COINS = 10**15
IDEMPOTENCY_PARAM = OpenApiParameter(
    IDEMPOTENCY_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Any unique string (a UUID): a retry with the same key and body returns the "
                "first response and moves no coins again; a different body is a 422.",
)
# 400, 401, 403, 404 and 429 are documented for every operation by showoff.drf's hook (the
# project's one error shape); the coins-specific statuses use the same shape.
ERROR = inline_serializer("CoinsError", {"type": serializers.CharField(),
                                         "detail": serializers.CharField()})


def _error(type_: str, detail: str, status_code: int) -> Response:
    return Response({"type": type_, "detail": detail}, status=status_code)


class CoinsApi(APIView):
    permission_classes = [IsAuthenticated]

    def handle_exception(self, exc):
        if isinstance(exc, CoinsError):
            return Response(exc.as_dict(), status=exc.status_code)
        return super().handle_exception(exc)


def _page_of(name: str, item: serializers.Serializer):
    """The schema of a cursor page (next/previous links and the results)."""
    return inline_serializer(name, {
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": item,
    })


class HistoryPagination(CursorPage):
    ordering = "-id"
    page_size = 50
    max_page_size = 200


# --- balance and history ---------------------------------------------------------------------


class WalletOutput(serializers.Serializer):
    balance = serializers.IntegerField()
    kyc_verified = serializers.BooleanField()


class WalletApi(CoinsApi):
    @extend_schema(responses={200: WalletOutput}, summary="Your coin balance")
    def get(self, request: Request) -> Response:
        wallet = selectors.wallet_get(user=request.user)
        return Response(WalletOutput({
            "balance": wallet.balance if wallet else 0,
            "kyc_verified": bool(wallet and wallet.kyc_verified_at),
        }).data)


# Operator-only bookkeeping never leaves through the API.
_PRIVATE_METADATA = {"operator_id", "provider_event_id"}


class EntryOutput(serializers.ModelSerializer):
    transaction_id = serializers.IntegerField()
    description = serializers.CharField(source="transaction.description")
    details = serializers.SerializerMethodField()

    class Meta:
        model = Entry
        fields = ["id", "amount", "balance_after", "kind", "created_at", "transaction_id",
                  "description", "details"]

    def get_details(self, entry: Entry) -> dict:
        return {k: v for k, v in entry.transaction.metadata.items()
                if k not in _PRIVATE_METADATA}


class HistoryFilter(serializers.Serializer):
    kind = serializers.ListField(child=serializers.ChoiceField(choices=EntryKind.choices),
                                 required=False)


class HistoryApi(CoinsApi):
    @extend_schema(
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, many=True, enum=EntryKind.values,
                             description="Only these kinds (repeat or comma-separate)."),
            OpenApiParameter("cursor", OpenApiTypes.STR),
            OpenApiParameter("page_size", OpenApiTypes.INT),
        ],
        responses={200: _page_of("EntryPage", EntryOutput(many=True))},
        summary="Your ledger entries, newest first (cursor-paginated)",
    )
    def get(self, request: Request) -> Response:
        # (an empty kind, `?kind=` or `a,,b`, is refused like any unknown one)
        kinds = [k for raw in request.query_params.getlist("kind") for k in raw.split(",")]
        filters = HistoryFilter(data={"kind": kinds})
        filters.is_valid(raise_exception=True)
        qs = selectors.wallet_history(user=request.user,
                                      kinds=filters.validated_data.get("kind", []))
        paginator = HistoryPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(EntryOutput(page, many=True).data)


# --- purchases -------------------------------------------------------------------------------


class PackageOutput(serializers.ModelSerializer):
    class Meta:
        model = CoinPackage
        fields = ["id", "name", "coins", "price_minor", "currency"]


class PackageListApi(CoinsApi):
    @extend_schema(responses={200: PackageOutput(many=True)}, summary="Coin packages on sale")
    def get(self, request: Request) -> Response:
        return Response(PackageOutput(CoinPackage.objects.filter(active=True), many=True).data)


class PurchaseInput(InputSerializer):
    package_id = serializers.PrimaryKeyRelatedField(
        queryset=CoinPackage.objects.filter(active=True), source="package",
        error_messages={"does_not_exist": "No coin package {pk_value} is on sale."},
    )


class PurchaseOutput(serializers.ModelSerializer):
    package_id = serializers.IntegerField(allow_null=True)

    class Meta:
        model = PurchaseOrder
        fields = ["id", "package_id", "coins", "price_minor", "currency", "provider",
                  "provider_reference", "status", "failure_reason", "created_at",
                  "completed_at"]


class PurchaseCreateOutput(PurchaseOutput):
    checkout = serializers.DictField(read_only=True)

    class Meta(PurchaseOutput.Meta):
        fields = [*PurchaseOutput.Meta.fields, "checkout"]


class PurchaseCreateApi(CoinsApi):
    @extend_schema(request=PurchaseInput, parameters=[IDEMPOTENCY_PARAM],
                   responses={201: PurchaseCreateOutput, 422: ERROR},
                   summary="Start buying a coin package (credited when the payment confirms)")
    def post(self, request: Request) -> Response:
        # Validation runs inside `run`: a replay returns the first response even if the
        # package has been taken off sale since.
        def run() -> Response:
            data = PurchaseInput(data=request.data)
            data.is_valid(raise_exception=True)
            order, checkout = services.purchase_order_create(
                user=request.user, package=data.validated_data["package"])
            order.checkout = checkout.client_data
            return Response(PurchaseCreateOutput(order).data, status=status.HTTP_201_CREATED)

        return idempotent(request, run)


class PurchaseDetailApi(CoinsApi):
    @extend_schema(responses={200: PurchaseOutput}, summary="One of your orders")
    def get(self, request: Request, order_id) -> Response:
        order = selectors.purchase_order_get(user=request.user, order_id=order_id)
        if order is None:
            return _error("not_found", "No such order.", status.HTTP_404_NOT_FOUND)
        return Response(PurchaseOutput(order).data)


class PaymentWebhookApi(APIView):
    """Called by the payment provider; authenticated by the HMAC signature, not a session."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: inline_serializer("PaymentWebhookResult",
                                          {"result": serializers.CharField()}),
                   400: ERROR, 503: ERROR},
        summary="Payment provider webhook (signed)",
    )
    def post(self, request: Request, provider: str) -> Response:
        if provider not in PROVIDERS:
            return _error("not_found", f"Unknown payment provider {provider!r}.",
                          status.HTTP_404_NOT_FOUND)
        try:
            confirmation = payment_provider(provider).webhook_verify(body=request.body,
                                                                     headers=request.headers)
        except ImproperlyConfigured as exc:
            logger.error("payment webhook refused: %s", exc)
            return _error("unavailable", "Payments are not configured.",
                          status.HTTP_503_SERVICE_UNAVAILABLE)
        except WebhookRejected as exc:
            logger.warning("payment webhook rejected: %s", exc)
            return _error("invalid_webhook", f"Rejected: {exc}.", status.HTTP_400_BAD_REQUEST)
        if confirmation is None:
            return Response({"result": "ignored"})
        try:
            _, result = services.purchase_confirm(confirmation=confirmation)
        except CoinsError as exc:
            return Response(exc.as_dict(), status=exc.status_code)
        return Response({"result": result})


# --- transfers and tips ----------------------------------------------------------------------


class TransferInput(InputSerializer):
    recipient_id = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.all(), source="recipient", required=False, allow_null=True,
        help_text="Required unless post_id is given (a tip goes to the post's author).",
        error_messages={"does_not_exist": "No user {pk_value}."},
    )
    amount = serializers.IntegerField()
    post_id = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    note = serializers.CharField(max_length=140, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict) -> dict:
        if attrs.get("recipient") is None and attrs.get("post_id") is None:
            raise serializers.ValidationError(
                {"recipient_id": "Name the recipient, or give post_id to tip its author."})
        return attrs

    def validate_amount(self, value: int) -> int:
        low, high = settings.COINS_TRANSFER_MIN_AMOUNT, settings.COINS_TRANSFER_MAX_AMOUNT
        if not low <= value <= high:
            raise serializers.ValidationError(f"Send between {low} and {high} coins.")
        return value


class TransferOutput(serializers.Serializer):
    id = serializers.IntegerField()
    sender_id = serializers.IntegerField()
    recipient_id = serializers.IntegerField()
    amount = serializers.IntegerField()
    post_id = serializers.IntegerField(allow_null=True)
    kind = serializers.ChoiceField(choices=[EntryKind.TRANSFER, EntryKind.TIP])
    note = serializers.CharField()
    transaction_id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    balance = serializers.IntegerField(help_text="Your balance after the transfer.")


class TransferCreateApi(CoinsApi):
    @extend_schema(request=TransferInput, parameters=[IDEMPOTENCY_PARAM],
                   responses={201: TransferOutput, 422: ERROR},
                   summary="Send coins to a user, or tip a post's author (post_id)")
    def post(self, request: Request) -> Response:
        def run() -> Response:
            data = TransferInput(data=request.data)
            data.is_valid(raise_exception=True)
            v = data.validated_data
            transfer = services.coins_transfer(
                sender=request.user, recipient=v.get("recipient"), amount=v["amount"],
                post_id=v.get("post_id"), note=v.get("note", ""))
            transfer.balance = selectors.wallet_balance(user=request.user)
            return Response(TransferOutput(transfer).data, status=status.HTTP_201_CREATED)

        return idempotent(request, run)


# --- rewards ---------------------------------------------------------------------------------


class RewardClaimInput(InputSerializer):
    rule = serializers.SlugField(max_length=64)


class RewardGrantOutput(serializers.ModelSerializer):
    rule = serializers.CharField(source="rule.code")
    transaction_id = serializers.IntegerField()

    class Meta:
        model = RewardGrant
        fields = ["id", "rule", "period_key", "amount", "transaction_id", "created_at"]


class RewardClaimApi(CoinsApi):
    @extend_schema(request=RewardClaimInput,
                   responses={201: RewardGrantOutput, 409: ERROR},
                   summary="Claim a claimable reward (the daily bonus) for this period")
    def post(self, request: Request) -> Response:
        data = RewardClaimInput(data=request.data)
        data.is_valid(raise_exception=True)
        grant = services.reward_claim(user=request.user, rule_code=data.validated_data["rule"])
        return Response(RewardGrantOutput(grant).data, status=status.HTTP_201_CREATED)


# --- withdrawals -----------------------------------------------------------------------------


class WithdrawalInput(InputSerializer):
    amount = serializers.IntegerField(max_value=MAX_COINS)
    destination = serializers.CharField(max_length=255)

    def validate_amount(self, value: int) -> int:
        if value < settings.COINS_WITHDRAWAL_MIN_AMOUNT:
            raise serializers.ValidationError(
                f"The minimum withdrawal is {settings.COINS_WITHDRAWAL_MIN_AMOUNT} coins.")
        return value


class WithdrawalOutput(serializers.ModelSerializer):
    class Meta:
        model = Withdrawal
        fields = ["id", "amount", "fee", "destination", "status", "payout_reference",
                  "rejection_reason", "created_at", "reviewed_at"]


class WithdrawalListCreateApi(CoinsApi):
    @extend_schema(responses={200: _page_of("WithdrawalPage", WithdrawalOutput(many=True))},
                   operation_id="coins_withdrawals_list",
                   summary="Your withdrawals",
                   parameters=[OpenApiParameter("cursor", OpenApiTypes.STR)])
    def get(self, request: Request) -> Response:
        paginator = HistoryPagination()
        page = paginator.paginate_queryset(selectors.withdrawal_list(user=request.user),
                                           request, view=self)
        return paginator.get_paginated_response(WithdrawalOutput(page, many=True).data)

    @extend_schema(request=WithdrawalInput, parameters=[IDEMPOTENCY_PARAM],
                   responses={201: WithdrawalOutput, 422: ERROR},
                   summary="Ask to cash out coins (held until an operator decides)")
    def post(self, request: Request) -> Response:
        def run() -> Response:
            data = WithdrawalInput(data=request.data)
            data.is_valid(raise_exception=True)
            withdrawal = services.withdrawal_request(user=request.user, **data.validated_data)
            return Response(WithdrawalOutput(withdrawal).data, status=status.HTTP_201_CREATED)

        return idempotent(request, run)


class WithdrawalDetailApi(CoinsApi):
    @extend_schema(responses={200: WithdrawalOutput},
                   summary="One of your withdrawals")
    def get(self, request: Request, withdrawal_id: int) -> Response:
        withdrawal = selectors.withdrawal_list(user=request.user).filter(
            pk=withdrawal_id).first()
        if withdrawal is None:
            return _error("not_found", "No such withdrawal.", status.HTTP_404_NOT_FOUND)
        return Response(WithdrawalOutput(withdrawal).data)
