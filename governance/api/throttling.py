"""Enforcement of the DB-backed rate limiter (``governance.services.ratelimit``) on every endpoint.

- ``VigilRateThrottle`` is the only entry of ``REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]``, so every DRF
  view — including simplejwt's token views, which set no throttle of their own — counts each request
  against its endpoint group. DRF runs throttles after authentication and permission checks, so the
  caller key is the authenticated user when there is one, else the client IP. Over the limit DRF raises
  ``Throttled``; the API exception handler turns it into the 429 envelope (code ``rate_limited``, the
  message names the limit) with ``Retry-After``.
- ``RateLimitMiddleware`` is the one place that writes the ``RateLimit-Limit``, ``RateLimit-Remaining``
  and ``RateLimit-Reset`` headers (from the decision the throttle leaves on the request), and it limits
  the non-DRF writes — the admin's POSTs — under ``admin_write``. Health probes and the Prometheus
  scrape are exempt by the explicit allow-list ``RATE_LIMIT_EXEMPT``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework.throttling import BaseThrottle

from governance.services.bypass import identity_seen_record
from governance.services.ratelimit import (
    RATE_LIMIT_EXEMPT,
    RateDecision,
    caller_key,
    client_ip,
    endpoint_group,
    rate_limit_for,
    rate_limit_hit,
)

__all__ = [
    "DECISION_ATTRIBUTE",
    "MIDDLEWARE_PATH",
    "RateLimitMiddleware",
    "VigilRateThrottle",
    "rate_limit_coverage",
    "rate_limit_headers",
]

DECISION_ATTRIBUTE = "vigil_rate_decision"
MIDDLEWARE_PATH = "governance.api.throttling.RateLimitMiddleware"


def _decide(request) -> RateDecision:
    group = endpoint_group(request)
    limit, window_seconds = rate_limit_for(request, group)
    return rate_limit_hit(key=caller_key(request), group=group, limit=limit, window_seconds=window_seconds)


def rate_limit_headers(decision: RateDecision) -> dict[str, str]:
    """The IETF ``RateLimit-*`` headers of a decision (Reset is delta-seconds until the window ends)."""
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.retry_after_seconds),
    }


def rate_limit_message(decision: RateDecision) -> str:
    return (
        f"Rate limit exceeded: at most {decision.limit} requests per {decision.window_seconds} s for "
        f"'{decision.group}' endpoints; retry in {decision.retry_after_seconds} s."
    )


class VigilRateThrottle(BaseThrottle):
    """DRF throttle: one atomic counter upsert per request; refuses once the caller's window count > limit."""

    decision: RateDecision | None = None

    def allow_request(self, request, view) -> bool:
        self.decision = _decide(request)
        # DRF's Request proxies reads to the HttpRequest but keeps writes to itself: store the decision on
        # the HttpRequest, where the middleware (headers) and the exception handler (message) find it.
        setattr(request._request, DECISION_ATTRIBUTE, self.decision)
        if not self.decision.allowed and (key := caller_key(request)).startswith("user:"):
            # Bypass detector ``identity_rotation``: which identities an address gets refused under.
            identity_seen_record(ip=client_ip(request), identity=key)
        return self.decision.allowed

    def wait(self) -> float | None:
        return float(self.decision.retry_after_seconds) if self.decision is not None else None


class RateLimitMiddleware:
    """Adds the RateLimit headers to every limited response and limits admin writes (``admin_write``).

    Installed after ``AuthenticationMiddleware`` so admin writes are keyed by the session user.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if endpoint_group(request) == "admin_write":
            decision = _decide(request)
            setattr(request, DECISION_ATTRIBUTE, decision)
            if not decision.allowed:
                response = HttpResponse(rate_limit_message(decision), status=429, content_type="text/plain")
                response["Retry-After"] = str(decision.retry_after_seconds)
                return self._with_headers(response, decision)
        response = self.get_response(request)
        decision = getattr(request, DECISION_ATTRIBUTE, None)
        return self._with_headers(response, decision) if decision is not None else response

    @staticmethod
    def _with_headers(response: HttpResponse, decision: RateDecision) -> HttpResponse:
        for header, value in rate_limit_headers(decision).items():
            response[header] = value
        return response


def _view_is_throttled(view) -> bool:
    view_class = getattr(view, "cls", None)
    classes = getattr(view_class, "throttle_classes", None) or ()
    return any(isinstance(cls, type) and issubclass(cls, VigilRateThrottle) for cls in classes)


def _is_admin(route: str) -> bool:
    return route == "/admin" or route.startswith("/admin/")


def rate_limit_coverage() -> tuple[int, int, list[str]]:
    """``(limited, total, unlimited routes)`` over every URL pattern except the exempt allow-list.

    A DRF route is limited when its view's throttle classes include ``VigilRateThrottle``; an admin route
    when ``RateLimitMiddleware`` is installed (it limits admin writes); any other route is unlimited.
    """
    from governance.services.endpoints import iter_endpoints  # the URL conf imports views, which import us

    middleware = MIDDLEWARE_PATH in settings.MIDDLEWARE
    limited, unlimited = 0, []
    for endpoint in iter_endpoints():
        if endpoint.name in RATE_LIMIT_EXEMPT:
            continue
        if _view_is_throttled(endpoint.view) or (middleware and _is_admin(endpoint.route)):
            limited += 1
        else:
            unlimited.append(endpoint.route)
    return limited, limited + len(unlimited), sorted(set(unlimited))
