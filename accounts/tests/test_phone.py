"""Phone verification by one-time code: sealed code in `sms.requested`, limits, lock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import PhoneVerification
from accounts.tests.fixtures import client_for, events, make_user
from outbox.events.sms_events import unseal

pytestmark = pytest.mark.django_db
PHONE = "+14155550123"


def _request(client, phone=PHONE):
    return client.post("/api/me/phone/code/", {"phone": phone})


def _sent_code(phone=PHONE) -> str:
    event = [e for e in events("sms.requested") if e.payload["phone"] == phone][-1]
    return unseal(event.payload["secret"])


def test_request_sends_a_sealed_code_by_sms_event_and_stores_only_a_hash(as_alice, alice):
    # when
    resp = _request(as_alice)
    # then
    assert resp.status_code == 202
    assert resp.json()["phone"] == PHONE
    [event] = events("sms.requested")
    assert (event.topic, event.key) == ("sms-events", PHONE)
    p = event.payload
    assert (p["kind"], p["user_id"], p["template"], p["body"]) == (
        "otp", alice.pk, "phone_verification_code", None)
    code = unseal(p["secret"])
    assert len(code) == 6 and code.isdigit()
    assert code not in str(p) and code not in str(event.headers)
    pv = PhoneVerification.objects.get()
    assert code not in pv.code_hash and len(pv.code_hash) == 64
    assert pv.requested_ip == "203.0.113.7"


def test_verify_with_the_right_code_sets_the_verified_phone(as_alice, alice):
    # given
    _request(as_alice)
    # when
    resp = as_alice.post("/api/me/phone/verify/", {"phone": PHONE, "code": _sent_code()})
    # then
    assert resp.status_code == 200
    assert resp.json()["phone"] == PHONE and resp.json()["phone_verified"] is True
    [event] = events("user.phone_verified")
    assert event.payload["user_id"] == alice.pk and event.payload["phone"] == PHONE
    # a used code cannot be used again
    again = as_alice.post("/api/me/phone/verify/", {"phone": PHONE, "code": _sent_code()})
    assert again.status_code == 400


def test_wrong_codes_count_down_then_lock(as_alice, settings):
    # given
    settings.ACCOUNTS_OTP_MAX_ATTEMPTS = 3
    _request(as_alice)
    wrong = "000000" if _sent_code() != "000000" else "111111"
    # when / then
    first = as_alice.post("/api/me/phone/verify/", {"phone": PHONE, "code": wrong})
    assert first.status_code == 400
    assert first.json()["errors"] == {"code": ["Wrong code; 2 attempts left."]}
    second = as_alice.post("/api/me/phone/verify/", {"phone": PHONE, "code": wrong})
    assert second.json()["errors"] == {"code": ["Wrong code; 1 attempt left."]}
    third = as_alice.post("/api/me/phone/verify/", {"phone": PHONE, "code": wrong})
    assert third.status_code == 429
    assert third.json()["type"] == "throttled"
    # locked: even the right code and a new request are refused
    right = as_alice.post("/api/me/phone/verify/", {"phone": PHONE, "code": _sent_code()})
    assert right.status_code == 429
    assert _request(as_alice).status_code == 429
    assert events("user.phone_verified") == []


def test_an_expired_code_is_400_with_the_reason(as_alice):
    _request(as_alice)
    PhoneVerification.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    resp = as_alice.post("/api/me/phone/verify/", {"phone": PHONE, "code": _sent_code()})
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"code": ["This code has expired; request a new one."]}


def test_verify_without_a_request_is_400(as_alice):
    resp = as_alice.post("/api/me/phone/verify/", {"phone": PHONE, "code": "123456"})
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"code": [
        "No code was sent to this number; request one first."]}


@pytest.mark.parametrize(("payload", "field"), [
    ({"phone": "0415555"}, "phone"),
    ({"phone": PHONE, "code": "12ab56"}, "code"),
    ({"phone": PHONE}, "code"),
])
def test_bad_phone_or_code_input_is_400(as_alice, payload, field):
    resp = as_alice.post("/api/me/phone/verify/", payload)
    assert resp.status_code == 400
    assert field in resp.json()["errors"]


def test_codes_are_limited_per_phone(as_alice, settings):
    settings.ACCOUNTS_OTP_PER_PHONE = 2
    assert _request(as_alice).status_code == 202
    assert _request(as_alice).status_code == 202
    resp = _request(as_alice)
    assert resp.status_code == 429
    assert resp.json()["detail"].startswith("Too many codes were sent to this phone number.")
    assert len(events("sms.requested")) == 2


def test_codes_are_limited_per_client_ip_across_accounts(settings):
    settings.ACCOUNTS_OTP_PER_IP = 2
    clients = [client_for(make_user()) for _ in range(3)]
    assert _request(clients[0], "+14155550001").status_code == 202
    assert _request(clients[1], "+14155550002").status_code == 202
    resp = _request(clients[2], "+14155550003")
    assert resp.status_code == 429
    assert "your network address" in resp.json()["detail"]


def test_a_phone_verified_on_another_account_is_refused(as_alice, bob):
    bob.phone, bob.phone_verified_at = PHONE, timezone.now()
    bob.save()
    resp = _request(as_alice)
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"phone": ["This number is verified on another account."]}
