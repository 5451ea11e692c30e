"""The coins endpoints in the OpenAPI schema: documented, and a property-based run of each
(schemathesis) finds no 5xx and no response outside the schema."""

from __future__ import annotations

import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from coins.models import CoinPackage
from coins.services import withdrawal_request
from showoff.tests.fuzz import fuzz_api

from .helpers import fund, make_user

EXAMPLES = 10


@pytest.mark.django_db
def test_coins_operations_find_no_server_error_and_no_schema_violation(
        wsgi_keeps_connection, settings):
    # given: a user with coins, a package, a withdrawal, and the webhook configured
    settings.COINS_PAYMENT_WEBHOOK_SECRET = "whsec-fuzz"
    settings.COINS_WITHDRAWAL_REQUIRE_KYC = False
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 1
    user, _recipient = make_user(), make_user()  # someone to send coins to
    fund(user, 10_000)
    CoinPackage.objects.create(name="P", coins=100, price_minor=99, currency="USD")
    withdrawal_request(user=user, amount=10, destination="x")
    token = f"Bearer {RefreshToken.for_user(user).access_token}"
    # when
    operations, failures = fuzz_api(("/api/coins/",), token, EXAMPLES)
    # then
    assert operations == 11
    assert failures == [], "\n\n".join(failures)
