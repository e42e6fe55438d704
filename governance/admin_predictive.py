"""Admin for predictive governance: predictions are evidence (read-only); predictor models are listed with
their measured quality, and an admin may activate another version of a type."""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from config import registry
from governance.admin_base import ReadOnlyAdmin, TeamScopedAdmin
from governance.models import PredictiveGovernance, PredictorModel
from governance.selectors_predictive import factors_of, prediction_badge_text, predictor_quality_problems
from governance.services.predictions import predictor_model_activate

METRIC_NAMES = ("auc", "brier", "precision_at_threshold", "mean_lead_time_hours", "samples", "positives", "threshold")


@admin.register(PredictiveGovernance)
class PredictiveGovernanceAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    """Every forecast the prediction pass made, newest first. Written by the pass and its outcome by the
    evaluation of matured predictions; nobody edits evidence."""

    list_display = [
        "as_of",
        "system",
        "prediction_type",
        "score",
        "confidence_shown",
        "above_threshold",
        "outcome",
        "review_link",
    ]
    list_filter = ["prediction_type", "above_threshold", "outcome", "entity_type", "system__team"]
    search_fields = ["system__name"]
    search_help_text = "Part of an AI system's name."
    list_select_related = ["system"]
    date_hierarchy = "as_of"
    ordering = ["-as_of"]
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("system", "entity_type", "prediction_type", "badge", "score", "confidence_shown")}),
        ("Why", {"fields": ("factors_table", "as_of", "predicted_timeframe_hours", "model", "threshold")}),
        ("Outcome", {"fields": ("above_threshold", "outcome", "outcome_at", "outcome_evaluated_at", "review_link")}),
        ("Record", {"fields": ("created_at",)}),
    )
    readonly_fields = [
        "system",
        "entity_type",
        "prediction_type",
        "badge",
        "score",
        "confidence_shown",
        "factors_table",
        "as_of",
        "predicted_timeframe_hours",
        "model",
        "threshold",
        "above_threshold",
        "outcome",
        "outcome_at",
        "outcome_evaluated_at",
        "review_link",
        "created_at",
    ]

    @admin.display(description="risk score", ordering="risk_score")
    def score(self, obj: PredictiveGovernance) -> str:
        return f"{obj.risk_score:.0%}"

    @admin.display(description="confidence", ordering="confidence")
    def confidence_shown(self, obj: PredictiveGovernance) -> str:
        return f"{obj.confidence:.0%}"

    @admin.display(description="badge")
    def badge(self, obj: PredictiveGovernance) -> str:
        if not obj.above_threshold:
            return f"none (below the alert threshold {obj.threshold:.0%})"
        return prediction_badge_text(prediction_type=obj.prediction_type, timeframe_hours=obj.predicted_timeframe_hours)

    @admin.display(description="factors (largest contribution first)")
    def factors_table(self, obj: PredictiveGovernance):
        factors = factors_of(obj.factors, limit=len(obj.factors or []))
        if not factors:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    factor.label,
                    factor.display_value,
                    "—" if factor.contribution is None else f"{factor.contribution:+.3f}",
                )
                for factor in factors
            ),
        )
        return format_html(
            '<table class="prediction-factors"><thead><tr><th>Factor</th><th>Value</th><th>Contribution</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="proactive review")
    def review_link(self, obj: PredictiveGovernance):
        if obj.review_item_id is None:
            return "—"
        url = reverse("admin:hitl_reviewitem_change", args=[obj.review_item_id])
        return format_html('<a href="{}">review</a>', url)


@admin.register(PredictorModel)
class PredictorModelAdmin(admin.ModelAdmin):
    """The trained predictor versions per prediction type with their backtest metrics. Trained by the
    predictive engine; the only change made here is choosing which version is active (admin role)."""

    list_display = [
        "prediction_type",
        "version",
        "is_active",
        "source",
        "trained_at",
        "auc",
        "brier",
        "precision_at_threshold",
        "lead_time",
        "samples",
        "quality",
    ]
    list_filter = ["prediction_type", "is_active", "source"]
    ordering = ["prediction_type", "-version"]
    actions = ["activate_selected"]
    readonly_fields = ["prediction_type", "version", "source", "trained_at", "is_active", "metrics_table",
                       "quality", "parameters", "created_at", "updated_at"]  # fmt: skip
    fields = readonly_fields

    def has_add_permission(self, request):
        return False  # models are trained, never typed in

    def has_change_permission(self, request, obj=None):
        return False  # a model's parameters and metrics are what was trained and measured

    def has_delete_permission(self, request, obj=None):
        return False  # predictions refer to the version that made them

    def has_activate_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_admin_role

    def _metric(self, obj: PredictorModel, name: str):
        value = (obj.metrics or {}).get(name)
        return "—" if value is None else value

    @admin.display(description="AUC")
    def auc(self, obj: PredictorModel):
        return self._metric(obj, "auc")

    @admin.display(description="Brier")
    def brier(self, obj: PredictorModel):
        return self._metric(obj, "brier")

    @admin.display(description="precision at threshold")
    def precision_at_threshold(self, obj: PredictorModel):
        return self._metric(obj, "precision_at_threshold")

    @admin.display(description="mean lead time (h)")
    def lead_time(self, obj: PredictorModel):
        return self._metric(obj, "mean_lead_time_hours")

    @admin.display(description="samples")
    def samples(self, obj: PredictorModel):
        return self._metric(obj, "samples")

    @admin.display(description="quality floor")
    def quality(self, obj: PredictorModel) -> str:
        problems = predictor_quality_problems(model=obj, floor=registry.get("governance.predictive")["quality_floor"])
        return "✔ meets the floor" if not problems else "✘ " + "; ".join(problems)

    @admin.display(description="metrics")
    def metrics_table(self, obj: PredictorModel):
        metrics = obj.metrics or {}
        names = [*METRIC_NAMES, *sorted(set(metrics) - set(METRIC_NAMES))]
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", ((n, metrics.get(n, "—")) for n in names))
        return format_html('<table class="predictor-metrics">{}</table>', rows)

    @admin.action(description="Activate this version (one active per prediction type)", permissions=["activate"])
    def activate_selected(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", level=messages.ERROR)
            return
        model = queryset.get()
        if predictor_model_activate(model=model, actor=request.user, reason="admin action"):
            self.message_user(request, f"{model} is now the active {model.get_prediction_type_display()} model.")
        else:
            self.message_user(request, f"{model} was already active.", level=messages.WARNING)
