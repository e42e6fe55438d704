"""The token endpoint (kept apart from ``authentication``, which DRF imports while it loads its own views)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.views import TokenObtainPairView

from governance.models import User
from governance.services.bypass import identity_seen_record
from governance.services.ratelimit import client_ip

__all__ = ["TokenObtainView"]


class TokenObtainView(TokenObtainPairView):
    """Takes a set of user credentials and returns an access and refresh JSON web token pair to prove the
    authentication of those credentials."""

    # Also records which identity asked from which address (bypass detector ``identity_rotation``):
    # ``user:<id>`` when the credentials were good, ``name:<username>`` when they were refused. A malformed
    # body (400) records nothing.

    def post(self, request: Any, *args: Any, **kwargs: Any):
        username = request.data.get(User.USERNAME_FIELD) if hasattr(request.data, "get") else None
        try:
            response = super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            if isinstance(username, str) and username:
                identity_seen_record(ip=client_ip(request), identity=f"name:{username}")
            raise
        if response.status_code == 200 and isinstance(username, str):
            user_id = User.objects.filter(**{User.USERNAME_FIELD: username}).values_list("pk", flat=True).first()
            if user_id is not None:
                identity_seen_record(ip=client_ip(request), identity=f"user:{user_id}")
        return response
