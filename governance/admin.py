"""Admin for the governance core: scoped to the user's teams, writes audited, audit log read-only."""

from __future__ import annotations

from contextvars import ContextVar

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from governance.admin_base import ReadOnlyAdmin, TeamScopedAdmin
from governance.choices import AuditAction
from governance.models import (
    AISystem,
    AuditLog,
    AuditVerification,
    Capability,
    ControlAssessment,
    EvaluationRun,
    Team,
    User,
)
from governance.selectors_predictive import system_predictions
from governance.services import organization
from governance.services.audit import audit_chain_verify_and_record, audit_record
from governance.services.kpis import capability_statuses


class AuditedAdmin(TeamScopedAdmin):
    """Saves from the admin are audited in the same transaction, with the fields that changed."""

    create_action: str = ""
    update_action: str = ""

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            before = {name: form.initial.get(name) for name in form.changed_data} if change else {}
            super().save_model(request, obj, form, change)
            after = {name: form.cleaned_data.get(name) for name in form.changed_data}
            audit_record(
                action=self.update_action if change else self.create_action,
                actor=request.user,
                target=obj,
                data={
                    "via": "admin",
                    "changed": {
                        name: {"from": _plain(before.get(name)), "to": _plain(after.get(name))} for name in after
                    },
                },
            )


def _plain(value):
    if hasattr(value, "pk"):
        return str(value.pk)
    if hasattr(value, "all") or isinstance(value, list | tuple | set):
        return sorted(str(getattr(item, "pk", item)) for item in value)
    return value


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    list_display = ["name", "slug", "email", "system_count", "member_count", "created_at"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "updated_at"]
    create_action, update_action = AuditAction.TEAM_CREATED, AuditAction.TEAM_UPDATED

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_systems=Count("systems", distinct=True), _members=Count("members", distinct=True))
        )

    @admin.display(ordering="_systems", description="AI systems")
    def system_count(self, obj):
        return obj._systems

    @admin.display(ordering="_members", description="members")
    def member_count(self, obj):
        return obj._members

    def has_add_permission(self, request):
        # As in the API (POST /teams is admin-only); a lead's new team would also be invisible to them.
        return request.user.is_admin_role and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False  # teams own systems and history; rename instead


@admin.register(AISystem)
class AISystemAdmin(AuditedAdmin):
    list_display = ["name", "entity_type", "risk_class", "team", "owner", "is_active", "created_at"]
    list_filter = ["entity_type", "risk_class", "is_active", "team"]
    search_fields = ["name", "description"]
    autocomplete_fields = ["team", "owner"]
    readonly_fields = ["created_at", "updated_at"]
    list_select_related = ["team", "owner"]
    date_hierarchy = "created_at"
    actions = ["deactivate", "activate"]
    create_action, update_action = AuditAction.SYSTEM_REGISTERED, AuditAction.SYSTEM_UPDATED

    def has_delete_permission(self, request, obj=None):
        return False  # telemetry and incidents refer to systems; deactivate instead

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The system's predicted-risk badges, recent predictions and predicted-vs-actual (the change_form
        # template override shows them under the form).
        system = self.get_object(request, object_id)
        if system is not None:
            extra_context = {
                **(extra_context or {}),
                "predictions": system_predictions(user=request.user, system=system),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def _set_active(self, request, queryset, active: bool):
        changed = 0
        with transaction.atomic():
            for system in queryset.filter(is_active=not active):
                organization.ai_system_update(system=system, actor=request.user, is_active=active)
                changed += 1
        self.message_user(request, f"{changed} AI system(s) {'activated' if active else 'deactivated'}.")

    @admin.action(description="Deactivate selected AI systems", permissions=["change"])
    def deactivate(self, request, queryset):
        self._set_active(request, queryset, False)

    @admin.action(description="Activate selected AI systems", permissions=["change"])
    def activate(self, request, queryset):
        self._set_active(request, queryset, True)


class VigilUserChangeForm(UserChangeForm):
    def clean_groups(self):
        groups = self.cleaned_data.get("groups")
        try:
            organization.check_roles_fit_account(
                is_service_account=self.instance.is_service_account, roles=[group.name for group in groups or []]
            )
        except ValidationError as exc:
            raise forms.ValidationError(exc.message_dict["roles"]) from exc
        return groups


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = VigilUserChangeForm
    list_display = ["username", "email", "roles", "is_service_account", "is_active", "last_login"]
    list_filter = ["groups", "is_service_account", "is_active", "is_superuser"]
    search_fields = ["username", "email", "first_name", "last_name"]
    filter_horizontal = ["groups", "teams", "user_permissions"]
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Vigil", {"fields": ("is_service_account", "teams")}),
    )
    readonly_fields = ["is_service_account", "last_login", "date_joined"]

    def has_delete_permission(self, request, obj=None):
        # Deactivate instead: decisions, assessments and audit entries refer to people, and a deletion would
        # drop role and team memberships without an audit entry.
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="roles")
    def roles(self, obj):
        return ", ".join(sorted(group.name for group in obj.groups.all())) or "—"

    def save_related(self, request, form, formsets, change):
        user = form.instance
        before = (
            {
                "roles": sorted(user.groups.values_list("name", flat=True)),
                "teams": sorted(str(pk) for pk in user.teams.values_list("pk", flat=True)),
            }
            if change
            else None
        )
        with transaction.atomic():
            super().save_related(request, form, formsets, change)
            after = {
                "roles": sorted(user.groups.values_list("name", flat=True)),
                "teams": sorted(str(pk) for pk in user.teams.values_list("pk", flat=True)),
            }
            if not change:
                audit_record(
                    action=AuditAction.USER_CREATED,
                    actor=request.user,
                    target=user,
                    data={"username": user.username, "via": "admin", **after},
                )
            elif before != after:
                audit_record(
                    action=AuditAction.USER_ROLES_CHANGED,
                    actor=request.user,
                    target=user,
                    data={"before": before, "after": after, "via": "admin"},
                )


