"""Behaviour every Vigil API view shares."""

from rest_framework.exceptions import NotFound

from governance.selectors import is_uuid, scope_to_teams


class TeamScopedMixin:
    """Every queryset passes through the one scoping helper: rows outside the caller's teams do not
    exist for them (lookups answer 404)."""

    def get_queryset(self):
        return scope_to_teams(super().get_queryset(), self.request.user)


class UUIDLookupMixin:
    """``get_object`` for UUID primary keys in the view's (already scoped) queryset: a malformed id is a
    404 like an unknown one (never a database cast error), and the message names what was looked for
    (``object_name``, e.g. "review item")."""

    object_name = "object"

    def get_object(self):
        pk = self.kwargs["pk"]
        found = self.get_queryset().filter(pk=pk).first() if is_uuid(pk) else None
        if found is None:
            raise NotFound(f"No {self.object_name} {pk!r}.")
        return found
