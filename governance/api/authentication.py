"""JWT authentication that counts failed attempts per client IP (bypass detection, detector ``invalid_jwt``).

simplejwt's ``JWTAuthentication`` answers a missing ``Authorization`` header with ``None`` (anonymous — not
a failure) and raises ``AuthenticationFailed`` for a malformed header, a bad signature, ``alg: none``, an
expired or otherwise invalid token, or an unknown/inactive user. Every such raise is counted here, in the
same atomic ``rate_limits`` counter the rate limiter uses (group ``auth_failures``, one-hour window), and
then re-raised unchanged, so the caller still gets its 401. ``bypass_scan_invalid_tokens`` reads the counts.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication

from governance.services.bypass import auth_failure_record

__all__ = ["CountingJWTAuthentication", "CountingJWTScheme"]


class CountingJWTAuthentication(JWTAuthentication):
    """``JWTAuthentication`` that records every failed authentication against the client IP."""

    def authenticate(self, request: Any):
        try:
            return super().authenticate(request)
        except AuthenticationFailed as exc:
            auth_failure_record(request=request, error=exc)
            raise


class CountingJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of ``CountingJWTAuthentication``: the same ``jwtAuth`` bearer scheme as
    simplejwt's (drf-spectacular matches extensions by exact class, not by subclass)."""

    target_class = "governance.api.authentication.CountingJWTAuthentication"
