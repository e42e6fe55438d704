"""Behaviour every Vigil API view shares."""

from governance.selectors import scope_to_teams


class TeamScopedMixin:
    """Every queryset passes through the one scoping helper: rows outside the caller's teams do not
    exist for them (lookups answer 404)."""

    def get_queryset(self):
        return scope_to_teams(super().get_queryset(), self.request.user)
