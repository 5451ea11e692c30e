"""`Idempotency-Key` for money-moving endpoints.

Same user + same key + same request (method, path, body) → the first response again, and no coins
move again. Same key with a different request → 422. No key → the request simply runs.

How it stays right under concurrency: the key row is INSERTed first, inside the same database
transaction as the movement, and only committed with its stored response. A second request with
the same key (another connection, at the same moment) blocks on the unique index until the first
transaction ends: if it committed, the second gets the unique violation and replays the stored
response; if it rolled back, the second one runs. There is never an "in progress" row for a
client to see. Only 2xx responses are stored: a failed request moved nothing, so running it again
with the same key is the retry the client wants.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from django.db import IntegrityError, transaction
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from .models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


def request_fingerprint(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    raw = f"{request.method}\n{request.path}\n{body}".encode()
    return hashlib.sha256(raw).hexdigest()


def _key_problem(key: str) -> str | None:
    if not key or len(key) > MAX_KEY_LENGTH:
        return f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters."
    if not key.isascii() or not key.isprintable():
        return f"{HEADER} must be printable ASCII (a UUID is a good choice)."
    return None


def _replay(record: IdempotencyKey, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        return Response(
            {"type": "idempotency_key_reused",
             "detail": f"This {HEADER} was already used with a different request; use a new "
                       f"key for a new request."},
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    response = Response(record.response_body, status=record.response_status)
    response[REPLAY_HEADER] = "true"
    return response


def idempotent(request: Request, run: Callable[[], Response]) -> Response:
    """Run `run()` (which moves coins and returns the response) at most once per key."""
    key = request.headers.get(HEADER)
    if key is None:
        return run()
    problem = _key_problem(key)
    if problem:
        return Response({"type": "invalid_idempotency_key", "detail": problem},
                        status=status.HTTP_400_BAD_REQUEST)
    fingerprint = request_fingerprint(request)
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(user=request.user, key=key,
                                                       fingerprint=fingerprint)
        except IntegrityError:
            # The first request committed (we waited for it on the unique index): its row is
            # visible to this new statement under READ COMMITTED.
            return _replay(IdempotencyKey.objects.get(user=request.user, key=key), fingerprint)
        response = run()
        if 200 <= response.status_code < 300:
            record.response_status = response.status_code
            record.response_body = json.loads(JSONRenderer().render(response.data))
            record.save(update_fields=["response_status", "response_body"])
        else:
            # Nothing moved; forget the key so the client can retry with it.
            transaction.set_rollback(True)
        return response
