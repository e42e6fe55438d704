"""Admin for policies and their versions: read-only evidence; every write (a new policy, a new version,
activation, deactivation) goes through ``governance.services.policies`` (linted, audited)."""

from __future__ import annotations

import difflib

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from governance.admin_base import ReadOnlyAdmin
from governance.choices import Role
from governance.models import Policy, PolicyVersion
from governance.services.policies import (
    PolicyInvalid,
    PolicyPermissionDenied,
    PolicyVersionNotValidated,
    policy_create,
    policy_deactivate,
    policy_may_write,
    policy_version_activate,
    policy_version_create,
    policy_version_diff,
)
from governance.services.policy_lint import MAX_DOCUMENT_BYTES
from governance.services.policy_replay import PolicyNotReplayable, policy_shadow_replay, replay_summary

POLICY_WRITER_ROLES = (Role.ADMIN, Role.GOVERNANCE_LEAD)


def _may_write(request: HttpRequest) -> bool:
    user = request.user
    return bool(getattr(user, "is_authenticated", False) and user.has_role(*POLICY_WRITER_ROLES))


class PolicyTextForm(forms.Form):
    text = forms.CharField(
        label="Policy (YAML or JSON)",
        widget=forms.Textarea(attrs={"rows": 30, "cols": 110, "spellcheck": "false", "class": "vLargeTextField"}),
        strip=False,
        max_length=MAX_DOCUMENT_BYTES,
        help_text="Stored exactly as written and linted; a version with lint errors is stored but cannot be activated.",
    )
    filename = forms.CharField(
        required=False, max_length=255, initial="policy.yaml", help_text="*.json reads the text as strict JSON."
    )


class PolicyActiveFilter(admin.SimpleListFilter):
    title = "active"
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [("yes", "Active"), ("no", "Inactive")]

    def queryset(self, request, queryset):
        if self.value() not in ("yes", "no"):
            return queryset
        return queryset.filter(active_version__isnull=self.value() == "no")


class PolicyVersionInline(admin.TabularInline):
    model = PolicyVersion
    fk_name = "policy"
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-version"]
    fields = [
        "version",
        "validated",
        "errors",
        "warnings",
        "content_format",
        "created_by",
        "created_at",
        "activated_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by").defer("content", "document", "shadow_report")

    @admin.display(description="errors")
    def errors(self, obj: PolicyVersion) -> int:
        return (obj.lint_counts or {}).get("error", 0)

    @admin.display(description="warnings")
    def warnings(self, obj: PolicyVersion) -> int:
        return (obj.lint_counts or {}).get("warning", 0)


