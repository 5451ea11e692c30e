"""Rate-limit headers: every throttled response tells the client its budget.

DRF's throttles (`SimpleRateThrottle`: a sliding log of request times per cache key) decide;
`RecordsRateLimit`, mixed into every throttle of the project, notes each decision's state on
the request, and `RateLimitHeadersMiddleware` writes it on the response:

- `RateLimit-Policy: "anon";q=600;w=60, "login";q=30;w=60`: each policy that applied (its
  throttle scope), its quota `q` and window `w` in seconds (IETF draft
  "RateLimit header fields for HTTP", draft-ietf-httpapi-ratelimit-headers);
- `RateLimit: "anon";r=599;t=60, "login";r=29;t=60`: what is left `r` of each and `t`, the
  seconds until its oldest counted request leaves the window (one more request is then
  allowed);
- `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix time, seconds): the
  same for the most restrictive policy (least left; on a tie, the later reset), the form most
  client libraries read;
- a 429 also carries `Retry-After` (seconds; DRF sets it from the longest wait).

The figures come from the very history the throttle just read and wrote, so they are exact for
this request; with several API processes they are as exact as the shared Redis history is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimitState:
    policy: str
    limit: int
    window: int
    remaining: int
    reset_at: float  # Unix time at which the oldest counted request leaves the window
    now: float

    @property
    def reset_in(self) -> int:
        return max(0, math.ceil(self.reset_at - self.now))


class RecordsRateLimit:
    """Mix into a `SimpleRateThrottle` (before it in the bases): after each decision, append
    the throttle's state to the Django request's `rate_limits`."""

    def allow_request(self, request, view):
        allowed = super().allow_request(request, view)
        key = getattr(self, "key", None)
        if key is not None and getattr(self, "num_requests", None) and hasattr(self, "history"):
            # On success the history already holds this request; on failure it is full.
            history = self.history
            oldest = history[-1] if history else self.now
            state = RateLimitState(
                policy=str(self.scope or type(self).__name__), limit=self.num_requests,
                window=self.duration, remaining=max(0, self.num_requests - len(history)),
                reset_at=oldest + self.duration, now=self.now)
            django_request = getattr(request, "_request", request)
            if not hasattr(django_request, "rate_limits"):
                django_request.rate_limits = []
            django_request.rate_limits.append(state)
        return allowed


def _sf_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RateLimitHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        states: list[RateLimitState] = getattr(request, "rate_limits", None) or []
        if not states:
            return response
        response["RateLimit-Policy"] = ", ".join(
            f"{_sf_string(s.policy)};q={s.limit};w={s.window}" for s in states)
        response["RateLimit"] = ", ".join(
            f"{_sf_string(s.policy)};r={s.remaining};t={s.reset_in}" for s in states)
        tightest = min(states, key=lambda s: (s.remaining, -s.reset_at))
        response["X-RateLimit-Limit"] = str(tightest.limit)
        response["X-RateLimit-Remaining"] = str(tightest.remaining)
        response["X-RateLimit-Reset"] = str(math.ceil(tightest.reset_at))
        return response


# What a browser client may read of a response (CORS_EXPOSE_HEADERS).
HEADERS = ["RateLimit", "RateLimit-Policy", "X-RateLimit-Limit", "X-RateLimit-Remaining",
           "X-RateLimit-Reset", "Retry-After"]
