"""``/deployments``: CI/CD pipelines report what they deployed (like Sentry's deploys); each deployment is
judged against the CI/CD gate's decision, and one the gate did not allow is a policy-circumvention
detection. Thin edges over ``governance.services.deployments``."""

from __future__ import annotations

import django_filters
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from governance.api.gateway import CICD_GATE_ROLES
from governance.api.mixins import TeamScopedMixin, UUIDLookupMixin
from governance.choices import GateVerdict
from governance.models import Deployment
from governance.selectors import ai_system_get_by_ref
from governance.services.deployments import DeploymentInvalid, deployment_record
from oversight.api.serializers import ErrorEnvelopeSerializer
from oversight.selectors import system_ref_filter


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date-time that must carry its offset: a naive time is refused, never guessed."""

    default_error_messages = {"naive": "Must include a timezone offset (Z or ±HH:MM); a time without one is ambiguous."}

    def enforce_timezone(self, value):
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)


class DeploymentInSerializer(serializers.Serializer):
    system = serializers.CharField(max_length=200, help_text="The AI system's id or unique name.")
    artifact = serializers.CharField(max_length=300, help_text="What was deployed (image digest, model URI…).")
    environment = serializers.CharField(max_length=64, required=False, default="production")
    deployed_at = AwareDateTimeField(
        required=False, help_text="When it was deployed (ISO 8601 with an offset); now if unset; ≤ 5 min ahead."
    )

    def validate_system(self, ref: str):
        system = ai_system_get_by_ref(ref=ref, user=self.context["request"].user)
        if system is None:
            raise serializers.ValidationError(f"No AI system {ref!r} in your teams.")
        return system


class GateVerdictSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(
        source="gate_decision", choices=GateVerdict.choices, help_text="The gate's latest decision, or missing."
    )
    audit_entry = serializers.UUIDField(
        source="gate_audit_entry", allow_null=True, help_text="The cicd.gate_decided audit entry (null if missing)."
    )


class DeploymentSerializer(serializers.ModelSerializer):
    system_name = serializers.CharField(source="system.name", read_only=True)
    reported_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    gate = GateVerdictSerializer(source="*", read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "system",
            "system_name",
            "artifact",
            "environment",
            "deployed_at",
            "reported_by",
            "gate",
            "circumvention",
        ]
        read_only_fields = fields


class DeploymentFilter(django_filters.FilterSet):
    system = django_filters.CharFilter(method="filter_system", help_text="The AI system's id or name.")
    gate_decision = django_filters.ChoiceFilter(choices=GateVerdict.choices)

    class Meta:
        model = Deployment
        fields = ["system", "environment", "circumvention", "gate_decision"]

    def filter_system(self, queryset, name, value):
        return queryset.filter(system_ref_filter(value))


@extend_schema_view(
    list=extend_schema(summary="Deployments of your teams' AI systems (newest first)"),
    retrieve=extend_schema(
        summary="One deployment with the gate decision it was judged against",
        responses={200: DeploymentSerializer, 404: OpenApiResponse(ErrorEnvelopeSerializer)},
    ),
)
class DeploymentViewSet(
    TeamScopedMixin,
    UUIDLookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Every human role reads the deployments of their teams; CI/CD service accounts, governance leads and
    admins report them (as they ask the gate)."""

    object_name = "deployment"
    queryset = Deployment.objects.select_related("system", "reported_by")
    serializer_class = DeploymentSerializer
    filterset_class = DeploymentFilter
    ordering_fields = ["deployed_at", "created_at"]
    ordering = ["-deployed_at"]
    write_roles = CICD_GATE_ROLES

    @extend_schema(
        summary="Report a deployment; it is judged against the CI/CD gate's latest decision for the artifact",
        request=DeploymentInSerializer,
        responses={
            201: DeploymentSerializer,
            400: OpenApiResponse(ErrorEnvelopeSerializer, description="Invalid input (unknown system, …)."),
            403: OpenApiResponse(ErrorEnvelopeSerializer, description="Only cicd service accounts, leads, admins."),
        },
    )
    def create(self, request):
        body = DeploymentInSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            deployment = deployment_record(
                system=data["system"],
                artifact=data["artifact"],
                environment=data["environment"],
                deployed_at=data.get("deployed_at") or timezone.now(),
                actor=request.user,
            )
        except DeploymentInvalid as exc:
            raise ValidationError(exc.fields) from exc
        return Response(self.get_serializer(deployment).data, status=status.HTTP_201_CREATED)
