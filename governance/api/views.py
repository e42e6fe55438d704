"""API views of the governance core: thin adapters over services and selectors."""

from __future__ import annotations

import uuid

import django_filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.api import serializers as s
from governance.api.mixins import TeamScopedMixin
from governance.choices import Role
from governance.models import AISystem, AuditLog, Capability, ControlAssessment, EvaluationRun, Team, User
from governance.services import assessments, organization
from governance.services.audit import audit_chain_verify_and_record
from governance.services.kpis import capability_statuses, kpi_report

ADMIN_ONLY = frozenset({Role.ADMIN})
AUDIT_READERS = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.SECURITY})


class TeamViewSet(
    TeamScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Teams own AI systems; non-admins see only their own teams."""

    queryset = Team.objects.all()
    serializer_class = s.TeamSerializer
    filterset_fields = {"name": ["exact", "icontains"], "slug": ["exact"]}
    ordering_fields = ["created_at", "name"]
    ordering = ["-created_at"]
    write_roles = ADMIN_ONLY

    def perform_create(self, serializer):
        serializer.instance = organization.team_create(actor=self.request.user, **serializer.validated_data)


class AISystemFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = AISystem
        fields = ["team", "entity_type", "risk_class", "is_active", "name"]


class AISystemViewSet(
    TeamScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """The AI system inventory. ``{id}`` in the URL may be the system's id or its unique name."""

    queryset = AISystem.objects.select_related("team", "owner")
    serializer_class = s.AISystemSerializer
    filterset_class = AISystemFilter
    ordering_fields = ["created_at", "name", "risk_class"]
    ordering = ["-created_at"]
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_serializer_class(self):
        return s.AISystemUpdateSerializer if self.action == "partial_update" else s.AISystemSerializer

    def get_object(self):
        ref = self.kwargs[self.lookup_field]
        queryset = self.filter_queryset(self.get_queryset())
        try:
            obj = queryset.filter(pk=uuid.UUID(ref)).first()
        except ValueError:
            obj = None
        obj = obj or queryset.filter(name=ref).first()
        if obj is None:
            raise NotFound(f"No AI system {ref!r}.")
        self.check_object_permissions(self.request, obj)
        return obj

    def perform_create(self, serializer):
        owner = self.request.user if not self.request.user.is_service_account else None
        serializer.instance = organization.ai_system_register(
            actor=self.request.user, owner=owner, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = organization.ai_system_update(
            system=serializer.instance, actor=self.request.user, **serializer.validated_data
        )


class UserViewSet(
    TeamScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """People and their roles; admin role only."""

    queryset = User.objects.prefetch_related("groups", "teams")
    serializer_class = s.UserSerializer
    filterset_fields = ["is_service_account", "is_active"]
    ordering_fields = ["date_joined", "username"]
    ordering = ["-date_joined"]
    read_roles = ADMIN_ONLY
    write_roles = ADMIN_ONLY

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = organization.user_create(
            username=data["username"],
            password=data["password"],
            roles=data["role_list"],
            teams=data.get("teams", []),
            email=data.get("email", ""),
            actor=self.request.user,
        )


class CapabilityViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The 12 governance capabilities with their live status (enforced / not_enforced / not_measured)."""

    queryset = Capability.objects.all()
    serializer_class = s.CapabilitySerializer
    pagination_class = None
    filter_backends = []
    lookup_field = "code"

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "statuses": capability_statuses()}


class ControlAssessmentViewSet(
    TeamScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    queryset = ControlAssessment.objects.select_related("system", "assessor")
    serializer_class = s.ControlAssessmentSerializer
    filterset_fields = ["system", "status", "framework", "control"]
    ordering_fields = ["assessed_at", "created_at"]
    ordering = ["-created_at"]

    def perform_create(self, serializer):
        serializer.instance = assessments.control_assessment_record(
            actor=self.request.user, **serializer.validated_data
        )


class EvaluationRunFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="ran_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="ran_at", lookup_expr="lt")

    class Meta:
        model = EvaluationRun
        fields = ["system", "suite", "metric", "passed", "since", "until"]


class EvaluationRunViewSet(
    TeamScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Evaluation results; CI pipelines (role ``cicd``) may record them."""

    queryset = EvaluationRun.objects.select_related("system")
    serializer_class = s.EvaluationRunSerializer
    filterset_class = EvaluationRunFilter
    ordering_fields = ["ran_at", "created_at", "value"]
    ordering = ["-created_at"]
    write_roles = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.CICD})

    def perform_create(self, serializer):
        serializer.instance = assessments.evaluation_run_record(actor=self.request.user, **serializer.validated_data)


class AuditLogFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")
    action = django_filters.CharFilter()
    action_prefix = django_filters.CharFilter(field_name="action", lookup_expr="startswith")

    class Meta:
        model = AuditLog
        fields = ["actor", "actor_type", "action", "object_type", "object_id", "since", "until"]


class AuditLogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The hash-chained audit log (read-only), for admins, governance leads and security."""

    queryset = AuditLog.objects.all()
    serializer_class = s.AuditLogSerializer
    filterset_class = AuditLogFilter
    ordering_fields = ["seq"]
    ordering = ["-seq"]
    read_roles = AUDIT_READERS
    action_roles = {"verify": AUDIT_READERS}

    @extend_schema(request=None, responses=s.AuditVerificationSerializer)
    @action(detail=False, methods=["post"])
    def verify(self, request):
        """Walk the chain now; ``ok`` false names the first broken row."""
        result = audit_chain_verify_and_record()
        return Response(s.AuditVerificationSerializer(result).data)


class KPIView(APIView):
    """The plan's success criteria and the 12 capabilities, computed from data now."""

    @extend_schema(
        responses=inline_serializer(
            "KPIReport",
            fields={
                "generated_at": serializers.DateTimeField(),
                "kpis": serializers.ListField(child=serializers.DictField()),
                "capabilities": serializers.DictField(),
                "response_times": serializers.ListField(
                    child=serializers.DictField(),
                    help_text="MTTA/MTTR p50 and p95 (seconds) per severity over the last 30 days.",
                ),
            },
        ),
    )
    def get(self, request):
        return Response(kpi_report())
