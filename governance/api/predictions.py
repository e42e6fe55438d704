"""``/predictions``: the risk forecasts of predictive governance (the plan's ``predictive_governance`` rows),
and ``/predictions/quality``: how good the forecasts are (the active models' measured metrics and the
realized predicted-vs-actual counts). Read-only; thin edges over ``governance.selectors_predictive``."""

from __future__ import annotations

import django_filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config import registry
from governance.api.mixins import TeamScopedMixin, UUIDLookupMixin
from governance.choices import PredictionOutcome, PredictionType, PredictorSource
from governance.models import AISystem, PredictiveGovernance
from governance.selectors import scope_to_teams
from governance.selectors_predictive import (
    prediction_badge_text,
    prediction_outcome_counts,
    predictions_latest,
    predictor_models_active,
    predictor_quality_problems,
)
from oversight.api.serializers import ErrorEnvelopeSerializer
from oversight.selectors import system_ref_filter

BOOLEAN_CHOICES = [("true", "true"), ("false", "false")]


class FactorSerializer(serializers.Serializer):
    feature = serializers.CharField()
    label = serializers.CharField()
    value = serializers.JSONField(help_text="The feature's value at ``as_of``.")
    contribution = serializers.FloatField(help_text="Its share of the score (log-odds), largest first.")


class PredictionSerializer(serializers.ModelSerializer):
    entity_id = serializers.UUIDField(source="system_id", read_only=True, help_text="The AI system's id.")
    system_name = serializers.CharField(source="system.name", read_only=True)
    factors = FactorSerializer(many=True, read_only=True)
    model_version = serializers.IntegerField(
        source="model.version", read_only=True, allow_null=True, help_text="The predictor model version used."
    )
    badge = serializers.SerializerMethodField(help_text="The dashboard badge text when above threshold, else null.")

    class Meta:
        model = PredictiveGovernance
        fields = [
            "id",
            "entity_type",
            "entity_id",
            "system_name",
            "prediction_type",
            "risk_score",
            "confidence",
            "predicted_timeframe_hours",
            "factors",
            "as_of",
            "threshold",
            "above_threshold",
            "badge",
            "outcome",
            "outcome_at",
            "outcome_evaluated_at",
            "model_version",
            "review_item_id",
            "created_at",
        ]
        read_only_fields = fields

    def get_badge(self, obj: PredictiveGovernance) -> str | None:
        if not obj.above_threshold:
            return None
        return prediction_badge_text(prediction_type=obj.prediction_type, timeframe_hours=obj.predicted_timeframe_hours)


