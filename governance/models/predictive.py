"""Predictive governance: risk forecasts per AI system and the transparent models that make them."""

from django.db import models

from governance.choices import EntityType, PredictionOutcome, PredictionType, PredictorSource
from governance.models.base import VigilModel
from governance.models.organization import AISystem

__all__ = ["PredictiveGovernance", "PredictorModel"]


class PredictorModel(VigilModel):
    """One trained, calibrated model for one prediction type (logistic regression over named features).

    ``parameters`` holds everything needed to score without scikit-learn's pickles: feature names, scaler
    means and scales, coefficients, intercept and the calibration map. ``metrics`` is the holdout/backtest
    quality it was trained with (auc, brier, precision_at_threshold, mean_lead_time_hours, samples, positives).
    Exactly one model per prediction type is active.
    """

    prediction_type = models.CharField(max_length=32, choices=PredictionType.choices, db_index=True)
    version = models.PositiveIntegerField()
    source = models.CharField(max_length=16, choices=PredictorSource.choices)
    trained_at = models.DateTimeField()
    parameters = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False, db_index=True)

    class Meta:
        db_table = "predictor_models"
        ordering = ["prediction_type", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["prediction_type", "version"], name="predictor_type_version_unique"),
            models.UniqueConstraint(
                fields=["prediction_type"],
                condition=models.Q(is_active=True),
                name="predictor_one_active_per_type",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_prediction_type_display()} v{self.version} ({self.source})"


class PredictiveGovernance(VigilModel):
    """One risk forecast for one AI system (the plan's ``predictive_governance`` row).

    ``entity_id`` is the AI system (column name kept from the plan); ``entity_type`` copies the system's
    kind. ``factors`` lists the top contributing features, each ``{"feature", "label", "value",
    "contribution"}``, largest contribution first. ``as_of`` is the cut-off of the data used: nothing
    after it was seen. ``outcome`` is filled once the timeframe has passed (predicted vs actual).
    """

    team_scope_path = "system__team"

    entity_type = models.CharField(max_length=16, choices=EntityType.choices, db_index=True)
    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="predictions", db_column="entity_id")
    prediction_type = models.CharField(max_length=32, choices=PredictionType.choices, db_index=True)
    risk_score = models.FloatField(help_text="Calibrated probability (0–1) of the risk within the timeframe.")
    confidence = models.FloatField(help_text="0–1: how much history and model quality back the score.")
    predicted_timeframe_hours = models.PositiveIntegerField(default=24)
    factors = models.JSONField(default=list, blank=True)
    as_of = models.DateTimeField(db_index=True)
    model = models.ForeignKey(PredictorModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    threshold = models.FloatField(help_text="The alert threshold in force when the prediction was made.")
    above_threshold = models.BooleanField(default=False, db_index=True)
    outcome = models.CharField(
        max_length=16, choices=PredictionOutcome.choices, default=PredictionOutcome.PENDING, db_index=True
    )
    outcome_at = models.DateTimeField(null=True, blank=True, help_text="When the predicted risk was observed.")
    outcome_evaluated_at = models.DateTimeField(null=True, blank=True)
    review_item_id = models.UUIDField(null=True, blank=True, help_text="The proactive HITL review it opened.")

    class Meta:
        db_table = "predictive_governance"
        ordering = ["-as_of"]
        verbose_name = "prediction"
        verbose_name_plural = "predictions"
        constraints = [
            # One prediction per system, type and 15-minute slot: a re-run of the pass writes nothing new.
            models.UniqueConstraint(fields=["system", "prediction_type", "as_of"], name="prediction_one_per_slot"),
        ]
        indexes = [
            models.Index(fields=["system", "prediction_type", "-as_of"], name="prediction_system_type_recent"),
            models.Index(fields=["outcome", "as_of"], name="prediction_outcome_due"),
        ]

    def __str__(self) -> str:
        return f"{self.system} · {self.get_prediction_type_display()} {self.risk_score:.2f}"