_CAPABILITY_STATUSES: ContextVar[dict] = ContextVar("capability_statuses", default={})  # noqa: B039


@admin.register(Capability)
class CapabilityAdmin(admin.ModelAdmin):
    list_display = ["number", "name", "live_status", "evidence", "enforced_by"]
    search_fields = ["name", "code", "description"]
    readonly_fields = ["code", "number", "created_at", "updated_at"]

    def changelist_view(self, request, extra_context=None):
        # Computed once per page; list_display callables get no request, so pass it by context var.
        # The TemplateResponse renders lazily, after this method returns: render inside the context.
        token = _CAPABILITY_STATUSES.set(capability_statuses())
        try:
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render"):
                response.render()
            return response
        finally:
            _CAPABILITY_STATUSES.reset(token)

    def _status(self, obj):
        return _CAPABILITY_STATUSES.get().get(obj.code)

    @admin.display(description="status")
    def live_status(self, obj):
        status = self._status(obj)
        if status is None:
            return "—"
        colour = {"enforced": "#1a7f37", "not_enforced": "#cf222e"}.get(status.status, "#6e7781")
        return format_html('<span style="color: {}">{}</span>', colour, status.status.replace("_", " "))

    @admin.display(description="evidence")
    def evidence(self, obj):
        status = self._status(obj)
        return status.evidence if status else ""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ControlAssessment)
class ControlAssessmentAdmin(AuditedAdmin):
    list_display = ["system", "control", "framework", "reference", "status", "assessed_at", "next_review_due"]
    list_filter = ["status", "framework", "system__risk_class", "system__team"]
    search_fields = ["control", "reference", "system__name", "notes"]
    autocomplete_fields = ["system", "assessor"]
    list_select_related = ["system"]
    date_hierarchy = "assessed_at"
    readonly_fields = ["created_at", "updated_at"]
    create_action = update_action = AuditAction.CONTROL_ASSESSED

    def has_delete_permission(self, request, obj=None):
        return False  # evidence: record a new one instead (a deletion would leave no audit entry)


@admin.register(EvaluationRun)
class EvaluationRunAdmin(AuditedAdmin):
    list_display = ["system", "suite", "metric", "value", "threshold", "passed", "provenance", "ran_at"]
    list_filter = ["passed", "provenance", "suite", "system__risk_class", "system__team"]
    search_fields = ["suite", "metric", "system__name"]
    autocomplete_fields = ["system"]
    list_select_related = ["system"]
    date_hierarchy = "ran_at"
    # Only the gateway's own run records provenance "gateway"; nobody may promote a result by hand.
    readonly_fields = ["provenance", "created_at", "updated_at"]
    create_action = update_action = AuditAction.EVALUATION_RECORDED

    def has_delete_permission(self, request, obj=None):
        return False  # evidence: record a new one instead (a deletion would leave no audit entry)


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["seq", "at", "actor", "actor_type", "action", "object_type", "object_id", "short_hash"]
    list_filter = ["action", "actor_type", "object_type"]
    search_fields = ["actor", "object_id", "action", "hash"]
    date_hierarchy = "at"
    ordering = ["-seq"]
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("seq", "at", "actor", "actor_type", "action")}),
        ("Object", {"fields": ("object_type", "object_id", "data")}),
        ("Chain", {"fields": ("prev_hash", "hash")}),
    )
    change_list_template = "admin/governance/auditlog/change_list.html"

    @admin.display(description="hash")
    def short_hash(self, obj):
        return obj.hash[:12] + "…"

    def get_urls(self):
        return [
            path("verify/", self.admin_site.admin_view(self.verify_view), name="governance_auditlog_verify"),
            *super().get_urls(),
        ]

    def verify_view(self, request):
        if request.method != "POST" or not self.has_view_permission(request):
            return HttpResponseRedirect(reverse("admin:governance_auditlog_changelist"))
        result = audit_chain_verify_and_record()
        level = messages.SUCCESS if result.ok else messages.ERROR
        self.message_user(request, result.describe(), level=level)
        return HttpResponseRedirect(reverse("admin:governance_auditlog_changelist"))


@admin.register(AuditVerification)
class AuditVerificationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "ok", "checked_rows", "head_seq", "broken_seq", "reason", "duration_ms"]
    list_filter = ["ok"]
    date_hierarchy = "created_at"


# Registered from their own modules: caller activity, the governed-change log, demo runs, Deployment, Policy
# and predictive-governance admins.
from governance import (  # noqa: E402,F401
    admin_activity,
    admin_changes,
    admin_demo,
    admin_deployments,
    admin_policies,
    admin_predictive,
)
