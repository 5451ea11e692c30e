"""Project-wide DRF glue: one JSON error format, throttles, client IP, and error docs.

Every error the API returns has the same shape, so clients handle one format:

    {"type": "validation_error", "detail": "Some fields are invalid; see errors.",
     "errors": {"email": ["Enter a valid email address."]}}

`type` is a stable machine code, `detail` a sentence for people, `errors` (validation only)
maps each field (or `non_field_errors`) to its messages.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, QueryDict
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, pagination, relations, serializers, throttling
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


def page_size_param(request, *, default: int, maximum: int, name: str = "page_size") -> int:
    """`?page_size=` of every paged list: a whole number from 1 (above `maximum` reads as the
    maximum), the default when absent; anything else is a 400, as the schema's integer type
    says (DRF would quietly use the default)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise exceptions.ValidationError({name: [f"A whole number from 1 to {maximum}."]})
    return min(int(raw), maximum)


class CursorPage(pagination.CursorPagination):
    """Every cursor-paged list of the API: opaque `next` / `previous` links, and a cursor this
    list did not give out (not base64, junk, a position of the wrong type for the ordering
    field, out of range) is a 400 `invalid_cursor`, never a 404 or a database error.

    Subclasses set `ordering`, `page_size` and `max_page_size`."""

    page_size_query_param = "page_size"

    def get_page_size(self, request):
        return page_size_param(request, default=self.page_size, maximum=self.max_page_size)

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model  # decode_cursor checks the position against its field
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        encoded = request.query_params.get(self.cursor_query_param)
        try:
            # Strict base64: DRF's lenient decode drops foreign characters, so junk would
            # quietly become the first page.
            if encoded is not None:
                base64.b64decode(encoded.encode("ascii"), validate=True)
            cursor = super().decode_cursor(request)
        except (exceptions.NotFound, ValueError):
            raise InvalidCursor()
        if cursor is None or cursor.position is None:
            return cursor
        name = self.ordering[0].lstrip("-")
        try:
            field = self._model._meta.get_field(name)
        except FieldDoesNotExist:
            return cursor  # an annotation: the database compares it
        try:
            # The ordering fields here are ids and timestamps: their own validators bound ids
            # to the column's range, and a timestamp we hand out always has its zone.
            value = field.to_python(cursor.position)
            for validator in field.validators:
                validator(value)
        except (DjangoValidationError, TypeError, ValueError, OverflowError):
            raise InvalidCursor()
        if getattr(value, "tzinfo", False) is None:
            raise InvalidCursor()
        return cursor


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


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "request_too_large"


def _human_bytes(n: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} bytes"


def request_too_large() -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than the "
                           f"{_human_bytes(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)} this endpoint "
                           "accepts.")


# An error message repeats at most this many characters of what the client sent (DRF's
# messages quote the input: a 100 KB value must not come back as a 100 KB error).
ECHO_LIMIT = 300


