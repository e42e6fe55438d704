"""Admin base classes shared by every app."""

from django.contrib import admin

from governance.selectors import scope_to_teams


class TeamScopedAdmin(admin.ModelAdmin):
    """Rows outside the user's teams are invisible (the same helper as the API)."""

    def get_queryset(self, request):
        return scope_to_teams(super().get_queryset(request), request.user)


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records nobody edits by hand: audit rows, history, measurements."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
