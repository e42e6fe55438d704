"""What each role may do in the Django admin, by app and action (the API declares roles per view).

Granting by app keeps models added by later engines covered without a migration per permission.
"""

from __future__ import annotations

from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.models import Permission

from governance.choices import Role

ALL_ACTIONS = frozenset({"view", "add", "change", "delete"})
VIEW = frozenset({"view"})
EDIT = frozenset({"view", "add", "change"})

# role -> {app label or "*": actions}
ROLE_GRANTS: dict[str, dict[str, frozenset[str]]] = {
    Role.ADMIN: {"*": ALL_ACTIONS},
    Role.GOVERNANCE_LEAD: {
        "*": VIEW,
        "governance": EDIT,
        "config": frozenset({"view", "change"}),
        "oversight": EDIT,
        "hitl": EDIT,
        "incidents": EDIT,
        "django_celery_beat": frozenset({"view", "change"}),
    },
    Role.REVIEWER: {"*": VIEW, "hitl": frozenset({"view", "change"})},
    Role.SECURITY: {"*": VIEW, "incidents": frozenset({"view", "change"})},
    Role.VIEWER: {"*": VIEW},
}

# Models only some roles may see at all, whatever the app grant says.
RESTRICTED_MODELS: dict[str, frozenset[str]] = {
    "governance.user": frozenset({Role.ADMIN}),
    "auth.group": frozenset({Role.ADMIN}),
    "token_blacklist.outstandingtoken": frozenset({Role.ADMIN, Role.SECURITY}),
    "token_blacklist.blacklistedtoken": frozenset({Role.ADMIN, Role.SECURITY}),
    "governance.auditlog": frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.SECURITY}),
    "governance.auditverification": frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.SECURITY}),
    "governance.governedchange": frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.SECURITY}),
    "governance.auditedtransaction": frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.SECURITY}),
}


def role_allows(role: str, app_label: str, model: str, action: str) -> bool:
    allowed_roles = RESTRICTED_MODELS.get(f"{app_label}.{model}")
    if allowed_roles is not None and role not in allowed_roles:
        return False
    grants = ROLE_GRANTS.get(role, {})
    return action in grants.get(app_label, grants.get("*", frozenset()))


class RolePermissionBackend(BaseBackend):
    """Django permission checks answered from the user's roles (service accounts get none)."""

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or getattr(user_obj, "is_service_account", False):
            return set()
        cached = getattr(user_obj, "_vigil_role_perms", None)
        if cached is None:
            roles = user_obj.role_names
            cached = set()
            for app_label, codename in Permission.objects.values_list("content_type__app_label", "codename"):
                action, _, model = codename.partition("_")
                if any(role_allows(role, app_label, model, action) for role in roles):
                    cached.add(f"{app_label}.{codename}")
            user_obj._vigil_role_perms = cached
        return cached

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)

    def has_module_perms(self, user_obj, app_label) -> bool:
        return any(perm.startswith(f"{app_label}.") for perm in self.get_all_permissions(user_obj))
