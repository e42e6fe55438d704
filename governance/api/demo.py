"""``/demo``: the golden demo's scenarios and runs, and a finished run's evidence package."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.api.errors import Conflict
from governance.choices import DemoCategory, Role
from governance.models import DemoRun, DemoScenario
from governance.selectors import is_uuid
from governance.services.demo import (
    DemoRunConflict,
    DemoRunInvalid,
    demo_run_representation,
    demo_run_start,
    scenario_resolve,
)
from governance.services.demo_evidence import EvidenceNotReady, evidence_build

DEMO_WRITERS = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD})
_ERROR = inline_serializer(
    "DemoError",
    fields={
        "error": inline_serializer(
            "DemoErrorBody",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(child=serializers.ListField(child=serializers.CharField())),
            },
        )
    },
)


class DemoRunStartSerializer(serializers.Serializer):
    scenario = serializers.CharField(
        required=False, max_length=100, help_text="A scenario's name or id; else the default scenario of ``mode``."
    )
    mode = serializers.ChoiceField(
        choices=DemoCategory.choices,
        required=False,
        help_text="investor, audit or training: plays that mode's default scenario.",
    )
    seed = serializers.IntegerField(default=42, min_value=-(2**63), max_value=2**63 - 1)

    def validate(self, attrs):
        if not attrs.get("scenario") and not attrs.get("mode"):
            raise ValidationError({"scenario": ["give a scenario (name or id) or a mode"]})
        return attrs


class DemoScenarioSerializer(serializers.ModelSerializer):
    # Declared: the model field's range differs by database vendor, and so would the schema.
    duration_seconds = serializers.IntegerField(read_only=True, help_text="The time budget the scenario is built for.")

    class Meta:
        model = DemoScenario
        fields = [
            "id",
            "scenario_name",
            "description",
            "category",
            "duration_seconds",
            "enabled",
            "steps",
            "expected_outcomes",
        ]


class DemoScenarioListView(APIView):
    """Every demo scenario (every human role reads)."""

    @extend_schema(summary="Golden-demo scenarios", responses=DemoScenarioSerializer(many=True))
    def get(self, request):
        return Response(DemoScenarioSerializer(DemoScenario.objects.all(), many=True).data)


_RUN = inline_serializer(
    "DemoRun",
    fields={
        "id": serializers.UUIDField(),
        "scenario": serializers.CharField(),
        "mode": serializers.ChoiceField(choices=DemoCategory.choices),
        "seed": serializers.IntegerField(),
        "status": serializers.CharField(),
        "started_at": serializers.DateTimeField(allow_null=True),
        "finished_at": serializers.DateTimeField(allow_null=True),
        "current_step": serializers.CharField(allow_null=True),
        "current_index": serializers.IntegerField(allow_null=True),
        "steps_total": serializers.IntegerField(),
        "steps_done": serializers.IntegerField(),
        "steps": serializers.ListField(
            child=serializers.DictField(),
            help_text="{key, title, status, started_at, duration_ms, outcome: {expected, actual, held}, counters, "
            "measured, message, narration: {what, technically, why, next}}",
        ),
        "counters": serializers.DictField(),
        "kpis_before": serializers.DictField(),
        "kpis_after": serializers.DictField(),
        "audit_seq_first": serializers.IntegerField(allow_null=True),
        "audit_seq_last": serializers.IntegerField(allow_null=True),
        "evidence_sha256": serializers.CharField(allow_null=True),
        "error": serializers.CharField(),
    },
)


_RUN_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The demo run's id.")


@extend_schema_view(retrieve=extend_schema(parameters=[_RUN_ID]), evidence=extend_schema(parameters=[_RUN_ID]))
class DemoRunViewSet(viewsets.ViewSet):
    """Golden-demo runs: admin and governance lead start them; every human role follows them."""

    write_roles = DEMO_WRITERS

    def _run(self, pk) -> DemoRun:
        run = DemoRun.objects.select_related("scenario").filter(pk=pk).first() if is_uuid(pk) else None
        if run is None:
            raise NotFound(f"No demo run {pk!r}.")
        return run

    @extend_schema(
        summary="Start a golden-demo run",
        request=DemoRunStartSerializer,
        responses={
            202: inline_serializer(
                "DemoRunStarted", fields={"id": serializers.UUIDField(), "status": serializers.CharField()}
            ),
            400: OpenApiResponse(_ERROR, description="Unknown scenario or mode, disabled scenario, bad seed."),
            409: OpenApiResponse(_ERROR, description="Another demo run is pending or running."),
        },
    )
    def create(self, request):
        """Queue the run on the default queue (``governance.demo_run``); with eager Celery it has played
        by the time this answers. Poll ``GET /demo/runs/{id}``."""
        from governance.tasks import demo_run

        params = DemoRunStartSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            scenario = scenario_resolve(
                scenario=params.validated_data.get("scenario"), mode=params.validated_data.get("mode")
            )
            run = demo_run_start(scenario=scenario, seed=params.validated_data["seed"], user=request.user)
        except DemoRunInvalid as exc:
            raise ValidationError(exc.fields) from exc
        except DemoRunConflict as exc:
            raise Conflict(str(exc)) from exc
        demo_run.delay(str(run.pk))
        run.refresh_from_db(fields=["status"])
        return Response({"id": str(run.pk), "status": run.status}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="A golden-demo run: status, steps with narration, counters, KPIs", responses=_RUN)
    def retrieve(self, request, pk=None):
        return Response(demo_run_representation(self._run(pk)))

    @extend_schema(
        summary="A finished run's evidence package (zip)",
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            404: OpenApiResponse(_ERROR, description="No such run."),
            409: OpenApiResponse(_ERROR, description="The run has not finished yet."),
        },
    )
    @action(detail=True, methods=["get"])
    def evidence(self, request, pk=None):
        """Built from the database on each request (the same bytes but the timestamps the package notes);
        verify it with ``manage.py verify_evidence``."""
        run = self._run(pk)
        try:
            data, _ = evidence_build(run)
        except EvidenceNotReady as exc:
            raise Conflict(str(exc)) from exc
        response = HttpResponse(data, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="demo-{run.pk.hex[:8]}-{run.mode}.zip"'
        return response
