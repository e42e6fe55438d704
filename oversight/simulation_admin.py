"""Admin of simulations and their ground-truth labels.

Starting and stopping go through the same services as the API (``simulation_start``,
``simulation_stop``); the change page shows live counters and a chart of events and alerts over
time, refreshed by a few lines of JavaScript polling :meth:`SimulationAdmin.live_view`. Registered
on import; ``oversight/admin.py`` imports this module.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from governance.admin_base import ReadOnlyAdmin, TeamScopedAdmin
from oversight.api.simulations import simulation_representation
from oversight.generator import validate_mix
from oversight.metrics import simulation_timeline
from oversight.models import ACTIVE_SIMULATION_STATUSES, ScenarioLabel, Simulation
from oversight.services.simulation import (
    MAX_BATCH_SIZE,
    MAX_RATE_PER_S,
    MAX_TOTAL,
    MIN_RATE_PER_S,
    SimulationConflict,
    simulation_start,
    simulation_stop,
)

SIMULATION_FIELDS = [
    "id",
    "status",
    "total",
    "batch_size",
    "rate_per_s",
    "seed",
    "mix",
    "cursor",
    "counters",
    "started_at",
    "finished_at",
    "created_by",
    "error",
]


class SimulationStartForm(forms.Form):
    total = forms.IntegerField(min_value=1, max_value=MAX_TOTAL, initial=10_000, help_text="Events to generate.")
    batch_size = forms.IntegerField(min_value=1, max_value=MAX_BATCH_SIZE, initial=500)
    rate_per_s = forms.FloatField(
        min_value=MIN_RATE_PER_S,
        max_value=MAX_RATE_PER_S,
        required=False,
        initial=1000,
        label="Rate (events/s)",
        help_text="Blank: a backdated history (1 event/s of event time) sent as fast as possible.",
    )
    seed = forms.IntegerField(initial=42)
    mix = forms.JSONField(
        required=False,
        help_text='Category shares summing to 1, e.g. {"data_quality": 0.6, "fairness": 0.4}. Blank: the default mix.',
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )

    def clean_mix(self):
        mix = self.cleaned_data.get("mix")
        errors = validate_mix(mix) if mix else {}
        if errors:
            # "mix.weather" → "weather: unknown category …", so every problem shows on the one field.
            raise ValidationError(
                [f"{key.partition('.')[2]}: {m}" if "." in key else m for key, ms in errors.items() for m in ms]
            )
        return mix


@admin.register(Simulation)
class SimulationAdmin(admin.ModelAdmin):
    list_display = [
        "short_id",
        "status",
        "total",
        "rate",
        "seed",
        "progress",
        "precision",
        "recall",
        "started_at",
    ]
    list_filter = ["status"]
    ordering = ["-created_at"]
    actions = ["stop_simulations"]
    readonly_fields = [*SIMULATION_FIELDS, "scenario_labels", "report_json"]
    fieldsets = (
        (None, {"fields": ("id", "status", "error")}),
        ("Parameters", {"fields": ("total", "batch_size", "rate_per_s", "seed", "mix")}),
        ("Progress", {"fields": ("cursor", "counters", "started_at", "finished_at", "created_by")}),
        ("Ground truth and report", {"fields": ("scenario_labels", "report_json")}),
    )
    change_form_template = "admin/oversight/simulation/change_form.html"

    # --- columns ---------------------------------------------------------------------------------
    @admin.display(description="simulation", ordering="created_at")
    def short_id(self, obj: Simulation) -> str:
        return obj.id.hex[:8]

    @admin.display(description="rate (ev/s)", ordering="rate_per_s")
    def rate(self, obj: Simulation) -> str:
        return f"{obj.rate_per_s:g}" if obj.rate_per_s else "as fast as possible"

    @admin.display(description="progress")
    def progress(self, obj: Simulation) -> str:
        return f"{100 * obj.cursor / obj.total:.0f}%" if obj.total else "–"

    @admin.display(description="precision")
    def precision(self, obj: Simulation) -> str:
        return _ratio((obj.report or {}).get("quality", {}).get("precision"))

    @admin.display(description="recall")
    def recall(self, obj: Simulation) -> str:
        return _ratio((obj.report or {}).get("quality", {}).get("recall"))

    @admin.display(description="scenario labels")
    def scenario_labels(self, obj: Simulation) -> str:
        url = reverse("admin:oversight_scenariolabel_changelist") + f"?simulation__id__exact={obj.pk}"
        return format_html('<a href="{}">{} labelled scenarios</a>', url, obj.scenarios.count())

    @admin.display(description="report")
    def report_json(self, obj: Simulation) -> str:
        return format_html("<pre style='white-space: pre-wrap;'>{}</pre>", json.dumps(obj.report, indent=2))

    # --- permissions -----------------------------------------------------------------------------
    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a run is evidence (audited, referenced by batches and labels)

    def has_stop_permission(self, request) -> bool:
        return request.user.has_perm("oversight.change_simulation")

    # --- views -----------------------------------------------------------------------------------
    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<uuid:object_id>/live/", self.admin_site.admin_view(self.live_view), name=f"{prefix}_live"),
            path("<uuid:object_id>/stop/", self.admin_site.admin_view(self.stop_view), name=f"{prefix}_stop"),
            *super().get_urls(),
        ]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        """Start a simulation through ``simulation_start`` (the same service as the API)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = SimulationStartForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                simulation = simulation_start(**form.cleaned_data, actor=request.user)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field.split(".")[0] if field.split(".")[0] in form.fields else None, errors)
            except SimulationConflict as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"Simulation {simulation.id.hex[:8]} started.", messages.SUCCESS)
                return redirect("admin:oversight_simulation_change", simulation.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": "Start a simulation",
            "form": form,
            "opts": self.opts,
            "has_view_permission": self.has_view_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/oversight/simulation/start.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        simulation = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
            "can_stop": bool(simulation)
            and simulation.status in ACTIVE_SIMULATION_STATUSES
            and self.has_stop_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def live_view(self, request: HttpRequest, object_id) -> JsonResponse:
        """Live counters and the events/alerts timeline of one simulation, as JSON (the page polls it)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        simulation = get_object_or_404(Simulation, pk=object_id)
        body = simulation_representation(simulation)
        body["cursor"] = simulation.cursor
        body["progress"] = round(simulation.cursor / simulation.total, 4) if simulation.total else None
        body["timeline"] = simulation_timeline(simulation)
        return JsonResponse(body)

    def stop_view(self, request: HttpRequest, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_stop_permission(request):
            raise PermissionDenied
        simulation = get_object_or_404(Simulation, pk=object_id)
        self._stop(request, [simulation])
        return redirect("admin:oversight_simulation_change", simulation.pk)

    # --- actions ---------------------------------------------------------------------------------
    @admin.action(description="Stop selected simulations", permissions=["stop"])
    def stop_simulations(self, request, queryset):
        self._stop(request, list(queryset))

    def _stop(self, request, simulations: list[Simulation]) -> None:
        stopped, refused = [], []
        for simulation in simulations:
            try:
                simulation_stop(simulation=simulation, actor=request.user)
                stopped.append(simulation.id.hex[:8])
            except SimulationConflict as exc:
                refused.append(str(exc))
        if stopped:
            self.message_user(request, f"Stop requested for {', '.join(stopped)}.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


@admin.register(ScenarioLabel)
class ScenarioLabelAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    """The ground truth of planted scenarios: read-only."""

    list_display = ["scenario_id", "kind", "system", "category", "severity", "expected_rule", "onset_at"]
    list_filter = ["kind", "category", "severity", "expected_rule", "simulation"]
    search_fields = ["scenario_id", "system__name"]
    list_select_related = ["system"]
    ordering = ["onset_at"]
    show_full_result_count = False
