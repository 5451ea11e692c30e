"""The real provider backends (FCM HTTP v1, Twilio) build the documented requests. Neither
provider is reachable here: a local HTTP server started by the test plays each one, records
what it receives and answers as the provider documents (success and error bodies)."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ImproperlyConfigured

from notifications.backends import (
    InvalidRecipient,
    PushMessage,
    Rejected,
    SmsMessage,
    TransientError,
)
from notifications.backends.push import FcmPushBackend
from notifications.backends.sms import TwilioSmsBackend


class FakeProvider:
    """A local HTTP server: records requests, answers from a per-path queue of responses."""

    def __init__(self):
        self.requests: list[dict] = []
        self.responses: dict[str, list[tuple[int, dict, dict]]] = {}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode()
                provider.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body})
                queue = provider.responses.get(self.path) or [(500, {}, {"error": "no answer"})]
                status, headers, payload = queue.pop(0) if len(queue) > 1 else queue[0]
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def answer(self, path: str, *responses: tuple[int, dict, dict]) -> None:
        self.responses[path] = list(responses)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider():
    p = FakeProvider()
    yield p
    p.close()


# --- FCM HTTP v1 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fcm(settings, provider, rsa_key):
    pem = rsa_key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    settings.FCM_PROJECT_ID = "showoff-test"
    settings.FCM_SERVICE_ACCOUNT_FILE = ""
    settings.FCM_SERVICE_ACCOUNT_JSON = json.dumps({
        "type": "service_account", "project_id": "showoff-test", "private_key_id": "kid-1",
        "private_key": pem, "client_email": "push@showoff-test.iam.gserviceaccount.com",
        "token_uri": f"{provider.url}/token",
    })
    settings.FCM_API_URL = provider.url
    provider.answer("/token", (200, {}, {"access_token": "ya29.test-token",
                                         "expires_in": 3599, "token_type": "Bearer"}))
    return FcmPushBackend()


MESSAGE = PushMessage(token="device-token-1", platform="android", title="Bob liked your post",
                      body="Your post has 2 likes.", data={"notification_id": "5", "kind": "x"})
KEY = "0b6f7d2c-4a58-4f8e-9d43-2d1c6a0e9b11"
SEND_PATH = "/v1/projects/showoff-test/messages:send"


def test_fcm_gets_an_access_token_with_a_signed_jwt_then_sends_the_documented_message(
        fcm, provider, rsa_key):
    # given
    provider.answer(SEND_PATH, (200, {}, {"name": "projects/showoff-test/messages/0:123"}))
    # when
    provider_id = fcm.send(MESSAGE, idempotency_key=KEY)
    # then: the OAuth 2.0 JWT bearer grant, signed with the service account's key
    token_req, send_req = provider.requests
    assert token_req["path"] == "/token"
    form = parse_qs(token_req["body"])
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    claims = jwt.decode(form["assertion"][0], rsa_key.public_key(), algorithms=["RS256"],
                        audience=f"{provider.url}/token")
    assert claims["iss"] == "push@showoff-test.iam.gserviceaccount.com"
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    assert claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(form["assertion"][0])["kid"] == "kid-1"
    # and the v1 send with the bearer token and the delivery id as collapse key everywhere
    assert send_req["path"] == SEND_PATH
    assert send_req["headers"]["Authorization"] == "Bearer ya29.test-token"
    assert send_req["headers"]["Content-Type"] == "application/json"
    assert json.loads(send_req["body"]) == {"message": {
        "token": "device-token-1",
        "notification": {"title": "Bob liked your post", "body": "Your post has 2 likes."},
        "data": {"notification_id": "5", "kind": "x", "delivery_id": KEY},
        "android": {"collapse_key": KEY, "priority": "high"},
        "apns": {"headers": {"apns-collapse-id": KEY, "apns-priority": "10"}},
        "webpush": {"headers": {"Topic": KEY.replace("-", ""), "Urgency": "high"}},
    }}
    assert provider_id == "projects/showoff-test/messages/0:123"


def test_fcm_reuses_its_access_token_until_it_expires(fcm, provider):
    # given
    provider.answer(SEND_PATH, (200, {}, {"name": "m1"}))
    # when
    fcm.send(MESSAGE, idempotency_key=KEY)
    fcm.send(MESSAGE, idempotency_key=KEY)
    # then
    assert [r["path"] for r in provider.requests] == ["/token", SEND_PATH, SEND_PATH]


def _fcm_error(status: int, code: str, message: str, error_code: str | None = None):
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": error_code}] if error_code else []
    return {"error": {"code": status, "message": message, "status": code, "details": details}}


@pytest.mark.parametrize(("status", "headers", "body", "error", "text"), [
    (404, {}, _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
     InvalidRecipient, "FCM 404 UNREGISTERED: Requested entity was not found."),
    (400, {}, _fcm_error(400, "INVALID_ARGUMENT",
                         "The registration token is not a valid FCM registration token",
                         "INVALID_ARGUMENT"),
     InvalidRecipient, "FCM 400 INVALID_ARGUMENT: The registration token is not a valid"),
    (403, {}, _fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"),
     InvalidRecipient, "FCM 403 SENDER_ID_MISMATCH"),
    (503, {"Retry-After": "30"}, _fcm_error(503, "UNAVAILABLE", "The service is unavailable.",
                                            "UNAVAILABLE"),
     TransientError, "FCM 503 UNAVAILABLE"),
    (429, {"Retry-After": "60"}, _fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded",
                                            "QUOTA_EXCEEDED"),
     TransientError, "FCM 429 QUOTA_EXCEEDED"),
    (400, {}, _fcm_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.data'",
                         "INVALID_ARGUMENT"),
     Rejected, "FCM 400 INVALID_ARGUMENT: Invalid value at 'message.data'"),
])
def test_fcm_errors_map_to_what_the_sender_does_next(fcm, provider, status, headers, body,
                                                     error, text):
    # given
    provider.answer(SEND_PATH, (status, headers, body))
    # when
    with pytest.raises(error) as raised:
        fcm.send(MESSAGE, idempotency_key=KEY)
    # then
    assert type(raised.value) is error
    assert str(raised.value).startswith(text)
    if "Retry-After" in headers:
        assert raised.value.retry_after == float(headers["Retry-After"])


def test_fcm_fetches_a_new_token_after_a_401(fcm, provider):
    # given
    provider.answer(SEND_PATH, (401, {}, _fcm_error(401, "UNAUTHENTICATED", "expired")),
                    (200, {}, {"name": "m2"}))
    # when
    with pytest.raises(TransientError):
        fcm.send(MESSAGE, idempotency_key=KEY)
    fcm.send(MESSAGE, idempotency_key=KEY)
    # then
    assert [r["path"] for r in provider.requests] == ["/token", SEND_PATH, "/token", SEND_PATH]


def test_fcm_unreachable_is_transient(fcm, settings):
    # given: nothing listens there
    fcm.url = "http://127.0.0.1:9/v1/projects/x/messages:send"
    fcm._token, fcm._token_expires = "t", time.time() + 600
    # then
    with pytest.raises(TransientError, match="FCM request failed"):
        fcm.send(MESSAGE, idempotency_key=KEY)


def test_fcm_without_configuration_says_what_to_set(settings):
    settings.FCM_PROJECT_ID = ""
    with pytest.raises(ImproperlyConfigured, match="needs FCM_PROJECT_ID"):
        FcmPushBackend()
    settings.FCM_PROJECT_ID = "p"
    settings.FCM_SERVICE_ACCOUNT_JSON = ""
    settings.FCM_SERVICE_ACCOUNT_FILE = ""
    with pytest.raises(ImproperlyConfigured, match="FCM_SERVICE_ACCOUNT_FILE"):
        FcmPushBackend()


# --- Twilio ---------------------------------------------------------------------------------

TWILIO_PATH = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"


@pytest.fixture
def twilio(settings, provider):
    settings.TWILIO_ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
    settings.TWILIO_AUTH_TOKEN = "auth-token-secret"
    settings.TWILIO_API_KEY_SID = ""
    settings.TWILIO_API_KEY_SECRET = ""
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.TWILIO_API_URL = provider.url
    return settings


def test_twilio_posts_the_documented_form_with_basic_auth(twilio, provider):
    # given
    provider.answer(TWILIO_PATH, (201, {}, {"sid": "SM0123", "status": "queued"}))
    # when
    sid = TwilioSmsBackend().send(
        SmsMessage(to="+14155550123", body="Your ShowOff code is 123456.",
                   validity_seconds=600), idempotency_key=KEY)
    # then
    [req] = provider.requests
    assert req["path"] == TWILIO_PATH
    auth = base64.b64decode(req["headers"]["Authorization"].removeprefix("Basic ")).decode()
    assert auth == "AC0123456789abcdef0123456789abcdef:auth-token-secret"
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(req["body"]) == {"To": ["+14155550123"],
                                     "Body": ["Your ShowOff code is 123456."],
                                     "From": ["+15005550006"], "ValidityPeriod": ["600"]}
    assert sid == "SM0123"


def test_twilio_with_an_api_key_and_a_messaging_service(twilio, provider):
    # given
    twilio.TWILIO_API_KEY_SID = "SK0123"
    twilio.TWILIO_API_KEY_SECRET = "key-secret"
    twilio.TWILIO_MESSAGING_SERVICE_SID = "MG0123"
    provider.answer(TWILIO_PATH, (201, {}, {"sid": "SM1"}))
    # when
    TwilioSmsBackend().send(SmsMessage(to="+14155550123", body="hi"), idempotency_key=KEY)
    # then
    [req] = provider.requests
    auth = base64.b64decode(req["headers"]["Authorization"].removeprefix("Basic ")).decode()
    assert auth == "SK0123:key-secret"
    assert parse_qs(req["body"]) == {"To": ["+14155550123"], "Body": ["hi"],
                                     "MessagingServiceSid": ["MG0123"]}


@pytest.mark.parametrize(("status", "body", "error", "text"), [
    (400, {"code": 21211, "message": "The 'To' number +1 is not a valid phone number.",
           "status": 400}, InvalidRecipient, "Twilio 400 21211: The 'To' number"),
    (400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient",
           "status": 400}, InvalidRecipient, "Twilio 400 21610"),
    (429, {"code": 20429, "message": "Too Many Requests", "status": 429}, TransientError,
     "Twilio 429 20429"),
    (503, {"code": 20503, "message": "Service unavailable", "status": 503}, TransientError,
     "Twilio 503"),
    (401, {"code": 20003, "message": "Authenticate", "status": 401}, Rejected,
     "Twilio 401 20003: Authenticate"),
])
def test_twilio_errors_map_to_what_the_sender_does_next(twilio, provider, status, body, error,
                                                        text):
    # given
    provider.answer(TWILIO_PATH, (status, {}, body))
    # when
    with pytest.raises(error) as raised:
        TwilioSmsBackend().send(SmsMessage(to="+14155550123", body="x"), idempotency_key=KEY)
    # then
    assert type(raised.value) is error
    assert str(raised.value).startswith(text)


def test_twilio_without_configuration_says_what_to_set(twilio):
    twilio.TWILIO_AUTH_TOKEN = ""
    with pytest.raises(ImproperlyConfigured, match="TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"):
        TwilioSmsBackend()
    twilio.TWILIO_AUTH_TOKEN = "t"
    twilio.TWILIO_FROM_NUMBER = ""
    with pytest.raises(ImproperlyConfigured, match="TWILIO_FROM_NUMBER or"):
        TwilioSmsBackend()