@admin.register(Policy)
class PolicyAdmin(ReadOnlyAdmin):
    """Policies (policy-as-code). Created from a document on the add page; each version through "Add
    version"; activated from the versions list. Nothing here is edited in place."""

    list_display = ["key", "name", "team", "active", "version_count", "updated_at"]
    list_filter = ["team", PolicyActiveFilter]
    search_fields = ["key", "name"]
    list_select_related = ["team", "active_version"]
    ordering = ["key"]
    fields = ["key", "name", "description", "team", "active", "created_by", "created_at", "updated_at", "add_version"]
    readonly_fields = fields
    inlines = [PolicyVersionInline]
    actions = ["deactivate_selected"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(version_total=Count("versions"))

    def has_add_permission(self, request):
        return _may_write(request)

    def has_write_permission(self, request):
        return _may_write(request)

    @admin.display(description="active version", ordering="active_version__version")
    def active(self, obj: Policy) -> str:
        if obj.active_version_id is None:
            return "—"
        url = reverse("admin:governance_policyversion_change", args=[obj.active_version_id])
        return format_html('<a href="{}">v{}</a>', url, obj.active_version.version)

    @admin.display(description="versions", ordering="version_total")
    def version_count(self, obj: Policy) -> int:
        return obj.version_total

    @admin.display(description="new version")
    def add_version(self, obj: Policy) -> str:
        url = reverse("admin:governance_policy_add_version", args=[obj.pk])
        return format_html('<a class="button" href="{}">Add version</a>', url)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<uuid:object_id>/add-version/", view(self.add_version_view), name="governance_policy_add_version"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        """A new policy from its first document (version 1, not active)."""
        if not _may_write(request):
            raise Http404
        return self._document_form(request, policy=None)

    def add_version_view(self, request: HttpRequest, object_id: str):
        policy = Policy.objects.select_related("team").filter(pk=object_id).first()
        if policy is None or not _may_write(request):
            raise Http404
        return self._document_form(request, policy=policy)

    def _document_form(self, request: HttpRequest, *, policy: Policy | None):
        latest = policy.versions.order_by("-version").first() if policy is not None else None
        initial = {"text": latest.content, "filename": f"{policy.key}.{latest.content_format}"} if latest else {}
        form = PolicyTextForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = {"text": form.cleaned_data["text"], "filename": form.cleaned_data["filename"] or "policy.yaml"}
            try:
                if policy is None:
                    version = policy_create(actor=request.user, **data)
                else:
                    version = policy_version_create(policy=policy, actor=request.user, **data)
            except PolicyPermissionDenied as exc:
                form.add_error(None, str(exc))
            except PolicyInvalid as exc:
                for field, problems in exc.fields.items():
                    form.add_error("text" if field in ("text", "document") else None, f"{field}: {problems[0]}")
            else:
                counts = version.lint_counts
                verdict = "validated" if version.validated else "NOT validated (it cannot be activated)"
                self.message_user(
                    request,
                    f"{version} stored, {verdict}: {counts['error']} error(s), {counts['warning']} warning(s), "
                    f"{counts['info']} info.",
                    level=messages.SUCCESS if version.validated else messages.WARNING,
                )
                return HttpResponseRedirect(reverse("admin:governance_policyversion_change", args=[version.pk]))
        title = f"Add a version to {policy.key}" if policy is not None else "Create a policy"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "policy": policy,
            "latest": latest,
            "form": form,
        }
        return TemplateResponse(request, "admin/governance/policy/document_form.html", context)

    @admin.action(description="Deactivate selected policies", permissions=["write"])
    def deactivate_selected(self, request, queryset):
        _deactivate(self, request, queryset.select_related("team"))


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    """Immutable versions with the linter's findings and a diff against the previous version (or
    ``?against=N``). "Activate" refuses a version with lint errors."""

    list_display = ["__str__", "policy", "version", "validated", "errors", "warnings", "is_active_version",
                    "created_by", "created_at", "activated_at"]  # fmt: skip
    list_filter = ["validated", "content_format", "policy"]
    search_fields = ["policy__key", "policy__name"]
    list_select_related = ["policy", "created_by"]
    ordering = ["policy__key", "-version"]
    show_full_result_count = False
    fields = ["policy", "version", "validated", "lint_summary", "content_format", "content_sha256", "created_by",
              "created_at", "activated_at", "activated_by", "shadow_replayed_at", "shadow_replay",
              "content"]  # fmt: skip
    readonly_fields = fields
    actions = ["activate_selected", "shadow_replay_selected", "deactivate_policies"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("document")

    @admin.display(description="shadow replay")
    def shadow_replay(self, obj: PolicyVersion) -> str:
        """The replay's summary, then the systems whose decisions would change (most changes first)."""
        report = obj.shadow_report
        if not report:
            return "not replayed — use the action “Shadow-replay the selected version”"
        lines = [
            (f"{entry['system_name']}: {entry['changes']} change(s), "
             + ", ".join(f"{name} ×{count}" for name, count in entry["transitions"].items()),)
            for entry in report.get("systems_changed", [])[:20]
        ]  # fmt: skip
        return format_html(
            "{}<ul>{}</ul>", replay_summary(report), format_html_join("", "<li>{}</li>", lines) if lines else ""
        )

    def has_write_permission(self, request):
        return _may_write(request)

    @admin.display(description="errors")
    def errors(self, obj: PolicyVersion) -> int:
        return (obj.lint_counts or {}).get("error", 0)

    @admin.display(description="warnings")
    def warnings(self, obj: PolicyVersion) -> int:
        return (obj.lint_counts or {}).get("warning", 0)

    @admin.display(description="active", boolean=True)
    def is_active_version(self, obj: PolicyVersion) -> bool:
        return obj.policy.active_version_id == obj.pk

    @admin.display(description="lint")
    def lint_summary(self, obj: PolicyVersion) -> str:
        counts = obj.lint_counts or {}
        return f"{counts.get('error', 0)} error(s), {counts.get('warning', 0)} warning(s), {counts.get('info', 0)} info"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = PolicyVersion.objects.select_related("policy").filter(pk=object_id).first()
        extra = dict(extra_context or {})
        if version is not None:
            extra.update(self._evidence_context(request, version))
        return super().change_view(request, object_id, form_url, extra)

    def _evidence_context(self, request: HttpRequest, version: PolicyVersion) -> dict:
        siblings = version.policy.versions.defer("document", "shadow_report")
        against_ref = request.GET.get("against", "")
        if against_ref.isdigit():
            against = siblings.filter(version=int(against_ref)).first()
        else:
            against = siblings.filter(version__lt=version.version).order_by("-version").first()
        context = {
            "findings": version.validation_errors,
            "against": against,
            "against_missing": against_ref if against_ref and against is None else "",
            "other_versions": list(
                siblings.exclude(pk=version.pk).order_by("-version").values_list("version", flat=True)
            ),
        }
        if against is not None:
            diff = policy_version_diff(version=version, against=against)
            table = difflib.HtmlDiff(wrapcolumn=90).make_table(
                against.content.splitlines(),
                version.content.splitlines(),
                fromdesc=f"v{against.version}",
                todesc=f"v{version.version}",
                context=True,
                numlines=3,
            )
            # HtmlDiff escapes the text it shows (&, <, >): the table is safe to render as HTML.
            context.update(diff=diff, diff_table=mark_safe(table))  # noqa: S308
        return context

    @admin.action(description="Activate the selected version (validated versions only)", permissions=["write"])
    def activate_selected(self, request, queryset):
        versions = list(queryset.select_related("policy", "policy__team")[:2])
        if len(versions) != 1:
            self.message_user(request, "Select exactly one version to activate.", level=messages.ERROR)
            return
        version = versions[0]
        try:
            policy_version_activate(version=version, actor=request.user, reason="admin action")
        except PolicyVersionNotValidated as exc:
            self.message_user(request, f"Not activated: {exc}.", level=messages.ERROR)
        except PolicyPermissionDenied as exc:
            self.message_user(request, f"Not activated: {exc}.", level=messages.ERROR)
        else:
            self.message_user(request, f"{version} is now the active version of {version.policy.key}.")

    @admin.action(description="Shadow-replay the selected version (last 30 days)", permissions=["write"])
    def shadow_replay_selected(self, request, queryset):
        versions = list(queryset.select_related("policy", "policy__team", "policy__active_version")[:2])
        if len(versions) != 1:
            self.message_user(request, "Select exactly one version to replay.", level=messages.ERROR)
            return
        version = versions[0]
        if not policy_may_write(actor=request.user, team=version.policy.team):
            self.message_user(request, "Not replayed: you may not write this team's policies.", level=messages.ERROR)
            return
        try:
            report = policy_shadow_replay(version=version, actor=request.user)
        except PolicyNotReplayable as exc:
            self.message_user(request, f"Not replayed: {exc}.", level=messages.ERROR)
        else:
            self.message_user(request, f"{version}: {replay_summary(report)}.")

    @admin.action(description="Deactivate the policies of the selected versions", permissions=["write"])
    def deactivate_policies(self, request, queryset):
        _deactivate(self, request, Policy.objects.filter(pk__in=queryset.values("policy_id")).select_related("team"))


def _deactivate(model_admin: admin.ModelAdmin, request: HttpRequest, policies) -> None:
    """Each policy through the service (audited; a team the user may not write is named, not deactivated)."""
    done, refused = 0, []
    for policy in policies:
        was_active = policy.is_active
        try:
            policy_deactivate(policy=policy, actor=request.user, reason="admin action")
        except PolicyPermissionDenied as exc:
            refused.append(f"{policy.key}: {exc}")
        else:
            done += was_active
    model_admin.message_user(request, f"{done} polic(ies) deactivated.")
    for message in refused:
        model_admin.message_user(request, message, level=messages.ERROR)
