"""Project-wide DRF glue: one JSON error format, throttles, client IP, and error docs.

Every error the API returns has the same shape, so clients handle one format:

    {"type": "validation_error", "detail": "Some fields are invalid; see errors.",
     "errors": {"email": ["Enter a valid email address."]}}

`type` is a stable machine code, `detail` a sentence for people, `errors` (validation only)
maps each field (or `non_field_errors`) to its messages.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, throttling
from rest_framework.response import Response
from rest_framework.settings import api_settings

from .ratelimit import RecordsRateLimit

logger = logging.getLogger(__name__)


class RateLimited(Exception):
    """Raised by services when a business rate limit or lock applies (answered as 429)."""

    def __init__(self, detail: str, *, wait: float | None = None):
        super().__init__(detail)
        self.detail = detail
        self.wait = wait


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or the one ACCOUNTS_TRUSTED_PROXY_COUNT proxies back.

    X-Forwarded-For is only believed as far as our own proxies wrote it; a client can put
    anything in front.
    """
    proxies = getattr(settings, "ACCOUNTS_TRUSTED_PROXY_COUNT", 0)
    candidate = request.META.get("REMOTE_ADDR", "")
    if proxies:
        forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
                     if p.strip()]
        if len(forwarded) >= proxies:
            candidate = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


MAX_ID = 2**63 - 1


def object_id(value: int, what: str = "object") -> int:
    """A path id that fits the database's bigint, else 404 (never a database error)."""
    if not 0 < value <= MAX_ID:
        raise exceptions.NotFound(f"No such {what}.")
    return value


class InvalidCursor(exceptions.APIException):
    status_code = 400
    default_code = "invalid_cursor"
    default_detail = ("This cursor was not given out by this list, or it was altered; start "
                      "again from the first page (no cursor).")


class _RatesFromSettings:
    """DRF copies DEFAULT_THROTTLE_RATES at import; read it per request so overrides apply."""

    def get_rate(self):
        rates = api_settings.user_settings.get("DEFAULT_THROTTLE_RATES", {})
        return rates.get(self.scope)

    def get_ident(self, request):
        return client_ip(request) or "unknown"


# Each throttle also records its state for the rate-limit headers (showoff/ratelimit.py).


class AnonRateThrottle(_RatesFromSettings, RecordsRateLimit, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_RatesFromSettings, RecordsRateLimit, throttling.UserRateThrottle):
    pass


class _ViewScopedThrottle(_RatesFromSettings, RecordsRateLimit, throttling.SimpleRateThrottle):
    """A throttle whose rate is named by an attribute of the view (`scope_attribute`)."""

    scope_attribute = "throttle_scope"

    def __init__(self):
        # The scope is known only once the view is; see allow_request.
        pass

    def allow_request(self, request, view):
        self.scope = getattr(view, self.scope_attribute, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class ScopedIPThrottle(_ViewScopedThrottle):
    """Per client IP, whoever is signed in: for registration, login and phone codes."""

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ScopedEmailThrottle(_ViewScopedThrottle):
    """Per email address, for views that send mail to one: `throttle_email_scope` names the
    rate, `throttle_email(request)` the address (None: not throttled here; the view's
    validation answers). The cache key holds a keyed hash, never the address."""

    scope_attribute = "throttle_email_scope"

    def get_cache_key(self, request, view):
        import hashlib
        import hmac

        email = view.throttle_email(request)
        if not isinstance(email, str) or "@" not in email:
            return None
        key = hashlib.sha256(b"showoff.throttle-email:" + settings.SECRET_KEY.encode()).digest()
        ident = hmac.new(key, email.strip().lower().encode(), hashlib.sha256).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


_TYPES = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "parse_error",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def _type_of(exc: exceptions.APIException) -> str:
    for cls in type(exc).__mro__:
        if cls in _TYPES:
            return _TYPES[cls]
    code = exc.default_code if isinstance(exc.default_code, str) else "error"
    return code


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, RateLimited):
        exc = exceptions.Throttled(wait=exc.wait, detail=exc.detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, SuspiciousOperation):
        # Too many form fields, a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a malformed
        # multipart request: the client's input, not our bug.
        exc = exceptions.ParseError(f"The request was refused: {exc}")

    # Imported here: rest_framework.views loads the throttle classes of this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None:
        # A bug: logged with its traceback, answered as JSON rather than an HTML page.
        logger.exception("unhandled error in %s", context.get("view"), exc_info=exc)
        return Response(
            {"type": "server_error", "detail": "Something went wrong on our side; it has been "
             "logged. Please try again later."},
            status=500,
        )

    assert isinstance(exc, exceptions.APIException)
    body: dict[str, Any] = {"type": _type_of(exc)}
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data
        if isinstance(errors, list):
            errors = {api_settings.NON_FIELD_ERRORS_KEY: errors}
        body["detail"] = "Some fields are invalid; see errors."
        body["errors"] = errors
    else:
        data = response.data
        if isinstance(data, dict) and "detail" in data:
            body["detail"] = str(data["detail"])
            code = getattr(data["detail"], "code", None)
            if isinstance(code, str) and code not in (body["type"], "invalid"):
                body["code"] = code
        else:
            body["detail"] = str(exc.detail)
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        body["retry_after"] = int(exc.wait)
    response.data = body
    return response