class StrictBooleanFilter(django_filters.ChoiceFilter):
    """``true`` or ``false``; anything else is a 400 naming the parameter (never silently ignored)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("choices", BOOLEAN_CHOICES)
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        if value in (None, ""):
            return qs
        return super().filter(qs, value == "true")


class PredictionScopeFilter(django_filters.FilterSet):
    """The filters both the list and the quality summary take."""

    entity = django_filters.CharFilter(method="filter_entity", help_text="The AI system's id or unique name.")
    type = django_filters.ChoiceFilter(
        field_name="prediction_type", choices=PredictionType.choices, help_text="The prediction type."
    )
    since = django_filters.IsoDateTimeFilter(
        field_name="as_of", lookup_expr="gte", help_text="Predictions made from data up to at least this time."
    )

    class Meta:
        model = PredictiveGovernance
        fields = ["entity", "type", "since"]

    def filter_entity(self, queryset, name, value):
        return queryset.filter(system_ref_filter(value))


class PredictionFilter(PredictionScopeFilter):
    above_threshold = StrictBooleanFilter(help_text="true: only predictions above their alert threshold.")
    outcome = django_filters.ChoiceFilter(choices=PredictionOutcome.choices)
    latest = StrictBooleanFilter(
        method="filter_latest", help_text="true: only each system's latest prediction of each type."
    )

    class Meta(PredictionScopeFilter.Meta):
        fields = [*PredictionScopeFilter.Meta.fields, "above_threshold", "outcome", "latest"]

    def filter_latest(self, queryset, name, value):
        if value != "true":
            return queryset
        return predictions_latest(queryset, systems=scope_to_teams(AISystem.objects.all(), self.request.user))


class PredictorMetricsSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    source = serializers.ChoiceField(choices=PredictorSource.choices)
    trained_at = serializers.DateTimeField()
    metrics = serializers.DictField(
        help_text="Backtest quality: auc, brier, precision_at_threshold, mean_lead_time_hours, samples, positives, "
        "threshold."
    )
    meets_quality_floor = serializers.BooleanField(help_text="AUC ≥ the floor and Brier ≤ the floor.")


class PredictionQualityTypeSerializer(serializers.Serializer):
    prediction_type = serializers.ChoiceField(choices=PredictionType.choices)
    model = PredictorMetricsSerializer(allow_null=True, help_text="The active model, or null when none is.")
    matured = serializers.IntegerField(help_text="Predictions whose outcome is known.")
    pending = serializers.IntegerField(help_text="Predictions whose timeframe has not been evaluated yet.")
    above_threshold_occurred = serializers.IntegerField(help_text="Flagged, and the risk occurred (true positives).")
    above_threshold_not_occurred = serializers.IntegerField(help_text="Flagged, nothing happened (false positives).")
    below_threshold_occurred = serializers.IntegerField(help_text="Not flagged, the risk occurred (missed).")
    below_threshold_not_occurred = serializers.IntegerField(help_text="Not flagged, nothing happened.")
    precision = serializers.FloatField(allow_null=True, help_text="Realized: flagged that occurred / flagged.")
    recall = serializers.FloatField(allow_null=True, help_text="Realized: flagged that occurred / occurred.")


class PredictionQualitySerializer(serializers.Serializer):
    quality_floor = serializers.DictField(help_text="governance.predictive.quality_floor: {auc, brier}.")
    types = PredictionQualityTypeSerializer(many=True)


@extend_schema_view(
    list=extend_schema(summary="Risk predictions for your teams' AI systems (newest first)"),
    retrieve=extend_schema(
        summary="One prediction with its factors and outcome",
        responses={200: PredictionSerializer, 404: OpenApiResponse(ErrorEnvelopeSerializer)},
    ),
)
class PredictionViewSet(
    TeamScopedMixin,
    UUIDLookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Predictions are evidence written by the prediction pass: every human role reads those of their teams;
    nobody writes them through the API."""

    object_name = "prediction"
    queryset = PredictiveGovernance.objects.select_related("system", "model")
    serializer_class = PredictionSerializer
    filterset_class = PredictionFilter
    ordering_fields = ["created_at", "as_of", "risk_score"]
    ordering = ["-created_at"]

    @extend_schema(
        summary="Forecast quality: the active models' metrics and predicted-vs-actual per type",
        filters=True,
        responses={200: PredictionQualitySerializer, 400: OpenApiResponse(ErrorEnvelopeSerializer)},
    )
    @action(
        detail=False,
        methods=["get"],
        filterset_class=PredictionScopeFilter,
        filter_backends=[DjangoFilterBackend],
        pagination_class=None,
    )
    def quality(self, request):
        """Per prediction type: the active model's backtest metrics against the configured quality floor, and
        how the matured predictions of your teams' systems turned out (``entity``, ``type``, ``since``
        narrow the counts)."""
        queryset = self.filter_queryset(self.get_queryset())
        floor = registry.get("governance.predictive")["quality_floor"]
        models = predictor_models_active()
        wanted = request.query_params.get("type")
        types = []
        for counts in prediction_outcome_counts(queryset):
            if wanted and counts.prediction_type != wanted:
                continue
            model = models.get(counts.prediction_type)
            types.append(
                {
                    **counts.as_dict(),
                    "model": None
                    if model is None
                    else {
                        "version": model.version,
                        "source": model.source,
                        "trained_at": model.trained_at,
                        "metrics": model.metrics,
                        "meets_quality_floor": not predictor_quality_problems(model=model, floor=floor),
                    },
                }
            )
        return Response(PredictionQualitySerializer({"quality_floor": floor, "types": types}).data)
