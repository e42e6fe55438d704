"""Admin of the event pipeline: read-only events, batches and alerts (with the operator actions the
services offer), detection rules whose switches are changed through ``rules_admin`` (audited)."""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.db import transaction

from governance.admin_base import ReadOnlyAdmin, TeamScopedAdmin
from oversight.models import Alert, DetectionRule, EventRaw, IngestBatch, SystemHeartbeat
from oversight.services.rules_admin import EDITABLE_FIELDS, DetectionRuleChanged, detection_rule_update


class ProcessedListFilter(admin.SimpleListFilter):
    """Whether the processing engine has evaluated the row (``processed_at`` set: the outbox mark)."""

    title = "processed"
    parameter_name = "processed"

    def lookups(self, request, model_admin):
        return [("yes", "Processed"), ("no", "Not processed yet")]

    def queryset(self, request, queryset):
        if self.value() in {"yes", "no"}:
            return queryset.filter(processed_at__isnull=self.value() == "no")
        return queryset


@admin.register(EventRaw)
class EventRawAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    list_display = ["event_id", "system", "category", "severity", "signal", "value", "occurred_at", "processed_at"]
    list_filter = ["category", "severity", ProcessedListFilter, ("received_at", admin.DateFieldListFilter)]
    search_fields = ["signal", "system__name", "scenario_id"]
    search_help_text = "An event_id (exact), or part of a signal, system name or scenario id."
    date_hierarchy = "occurred_at"
    list_select_related = ["system"]
    show_full_result_count = False  # the table is large: no second COUNT(*) per page
    ordering = ["-id"]
    fieldsets = (
        (None, {"fields": ("event_id", "system", "category", "severity", "signal", "value")}),
        ("Time", {"fields": ("occurred_at", "received_at", "processed_at")}),
        ("Context", {"fields": ("batch", "scenario_id", "attributes")}),
    )

    def get_search_results(self, request, queryset, search_term):
        # An event_id is looked up exactly (the unique index), never with a LIKE over millions of rows.
        try:
            return queryset.filter(event_id=uuid.UUID(search_term.strip())), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)


def _is_admin_role(request) -> bool:
    return getattr(request.user, "is_admin_role", False)  # the login page asks with an anonymous user


class AdminRoleOnlyAdmin(admin.ModelAdmin):
    """Rows that span teams (``team_scope_path = None``): only the admin role browses them."""

    def has_module_permission(self, request):
        return _is_admin_role(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return _is_admin_role(request) and super().has_view_permission(request, obj)


@admin.register(IngestBatch)
class IngestBatchAdmin(AdminRoleOnlyAdmin, ReadOnlyAdmin):
    list_display = [
        "id",
        "received_at",
        "submitted_by",
        "simulation",
        "accepted",
        "duplicates",
        "processed_at",
        "processing_ms",
        "alerts_fired",
        "enqueue_count",
    ]
    list_filter = [ProcessedListFilter]
    list_select_related = ["submitted_by", "simulation"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    actions = ["reenqueue_processing"]

    def has_reenqueue_permission(self, request):
        return _is_admin_role(request)

    @admin.action(description="Re-enqueue processing", permissions=["reenqueue"])
    def reenqueue_processing(self, request, queryset):
        from oversight.services.processing import enqueue_batches

        selected = list(queryset.values_list("pk", flat=True))
        sent = enqueue_batches(batch_ids=selected, reason=f"re-enqueued in the admin by {request.user.get_username()}")
        skipped = len(selected) - sent
        note = f"; {skipped} already processed were skipped" if skipped else ""
        self.message_user(request, f"{sent} batch(es) re-enqueued for processing{note}.")


@admin.register(DetectionRule)
class DetectionRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "category", "config_key", "severity", "enabled"]
    list_filter = ["kind", "enabled", "category"]
    search_fields = ["name", "signal", "config_key", "description"]
    ordering = ["kind", "name"]
    fields = ["name", "kind", "category", "signal", "config_key", *EDITABLE_FIELDS, "created_at", "updated_at"]
    readonly_fields = ["name", "kind", "category", "signal", "config_key", "created_at", "updated_at"]
    actions = ["enable", "disable"]

    def has_add_permission(self, request):
        return False  # the built-in rules are declared in oversight/rules.py

    def has_delete_permission(self, request, obj=None):
        return False  # alerts refer to rules; disable instead

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            detection_rule_update(
                rule=obj,
                actor=request.user,
                enabled=data["enabled"],
                severity=data["severity"],
                description=data["description"],
            )
        except DetectionRuleChanged as exc:
            self.message_user(request, str(exc), level=messages.ERROR)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        changed = 0
        with transaction.atomic():
            for rule in queryset.filter(enabled=not enabled):
                detection_rule_update(rule=rule, actor=request.user, enabled=enabled)
                changed += 1
        self.message_user(request, f"{changed} rule(s) {'enabled' if enabled else 'disabled'}.")

    @admin.action(description="Enable selected rules", permissions=["change"])
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected rules", permissions=["change"])
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)


@admin.register(Alert)
class AlertAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    list_display = ["rule", "system", "status", "severity", "first_event_at", "detected_at", "count"]
    list_filter = ["status", "severity", "rule", "category"]
    search_fields = ["fingerprint", "system__name", "signal"]
    list_select_related = ["rule", "system"]
    date_hierarchy = "created_at"
    actions = ["resolve_now"]
    fieldsets = (
        (None, {"fields": ("rule", "system", "status", "severity", "category", "signal", "count")}),
        ("Time", {"fields": ("first_event_at", "detected_at", "last_seen_at", "resolved_at")}),
        ("Identity and evidence", {"fields": ("fingerprint", "labels", "annotations", "evidence_event_ids")}),
    )

    def has_resolve_permission(self, request):
        return request.user.has_perm("oversight.change_alert")

    @admin.action(description="Resolve now", permissions=["resolve"])
    def resolve_now(self, request, queryset):
        from oversight.services.alerts import alerts_resolve

        resolved = alerts_resolve(
            alert_ids=list(queryset.values_list("pk", flat=True)),
            actor=request.user,
            reason=f"resolved in the admin by {request.user.get_username()}",
        )
        self.message_user(request, f"{resolved} alert(s) resolved.")


@admin.register(SystemHeartbeat)
class SystemHeartbeatAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    list_display = ["system", "last_seen_at", "last_received_at", "last_event_id"]
    search_fields = ["system__name"]
    list_select_related = ["system"]
    ordering = ["last_received_at"]


from oversight import simulation_admin  # noqa: E402,F401 -- registers the Simulation and ScenarioLabel admin
