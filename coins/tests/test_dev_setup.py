"""A fresh development install can buy coins: `manage.py coins_dev_setup` (run by `make run`)
adds a demo package, the development settings give the webhook a secret; production gets
neither. And the operator's coin actions from a shell (`manage.py coins_operator`)."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from coins import services
from coins.models import CoinPackage, Wallet, Withdrawal

from .helpers import fund, make_user, operator

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def _setup() -> str:
    out = StringIO()
    call_command("coins_dev_setup", stdout=out)
    return out.getvalue()


def test_make_run_seeds_the_dev_setup():
    make = (ROOT / "Makefile").read_text()
    run_recipe = make.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "$(PY) manage.py coins_dev_setup" in run_recipe


def test_dev_setup_adds_a_demo_package_once_in_development(settings):
    # given: development
    settings.DEBUG = True
    settings.COINS_PAYMENT_WEBHOOK_SECRET = "dev-webhook-secret-not-for-production"
    # when: run twice (every `make run` runs it)
    first, second = _setup(), _setup()
    # then
    [package] = CoinPackage.objects.filter(active=True)
    assert (package.name, package.coins, package.price_minor, package.currency) == (
        "Demo pack", 2000, 999, "USD")
    assert f"added the package 'Demo pack' (id {package.pk})" in first
    assert "a coin package is on sale already; none added." in second
    assert ("webhook POST /api/coins/purchases/webhook/test/, signed with "
            "COINS_PAYMENT_WEBHOOK_SECRET='dev-webhook-secret-not-for-production'") in first


def test_dev_setup_does_nothing_outside_development(settings):
    settings.DEBUG = False
    assert _setup().startswith("coins_dev_setup: not a development environment")
    assert CoinPackage.objects.count() == 0


def _settings_value(module: str, name: str, **env: str) -> subprocess.CompletedProcess:
    child = {k: v for k, v in os.environ.items()
             if k not in {"DEBUG", "COINS_PAYMENT_WEBHOOK_SECRET", "DJANGO_SETTINGS_MODULE"}}
    child.update(DJANGO_SETTINGS_MODULE=module, SECRET_KEY="k" * 50,
                 ALLOWED_HOSTS="api.example.com",
                 ACCOUNTS_PASSWORD_RESET_URL="https://app.example.com/r?token={token}",
                 ACCOUNTS_EMAIL_VERIFICATION_URL="https://app.example.com/v?token={token}",
                 **env)
    return subprocess.run([sys.executable, "-c", "import django; django.setup(); "
                           f"from django.conf import settings; print(repr(settings.{name}))"],
                          cwd=ROOT, env=child, capture_output=True, text=True, timeout=60)


def test_the_webhook_secret_has_a_dev_default_and_none_in_production():
    dev = _settings_value("showoff.settings.base", "COINS_PAYMENT_WEBHOOK_SECRET")
    dev_off = _settings_value("showoff.settings.base", "COINS_PAYMENT_WEBHOOK_SECRET",
                              DEBUG="false")
    prod = _settings_value("showoff.settings.production", "COINS_PAYMENT_WEBHOOK_SECRET")
    prod_dev = _settings_value("showoff.settings.production", "COINS_PAYMENT_WEBHOOK_SECRET",
                               COINS_PAYMENT_WEBHOOK_SECRET="dev-webhook-secret-not-for-"
                                                            "production")
    assert dev.stdout.strip() == "'dev-webhook-secret-not-for-production'", dev.stderr
    assert dev_off.stdout.strip() == "''", dev_off.stderr
    assert prod.stdout.strip() == "''", prod.stderr
    assert prod_dev.returncode != 0
    assert "COINS_PAYMENT_WEBHOOK_SECRET is the development default" in prod_dev.stderr


# --- coins_operator ---------------------------------------------------------------------------


def _operator(*args: str) -> str:
    out = StringIO()
    call_command("coins_operator", *args, stdout=out)
    return out.getvalue()


def test_operator_records_kyc_and_approves_and_rejects_withdrawals(settings):
    # given
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 10
    settings.COINS_WITHDRAWAL_FEE_BPS = 100
    ops = operator()
    user = make_user()
    fund(user, 1000)
    # when: the KYC check, then two withdrawals decided
    kyc = _operator("kyc", user.username, "--operator", ops.username)
    first = services.withdrawal_request(user=user, amount=500, destination="iban")
    second = services.withdrawal_request(user=user, amount=200, destination="iban")
    approved = _operator("approve", str(first.pk), "--operator", ops.username)
    rejected = _operator("reject", str(second.pk), "--reason", "wrong account", "--operator",
                         ops.username)
    # then
    assert kyc == f"identity of {user.username} recorded as verified.\n"
    assert Wallet.objects.get(user=user).kyc_verified_at is not None
    first.refresh_from_db()
    assert (first.status, first.fee, first.reviewed_by_id) == ("completed", 5, ops.pk)
    assert approved == (f"withdrawal {first.pk} completed: 495 coins paid out (fee 5), payout "
                        f"reference {first.payout_reference}.\n")
    assert rejected == f"withdrawal {second.pk} rejected; 200 coins returned.\n"
    assert Withdrawal.objects.get(pk=second.pk).rejection_reason == "wrong account"
    assert Wallet.objects.get(user=user).balance == 500


def test_operator_refuses_a_non_staff_operator_and_a_decided_withdrawal(settings):
    settings.COINS_WITHDRAWAL_REQUIRE_KYC = False
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 10
    ops, user = operator(), make_user()
    fund(user, 100)
    withdrawal = services.withdrawal_request(user=user, amount=50, destination="iban")
    with pytest.raises(CommandError, match=f"'{user.username}' is not a staff account"):
        _operator("approve", str(withdrawal.pk), "--operator", user.username)
    _operator("approve", str(withdrawal.pk), "--operator", ops.username)
    with pytest.raises(CommandError, match=f"Withdrawal {withdrawal.pk} is already completed"):
        _operator("reject", str(withdrawal.pk), "--reason", "x", "--operator", ops.username)
