"""Account services publish after locking the user row their events are keyed by, and a
phone code request after the phone's advisory lock (DESIGN.md §3; see
outbox/tests/lock_order.py for why and how it is checked)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services
from accounts.models import PhoneVerification
from accounts.tests.fixtures import PASSWORD, events, make_user
from accounts.tests.test_recovery_api import _token
from outbox.sealing import unseal
from outbox.tests.lock_order import assert_publishes_after_lock

pytestmark = pytest.mark.django_db(transaction=True)

LOCK_USER = "SELECT 1 FROM accounts_user WHERE id = %s FOR NO KEY UPDATE"
PHONE = "+4915112345678"


def _verify(user):
    PhoneVerification.objects.create(
        user=user, phone=PHONE, code_hash=services._code_hash(PHONE, "123456"),
        requested_ip="203.0.113.7", expires_at=timezone.now() + timedelta(minutes=5))
    return lambda: services.phone_code_verify(user=user, phone=PHONE, code="123456")


def _emailed_token(user, purpose: str) -> str:
    """Issue a link of `purpose` to the user and return its token (as the email carries it)."""
    from django.db import transaction

    with transaction.atomic():
        services._account_token_issue(user=user, purpose=purpose, ip=None, now=timezone.now())
    [*_, event] = [e for e in events("email.requested") if e.payload["template"] == purpose]
    return _token(unseal(event.payload["secret"]))


def _reset(user):
    token = _emailed_token(user, "password_reset")
    return lambda: services.user_password_reset(token=token, new_password="brand-New-pass-42",
                                                ip=None)


def _verify_email(user):
    token = _emailed_token(user, "email_verification")
    return lambda: services.user_email_verify(token=token)


CASES = {
    "user.logged_in": lambda u: lambda: services.user_login(
        login=u.username, password=PASSWORD, ip="203.0.113.7", user_agent="pytest"),
    "user.profile_updated": lambda u: lambda: services.user_profile_update(
        user=u, display_name="Someone New"),
    "user.account_changed:email": lambda u: lambda: services.user_email_change(
        user=u, password=PASSWORD, new_email=f"new{u.pk}@example.com"),
    "user.account_changed:password": lambda u: lambda: services.user_password_change(
        user=u, old_password=PASSWORD, new_password="another-Horse-battery-7"),
    "user.account_changed:deactivated": lambda u: lambda: services.user_deactivate(
        user=u, password=PASSWORD),
    "user.account_changed:deleted": lambda u: lambda: services.user_delete(
        user=u, password=PASSWORD),
    "user.account_changed:deactivated_by_operator": lambda u: lambda: (
        services.user_deactivate_by_operator(user=u)),
    "user.phone_verified": _verify,
    "user.password_reset": _reset,
    "user.email_verified": _verify_email,
    # keyed by the address, which is the user's: its links serialise on the user row (only the
    # latest link works, so they must arrive in order)
    "email.requested:verification_link": lambda u: lambda: services.email_verification_request(
        user=u, ip=None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_account_services_publish_after_locking_the_user(monkeypatch, case):
    # given: a user, and the service about to run
    user = make_user()
    call = CASES[case](user)
    # when / then: it waits for the user's row before it publishes
    assert_publishes_after_lock(monkeypatch, module=services, event_type=case.split(":")[0],
                                lock_sql=LOCK_USER, lock_params=[user.pk], call=call)


def test_a_phone_code_request_publishes_after_the_phones_lock(monkeypatch):
    # sms.requested is keyed by the phone, which has no row: requests for one phone
    # serialise on an advisory lock instead (and their codes must arrive in order: only the
    # latest one is accepted).
    user = make_user()
    assert_publishes_after_lock(
        monkeypatch, module=services, event_type="sms.requested",
        lock_sql="SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        lock_params=[f"otp-phone:{PHONE}"],
        call=lambda: services.phone_code_request(user=user, phone=PHONE, ip="203.0.113.7"))
