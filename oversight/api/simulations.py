"""``/simulations``: start, watch and stop synthetic load runs measured against their ground truth."""

from __future__ import annotations

from typing import Any

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from governance.api.errors import Conflict
from governance.choices import Role
from governance.selectors import uuid_or_none
from oversight.api.serializers import ErrorEnvelopeSerializer
from oversight.metrics import simulation_report
from oversight.models import ACTIVE_SIMULATION_STATUSES, Simulation, SimulationStatus
from oversight.services.simulation import (
    MAX_BATCH_SIZE,
    MAX_RATE_PER_S,
    MAX_TOTAL,
    MIN_RATE_PER_S,
    SimulationConflict,
    simulation_start,
    simulation_stop,
)

SIMULATION_WRITERS = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD})
COUNTER_KEYS = ("generated", "ingested", "processed", "alerts", "incidents", "reviews")


def simulation_representation(simulation: Simulation, *, live: bool = True) -> dict[str, Any]:
    """The API shape of a simulation (DESIGN §5).

    Final simulations serve their stored report. Active ones, with ``live``, are measured from data
    now (a few set-based queries, cheap for thousands of events); without ``live`` (lists) they show
    the stored counters and no metrics yet."""
    if live and simulation.status in ACTIVE_SIMULATION_STATUSES:
        report = simulation_report(simulation)
    else:
        report = simulation.report or {}
    counters = {**simulation.counters, **report.get("counters", {})}
    quality = report.get("quality") or {}
    return {
        "id": str(simulation.id),
        "status": simulation.status,
        "total": simulation.total,
        "batch_size": simulation.batch_size,
        "rate_per_s": simulation.rate_per_s,
        "seed": simulation.seed,
        "mix": simulation.mix or None,
        "started_at": _iso(simulation.started_at),
        "finished_at": _iso(simulation.finished_at),
        "counters": {key: int(counters.get(key, 0)) for key in COUNTER_KEYS},
        "mttd_seconds": _percentiles(report.get("mttd_seconds") or {}),
        "mttr_seconds": _percentiles(report.get("mttr_seconds") or {}),
        "quality": {
            "precision": quality.get("precision"),
            "recall": quality.get("recall"),
            "f1": quality.get("f1"),
            "by_category": {
                category: {key: figures.get(key) for key in ("precision", "recall", "f1")}
                for category, figures in (quality.get("by_category") or {}).items()
            },
        },
        "error": simulation.error,
    }


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _percentiles(latency: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {bucket: {"p50": figures.get("p50"), "p95": figures.get("p95")} for bucket, figures in latency.items()}


# --- serializers (the request, and the response's documentation) -----------------------------------
class SimulationStartSerializer(serializers.Serializer):
    total = serializers.IntegerField(min_value=1, max_value=MAX_TOTAL, help_text="Events to generate.")
    batch_size = serializers.IntegerField(
        min_value=1, max_value=MAX_BATCH_SIZE, default=500, help_text="Events per ingested batch."
    )
    rate_per_s = serializers.FloatField(
        min_value=MIN_RATE_PER_S,
        max_value=MAX_RATE_PER_S,
        allow_null=True,
        default=1000.0,
        help_text="Events per second in real time; null: a backdated history (1 event/s) sent as fast as possible.",
    )
    seed = serializers.IntegerField(default=42, min_value=-(2**63), max_value=2**63 - 1)
    mix = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text='Category shares summing to 1, e.g. {"data_quality": 0.5, "fairness": 0.5}; default mix if absent.',
    )


class _Latency(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class _Counters(serializers.Serializer):
    generated = serializers.IntegerField()
    ingested = serializers.IntegerField()
    processed = serializers.IntegerField(help_text="Events of the simulation's batches that processing evaluated.")
    alerts = serializers.IntegerField(help_text="Alerts that fired on the simulation's systems.")
    incidents = serializers.IntegerField()
    reviews = serializers.IntegerField()


class _QualityFigures(serializers.Serializer):
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    f1 = serializers.FloatField(allow_null=True)


class _Quality(_QualityFigures):
    by_category = serializers.DictField(child=_QualityFigures())


class SimulationSerializer(serializers.Serializer):
    """Read shape of a simulation; built by :func:`simulation_representation`."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=SimulationStatus.choices)
    total = serializers.IntegerField()
    batch_size = serializers.IntegerField()
    rate_per_s = serializers.FloatField(allow_null=True)
    seed = serializers.IntegerField()
    mix = serializers.DictField(child=serializers.FloatField(), allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    counters = _Counters()
    mttd_seconds = serializers.DictField(
        child=_Latency(), help_text='MTTD per scenario severity and "all": detection − onset, seconds.'
    )
    mttr_seconds = serializers.DictField(child=_Latency(), help_text="Resolution time of its incidents; {} if none.")
    quality = _Quality(help_text="Precision, recall and F1 against the planted scenarios; null while unknown.")
    error = serializers.CharField(help_text="Why it failed; empty otherwise.")

    def to_representation(self, instance: Simulation) -> dict[str, Any]:
        return simulation_representation(instance, live=self.context.get("live", True))


class SimulationFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=SimulationStatus.choices)

    class Meta:
        model = Simulation
        fields = ["status"]


@extend_schema_view(
    list=extend_schema(summary="Simulations, newest first (stored counters; open one for live metrics)"),
    retrieve=extend_schema(summary="One simulation with live counters and metrics"),
)
class SimulationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Synthetic load runs. Every human role reads; admin and governance lead start and stop them."""

    queryset = Simulation.objects.all()
    serializer_class = SimulationSerializer
    filterset_class = SimulationFilter
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    write_roles = SIMULATION_WRITERS
    action_roles = {"stop": SIMULATION_WRITERS}

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "live": self.action != "list"}

    def get_object(self) -> Simulation:
        simulation = Simulation.objects.filter(pk=uuid_or_none(self.kwargs["pk"])).first()
        if simulation is None:
            raise NotFound(f"No simulation {self.kwargs['pk']!r}.")
        return simulation

    @extend_schema(
        summary="Start a simulation",
        request=SimulationStartSerializer,
        responses={
            201: SimulationSerializer,
            400: OpenApiResponse(ErrorEnvelopeSerializer, description="Invalid parameters (fields named)."),
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="Two simulations are active already."),
        },
    )
    def create(self, request):
        """Plan the events, register the synthetic fleet and labels, and start sending (after commit)."""
        params = SimulationStartSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            simulation = simulation_start(**params.validated_data, actor=request.user)
        except SimulationConflict as exc:
            raise Conflict(str(exc)) from exc
        simulation.refresh_from_db()
        return Response(simulation_representation(simulation, live=False), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Stop a simulation",
        request=None,
        responses={
            200: SimulationSerializer,
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="The simulation is already final."),
        },
    )
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """Running → stopping (stopped within one batch, with a report of what ran); pending → stopped."""
        try:
            simulation = simulation_stop(simulation=self.get_object(), actor=request.user)
        except SimulationConflict as exc:
            raise Conflict(str(exc)) from exc
        simulation.refresh_from_db()
        return Response(simulation_representation(simulation))
