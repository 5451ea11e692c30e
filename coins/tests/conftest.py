from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from .helpers import make_user, operator


@pytest.fixture
def alice(db):
    return make_user(username="alice")


@pytest.fixture
def bob(db):
    return make_user(username="bob")


@pytest.fixture
def carol(db):
    return make_user(username="carol")


@pytest.fixture
def admin_user(db):
    return operator()


@pytest.fixture
def webhook_secret(settings):
    settings.COINS_PAYMENT_WEBHOOK_SECRET = "whsec-test-0123456789"
    return settings.COINS_PAYMENT_WEBHOOK_SECRET


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def as_alice(alice):
    return client_for(alice)


@pytest.fixture
def as_bob(bob):
    return client_for(bob)