def cap_echo(value: Any, limit: int = ECHO_LIMIT) -> Any:
    """`value` (a message, or lists and dicts of them) with each long string cut in the middle,
    saying how much was cut: the start and the end (where DRF puts the reason) stay."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        half = limit // 2
        return f"{value[:half]}…[{len(value) - limit:,} characters cut]…{value[-half:]}"
    if isinstance(value, dict):
        return {cap_echo(k, limit): cap_echo(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [cap_echo(v, limit) for v in value]
    return value


# --- strict JSON types on write endpoints --------------------------------------------------
# DRF coerces: {"text": 12345} becomes "12345" and {"amount": "10"} becomes 10. A typed client
# (and the OpenAPI schema) says a string is a string: a JSON body must carry each field in the
# type the schema gives it, or the request is a 400 naming the field. Query strings and form
# fields are text by nature and keep DRF's parsing.


def _json_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else "an unknown value"


_STRINGS = (serializers.CharField, serializers.DateField, serializers.DateTimeField,
            serializers.TimeField, serializers.DurationField, serializers.UUIDField)


def _expected_type(field: serializers.Field) -> tuple[tuple[type, ...], str] | None:
    """The Python types a JSON value of this field may have, and how to say it; None: any."""
    if isinstance(field, serializers.BooleanField):
        return (bool,), "a boolean (true or false)"
    if isinstance(field, serializers.IntegerField):
        return (int,), "an integer"
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        return (int, float), "a number"
    if isinstance(field, serializers.ChoiceField):
        kinds = {type(choice) for choice in field.choices}
        if kinds == {str}:
            return (str,), "a string"
        return ((int,), "an integer") if kinds == {int} else None
    if isinstance(field, _STRINGS):
        return (str,), "a string"
    if isinstance(field, relations.PrimaryKeyRelatedField):
        pk = field.get_queryset().model._meta.pk
        integer = pk.get_internal_type() in ("AutoField", "BigAutoField", "IntegerField",
                                             "BigIntegerField", "SmallAutoField")
        return ((int,), "an integer") if integer else ((str,), "a string")
    return None


def _type_error(field: serializers.Field, value: Any) -> Any:
    """The errors of one JSON value against its field (nested like DRF's), or None."""
    if value is None or field.read_only:
        return None  # allow_null and read-only are the field's own business

    def wrong(expected: str) -> list:
        return [exceptions.ErrorDetail(f"Expected {expected}, got {_json_name(value)}.",
                                       code="invalid_type")]

    if isinstance(field, serializers.ListSerializer | serializers.ListField
                  | serializers.MultipleChoiceField | relations.ManyRelatedField):
        if not isinstance(value, list):
            return wrong("an array")
        child = getattr(field, "child", None) or getattr(field, "child_relation", None)
        if child is None:
            return None
        errors = {i: e for i, item in enumerate(value) if (e := _type_error(child, item))}
        return errors or None
    if isinstance(field, serializers.Serializer):
        if not isinstance(value, dict):
            return wrong("an object")
        return json_type_errors(field.fields, value) or None
    if isinstance(field, serializers.DictField):
        if not isinstance(value, dict):
            return wrong("an object")
        errors = {k: e for k, v in value.items() if (e := _type_error(field.child, v))}
        return errors or None
    expected = _expected_type(field)
    if expected is None:
        return None
    types, text = expected
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        return wrong(text)
    # The schema's maxLength is about what is sent: DRF would measure the string after
    # trimming its whitespace, and accept a longer one.
    limit = getattr(field, "max_length", None)
    if isinstance(field, serializers.CharField) and limit is not None and len(value) > limit:
        return [exceptions.ErrorDetail(
            f"Ensure this field has no more than {limit} characters.", code="max_length")]
    return None


def json_type_errors(fields: Mapping[str, serializers.Field], data: Mapping) -> dict:
    return {name: error for name, field in fields.items()
            if name in data and (error := _type_error(field, data[name]))}


class StrictJsonTypes:
    """Mixin for input serializers: a JSON body's values must have the schema's JSON types.
    (`class FooInput(StrictJsonTypes, serializers.Serializer)`; nested serializers and list
    items are checked from the top.)"""

    def to_internal_value(self, data):
        if isinstance(data, Mapping) and not isinstance(data, QueryDict):
            errors = json_type_errors(self.fields, data)
            if errors:
                raise exceptions.ValidationError(errors)
        return super().to_internal_value(data)


class InputSerializer(StrictJsonTypes, serializers.Serializer):
    """The base of every write endpoint's input."""


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
    elif isinstance(exc, RequestDataTooBig):
        exc = request_too_large()
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
    response.data = cap_echo(body)
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
    "400": "Invalid input; `errors` names each field and its problem (`invalid_cursor`: a "
           "pagination cursor this list did not give out).",
    "401": "Not signed in, or the token is invalid, expired or revoked.",
    "403": "Signed in but not allowed to do this.",
    "404": "No such object (or it was deleted).",
    "413": "The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) allows.",
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
            if "{" in path:
                wanted.append("404")
            if "requestBody" in operation:
                wanted.extend(["413", "415"])
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


# --- OpenAPI links: what a client can call next with what an answer gave it ------------------

_ID = "$response.body#/id"
# (operation, status) -> {link name: (target operation, parameters, request body)}
LINKS: dict[tuple[str, str], dict[str, tuple[str, dict, dict | None]]] = {
    ("auth_register_create", "201"): {
        "GetProfile": ("users_retrieve", {"user_id": _ID}, None),
        "FollowUser": ("users_follow_create", {"user_id": _ID}, None),
        "SendCoins": ("coins_transfers_create", {}, {"recipient_id": _ID}),
    },
    ("posts_create", "201"): {
        "GetPost": ("posts_retrieve", {"post_id": _ID}, None),
        "EditPost": ("posts_partial_update", {"post_id": _ID}, None),
        "DeletePost": ("posts_destroy", {"post_id": _ID}, None),
        "LikePost": ("posts_like_create", {"post_id": _ID}, None),
        "CommentOnPost": ("posts_comments_create", {"post_id": _ID}, None),
        "ListComments": ("posts_comments_list", {"post_id": _ID}, None),
        "ViewPost": ("posts_views_create", {"post_id": _ID}, None),
        "TipAuthor": ("coins_transfers_create", {}, {"post_id": _ID}),
        "PostStats": ("analytics_posts_stats_retrieve", {"post_id": _ID}, None),
        "ReportPost": ("reports_create", {}, {"target_type": "post", "target_id": _ID}),
    },
    ("posts_like_create", "200"): {
        "UnlikePost": ("posts_like_destroy", {"post_id": "$request.path.post_id"}, None),
    },
    ("posts_comments_create", "201"): {
        "DeleteComment": ("posts_comments_destroy", {"post_id": "$request.path.post_id",
                                                     "comment_id": _ID}, None),
    },
    ("coins_purchases_create", "201"): {
        "GetOrder": ("coins_purchases_retrieve", {"order_id": _ID}, None),
    },
    ("coins_withdrawals_create", "201"): {
        "GetWithdrawal": ("coins_withdrawals_retrieve", {"withdrawal_id": _ID}, None),
    },
    ("media_uploads_create", "201"): {
        "GetUpload": ("media_uploads_retrieve", {"session_id": _ID}, None),
        "SendChunk": ("media_uploads_update", {"session_id": _ID}, None),
        "CompleteUpload": ("media_uploads_complete_create", {"session_id": _ID}, None),
    },
    ("media_videos_create", "201"): {
        "GetVideo": ("media_videos_retrieve", {"video_id": _ID}, None),
    },
    ("notifications_devices_create", "201"): {
        "DeleteDevice": ("notifications_devices_destroy", {"device_id": _ID}, None),
    },
    ("notifications_bulk_create", "202"): {
        "GetBulk": ("notifications_bulk_retrieve", {"bulk_id": _ID}, None),
    },
    ("users_follow_create", "200"): {
        "Unfollow": ("users_follow_destroy", {"user_id": "$request.path.user_id"}, None),
        "ListFollowers": ("users_followers_list", {"user_id": "$request.path.user_id"}, None),
    },
    ("users_block_create", "200"): {
        "Unblock": ("users_block_destroy", {"user_id": "$request.path.user_id"}, None),
    },
}


def add_links(result, generator, request, public):
    """Spectacular post-processing hook: the OpenAPI links of `LINKS` (clients and the
    stateful property-based run follow them). A link to an operation that is not in the schema
    is an error here, not a silent gap."""
    operations = {op["operationId"]: op for item in result.get("paths", {}).values()
                  for op in item.values() if isinstance(op, dict) and "operationId" in op}
    for (source, status), links in LINKS.items():
        response = operations[source]["responses"][status]
        for name, (target, parameters, body) in links.items():
            assert target in operations, f"link {name}: no operation {target}"
            link: dict[str, Any] = {"operationId": target}
            if parameters:
                link["parameters"] = parameters
            if body is not None:
                link["requestBody"] = body
            response.setdefault("links", {})[name] = link
    return result


# --- URLs that match no view: JSON under /api/, Django's pages elsewhere -----------------------


NOT_FOUND = {"type": "not_found", "detail": "No such endpoint or object."}


@csrf_exempt  # any method: the answer is the same 404 and nothing changes
def api_not_found(request, unmatched: str = ""):
    """The last route under /api/: any path no view matched gets the JSON 404 whatever DEBUG
    says (Django's own 404 handler is replaced by an HTML debug page when DEBUG is on). A path
    that exists with a trailing slash says so, since a redirect would lose a POST's body."""
    from django.http import JsonResponse
    from django.urls import Resolver404, resolve

    path = request.path
    if not path.endswith("/"):
        try:
            match = resolve(path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            return JsonResponse({"type": "not_found",
                                 "detail": f"No such endpoint: {path}. Did you mean {path}/ "
                                           "(with the trailing slash)?"}, status=404)
    return JsonResponse(NOT_FOUND, status=404)


def page_not_found(request, exception=None):
    from django.http import JsonResponse
    from django.views import defaults

    if request.path.startswith("/api/"):
        return JsonResponse(NOT_FOUND, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    from django.http import JsonResponse
    from django.views import defaults

    if request.path.startswith("/api/"):
        return JsonResponse({"type": "server_error", "detail": "Something went wrong on our "
                             "side; it has been logged. Please try again later."}, status=500)
    return defaults.server_error(request)
