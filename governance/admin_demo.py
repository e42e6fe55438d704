"""Admin of the golden demo: scenarios ("Run now") and runs (a live page, "Export evidence").

Starting goes through ``demo_run_start`` and the ``governance.demo_run`` task, like the API. A run's
change page is a live view: a stepper with each step's state, the current step's narration, counters
and the KPI table before/after, refreshed by a few lines of inline JavaScript polling
:meth:`DemoRunAdmin.live_view` (no external script). Registered on import from ``governance/admin.py``.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html

from governance.admin_base import ReadOnlyAdmin
from governance.models import DemoRun, DemoScenario
from governance.services.demo import (
    DemoRunConflict,
    DemoRunInvalid,
    demo_run_representation,
    demo_run_start,
    scenario_problems,
)
from governance.services.demo_evidence import EvidenceNotReady, evidence_build


@admin.register(DemoScenario)
class DemoScenarioAdmin(admin.ModelAdmin):
    list_display = ["scenario_name", "category", "duration_seconds", "step_count", "enabled", "updated_at"]
    list_filter = ["category", "enabled"]
    search_fields = ["scenario_name", "description"]
    actions = ["run_now"]
    fields = ["scenario_name", "category", "description", "duration_seconds", "enabled", "steps", "expected_outcomes"]

    @admin.display(description="steps")
    def step_count(self, obj: DemoScenario) -> int:
        return len(obj.steps or [])

    def save_model(self, request, obj, form, change):
        problems = scenario_problems(steps=obj.steps, expected_outcomes=obj.expected_outcomes)
        if problems:
            raise PermissionDenied("; ".join(f"{k}: {v[0]}" for k, v in problems.items()))
        super().save_model(request, obj, form, change)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        original_clean = form.clean

        def clean(self_form):
            data = original_clean(self_form)
            problems = scenario_problems(steps=data.get("steps"), expected_outcomes=data.get("expected_outcomes"))
            for name, messages_ in problems.items():
                field = name.split(".")[0]
                self_form.add_error(field if field in self_form.fields else None, f"{name}: {messages_[0]}")
            return data

        form.clean = clean
        return form

    @admin.action(description="Run now (one run at a time)", permissions=["change"])
    def run_now(self, request, queryset):
        from governance.tasks import demo_run

        if queryset.count() != 1:
            self.message_user(request, "Select exactly one scenario to run.", messages.WARNING)
            return None
        scenario = queryset.get()
        try:
            run = demo_run_start(scenario=scenario, seed=42, user=request.user)
        except (DemoRunConflict, DemoRunInvalid) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return None
        demo_run.delay(str(run.pk))
        self.message_user(request, f"Demo run {run.pk.hex[:8]} of {scenario} started.", messages.SUCCESS)
        return redirect("admin:governance_demorun_change", run.pk)


@admin.register(DemoRun)
class DemoRunAdmin(ReadOnlyAdmin):
    list_display = ["short_id", "scenario", "mode", "seed", "status", "progress", "started_at", "duration", "evidence"]
    list_filter = ["status", "mode", "scenario"]
    search_fields = ["id", "scenario__scenario_name", "error"]
    list_select_related = ["scenario", "started_by"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    actions = ["export_evidence"]
    readonly_fields = [
        "id",
        "scenario",
        "mode",
        "seed",
        "status",
        "started_by",
        "started_at",
        "finished_at",
        "audit_seq_first",
        "audit_seq_last",
        "evidence_sha256",
        "error",
        "step_results_json",
    ]
    fields = readonly_fields
    change_form_template = "admin/governance/demorun/change_form.html"

    @admin.display(description="run", ordering="created_at")
    def short_id(self, obj: DemoRun) -> str:
        return obj.id.hex[:8]

    @admin.display(description="progress")
    def progress(self, obj: DemoRun) -> str:
        done = sum(1 for r in obj.step_results if r["status"] in ("succeeded", "failed"))
        return f"{done}/{obj.steps_total}"

    @admin.display(description="duration")
    def duration(self, obj: DemoRun) -> str:
        if obj.started_at and obj.finished_at:
            return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"
        return "–"

    @admin.display(description="evidence")
    def evidence(self, obj: DemoRun) -> str:
        if not obj.is_final:
            return "–"
        return format_html('<a href="{}">zip</a>', reverse("admin:governance_demorun_evidence", args=[obj.pk]))

    @admin.display(description="step results")
    def step_results_json(self, obj: DemoRun) -> str:
        return format_html("<pre style='white-space: pre-wrap;'>{}</pre>", json.dumps(obj.step_results, indent=2))

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("governance.view_demorun")

    def get_urls(self):
        return [
            path("<uuid:object_id>/live/", self.admin_site.admin_view(self.live_view), name="governance_demorun_live"),
            path(
                "<uuid:object_id>/evidence/",
                self.admin_site.admin_view(self.evidence_view),
                name="governance_demorun_evidence",
            ),
            *super().get_urls(),
        ]

    def live_view(self, request: HttpRequest, object_id) -> JsonResponse:
        """The run as the API shows it (steps with narration, counters, KPIs), for the page to poll."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = get_object_or_404(DemoRun.objects.select_related("scenario"), pk=object_id)
        return JsonResponse(demo_run_representation(run))

    def evidence_view(self, request: HttpRequest, object_id) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = get_object_or_404(DemoRun.objects.select_related("scenario"), pk=object_id)
        try:
            data, _ = evidence_build(run)
        except EvidenceNotReady as exc:
            self.message_user(request, str(exc), messages.WARNING)
            return redirect("admin:governance_demorun_change", run.pk)
        response = HttpResponse(data, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="demo-{run.pk.hex[:8]}-{run.mode}.zip"'
        return response

    @admin.action(description="Export evidence (zip) of the selected finished run", permissions=["view"])
    def export_evidence(self, request, queryset):
        runs = list(queryset[:2])
        if len(runs) != 1:
            self.message_user(request, "Select exactly one run to export.", messages.WARNING)
            return None
        return redirect("admin:governance_demorun_evidence", runs[0].pk)
