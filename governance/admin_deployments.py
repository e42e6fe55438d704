"""Admin for deployments: evidence of what was deployed and whether the CI/CD gate allowed it (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from governance.admin_base import ReadOnlyAdmin, TeamScopedAdmin
from governance.models import Deployment


@admin.register(Deployment)
class DeploymentAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    """Deployments reported by CI/CD pipelines (``POST /api/v1/deployments``), each with the gate decision
    it was judged against. Written once by ``deployment_record``; nobody edits evidence."""

    list_display = [
        "deployed_at",
        "system",
        "artifact",
        "environment",
        "gate_decision",
        "circumvention",
        "reported_by",
    ]
    list_filter = ["gate_decision", "circumvention", "environment", "system"]
    search_fields = ["artifact", "system__name"]
    list_select_related = ["system", "reported_by"]
    date_hierarchy = "deployed_at"
    ordering = ["-deployed_at"]
    show_full_result_count = False
    fields = [
        "system",
        "artifact",
        "environment",
        "deployed_at",
        "reported_by",
        "gate_decision",
        "gate_entry",
        "circumvention",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description="gate audit entry")
    def gate_entry(self, obj: Deployment):
        if obj.gate_audit_entry is None:
            return "—"
        url = reverse("admin:governance_auditlog_change", args=[obj.gate_audit_entry])
        return format_html('<a href="{}">{}</a>', url, obj.gate_audit_entry)
