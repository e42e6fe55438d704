"""Admin base classes shared by every app."""

from collections.abc import Callable
from datetime import datetime

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.db.models import Q
from django.utils import timezone
from django.utils.html import format_html

from governance.choices import Severity
from governance.selectors import scope_to_teams


def _is_team_scoped(model) -> bool:
    return getattr(model, "team_scope_path", None) is not None


class TeamScopedAdmin(admin.ModelAdmin):
    """Rows outside the user's teams are invisible (the same helper as the API): in the changelist, in
    the choices of related-object fields (so a form cannot point at another team's object), and in the
    list filters (which would otherwise name every team)."""

    def get_queryset(self, request):
        return scope_to_teams(super().get_queryset(request), request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return self._scoped_formfield(super().formfield_for_foreignkey(db_field, request, **kwargs), request)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        return self._scoped_formfield(super().formfield_for_manytomany(db_field, request, **kwargs), request)

    def get_list_filter(self, request):
        return [self._scoped_list_filter(entry) for entry in super().get_list_filter(request)]

    @staticmethod
    def _scoped_formfield(formfield, request):
        if formfield is not None and _is_team_scoped(formfield.queryset.model):
            formfield.queryset = scope_to_teams(formfield.queryset, request.user)
        return formfield

    def _scoped_list_filter(self, entry):
        if isinstance(entry, str):
            field = get_fields_from_path(self.model, entry)[-1]
            if field.is_relation and _is_team_scoped(field.related_model):
                return (entry, admin.RelatedOnlyFieldListFilter)
        return entry


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records nobody edits by hand: audit rows, history, measurements."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


SEVERITY_COLOURS = {
    Severity.CRITICAL: "#82071e",
    Severity.HIGH: "#cf222e",
    Severity.MEDIUM: "#bc4c00",
    Severity.LOW: "#1a7f37",
    Severity.INFO: "#6e7781",
}


def severity_badge(severity: str) -> str:
    """A coloured severity label for changelists (the same colours in every app)."""
    return format_html(
        '<span class="severity-badge severity-{}" style="color: #fff; background: {}; padding: 1px 6px; '
        'border-radius: 8px; font-size: 0.85em;">{}</span>',
        severity,
        SEVERITY_COLOURS.get(severity, "#6e7781"),
        severity,
    )


class SlaBreachedListFilter(admin.SimpleListFilter):
    """Yes/no filter on "past its SLA right now". A subclass sets ``breached_q`` (a ``staticmethod``
    taking ``now`` and returning the Q of breached rows: its app's one definition) and
    ``breached_label`` (how the "yes" choice reads)."""

    title = "SLA breached"
    parameter_name = "sla_breached"
    breached_label = "Breached"
    breached_q: Callable[[datetime], Q]

    def lookups(self, request, model_admin):
        return [("yes", self.breached_label), ("no", "Not breached")]

    def queryset(self, request, queryset):
        if self.value() not in ("yes", "no"):
            return queryset
        breached = self.breached_q(timezone.now())
        return queryset.filter(breached) if self.value() == "yes" else queryset.exclude(breached)