# --- OpenAPI: document the error responses every operation can give ---------------------------

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "description": "Stable machine-readable error code."},
        "detail": {"type": "string", "description": "What went wrong, for people."},
        "code": {"type": "string", "description": "A finer code where there is one."},
        "errors": {
            "type": "object",
            "additionalProperties": {},
            "description": "Validation errors: field name (or non_field_errors) → messages.",
        },
        "retry_after": {"type": "integer", "description": "Seconds to wait (throttled)."},
    },
    "required": ["type", "detail"],
}

_ERROR_RESPONSES = {
    "400": "Invalid input; `errors` names each field and its problem.",
    "401": "Not signed in, or the token is invalid, expired or revoked.",
    "403": "Signed in but not allowed to do this.",
    "404": "No such object (or it was deleted).",
    "415": "The body's content type is not one this operation accepts.",
    "429": "Too many requests; retry after `retry_after` seconds.",
}


_INT = {"type": "integer"}
# What a throttled answer carries (showoff/ratelimit.py); successful answers carry the same
# RateLimit / X-RateLimit-* headers without Retry-After.
RATE_LIMIT_HEADERS = {
    "Retry-After": {"required": True, "schema": _INT,
                    "description": "Seconds to wait before trying again."},
    "RateLimit": {"schema": {"type": "string"}, "description": 'Per policy: `"<name>";r=<left>'
                  ';t=<seconds until one more request is allowed>` (IETF draft).'},
    "RateLimit-Policy": {"schema": {"type": "string"},
                         "description": 'Per policy: `"<name>";q=<quota>;w=<window seconds>`.'},
    "X-RateLimit-Limit": {"schema": _INT, "description": "Quota of the tightest policy."},
    "X-RateLimit-Remaining": {"schema": _INT, "description": "Requests left in it."},
    "X-RateLimit-Reset": {"schema": _INT, "description": "Unix time (s) when its oldest "
                          "counted request leaves the window."},
}


def document_error_responses(result, generator, request, public):
    """Spectacular post-processing hook: every operation documents the JSON error shape."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            wanted = ["401", "403", "429"]
            if method != "get" or operation.get("parameters"):
                wanted.append("400")
            if "{" in path or operation.get("parameters"):
                wanted.append("404")  # a missing object, or a stale pagination cursor
            if "requestBody" in operation:
                wanted.append("415")
            for status in wanted:
                responses.setdefault(status, {
                    "description": _ERROR_RESPONSES[status],
                    "content": {"application/json": {"schema": ref}},
                })
            if "429" in responses:
                responses["429"].setdefault("headers", RATE_LIMIT_HEADERS)
            responses.setdefault("500", {
                "description": "A bug on our side (logged).",
                "content": {"application/json": {"schema": ref}},
            })
    return result


# --- URLs that match no view: JSON under /api/, Django's pages elsewhere -----------------------


def page_not_found(request, exception=None):
    from django.http import JsonResponse
    from django.views import defaults

    if request.path.startswith("/api/"):
        return JsonResponse({"type": "not_found", "detail": "No such endpoint or object."},
                            status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    from django.http import JsonResponse
    from django.views import defaults

    if request.path.startswith("/api/"):
        return JsonResponse({"type": "server_error", "detail": "Something went wrong on our "
                             "side; it has been logged. Please try again later."}, status=500)
    return defaults.server_error(request)
