"""Fixtures shared by the accounts and posts tests (imported by their conftest.py)."""

from __future__ import annotations

import itertools

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from outbox.models import OutboxEvent

PASSWORD = "correct-Horse-battery-9"
_seq = itertools.count(1)


def make_user(**fields) -> User:
    n = next(_seq)
    fields.setdefault("username", f"user{n}")
    fields.setdefault("email", f"user{n}@example.com")
    password = fields.pop("password", PASSWORD)
    user = User(**fields)
    user.set_password(password)
    user.save()
    return user


def client_for(user: User | None) -> APIClient:
    client = APIClient(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="pytest-client/1.0")
    if user is not None:
        token = RefreshToken.for_user(user).access_token
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def events(event_type: str | None = None) -> list[OutboxEvent]:
    qs = OutboxEvent.objects.order_by("id")
    if event_type:
        qs = qs.filter(type=event_type)
    return list(qs)


@pytest.fixture
def alice(db) -> User:
    return make_user(username="alice", email="alice@example.com", display_name="Alice")


@pytest.fixture
def bob(db) -> User:
    return make_user(username="bob", email="bob@example.com", display_name="Bob")


@pytest.fixture
def anon() -> APIClient:
    return client_for(None)


@pytest.fixture
def as_alice(alice) -> APIClient:
    return client_for(alice)


@pytest.fixture
def as_bob(bob) -> APIClient:
    return client_for(bob)
