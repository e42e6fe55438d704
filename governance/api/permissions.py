"""Role-based access for the API. Roles are Django groups (``governance.choices.Role``)."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from governance.choices import HUMAN_ROLES, Role

DEFAULT_READ_ROLES = HUMAN_ROLES
DEFAULT_WRITE_ROLES = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD})


class RolePermission(BasePermission):
    """Authenticated callers holding one of the view's roles.

    A view declares ``read_roles`` (safe methods) and ``write_roles`` (everything else), or
    ``action_roles = {"<viewset action>": roles}`` for individual actions. Defaults: every human role
    reads; admin and governance_lead write. Superusers pass. Unauthenticated callers get 401; callers
    without a role the view accepts get 403 (objects outside their teams are 404 by scoping).
    """

    message = "Your role does not allow this operation."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if user.is_superuser:
            return True
        action = getattr(view, "action", None)
        action_roles = getattr(view, "action_roles", {})
        if action in action_roles:
            roles = action_roles[action]
        elif request.method in SAFE_METHODS:
            roles = getattr(view, "read_roles", DEFAULT_READ_ROLES)
        else:
            roles = getattr(view, "write_roles", DEFAULT_WRITE_ROLES)
        return user.has_role(*roles)
