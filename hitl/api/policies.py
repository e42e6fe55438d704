"""``/auto-approval-policies``: which pending items may be decided without a human, with each policy's
human spot-check agreement. Writes go through ``hitl.services.policies`` (validated, audited)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from governance.api.errors import FieldConflict
from governance.api.mixins import UUIDLookupMixin
from governance.choices import Role
from governance.models import User
from governance.selectors import scope_to_teams
from hitl.api import serializers as s
from hitl.models import AutoApprovalPolicy, ReviewDecision
from hitl.services.auto_approval import policy_agreement
from hitl.services.policies import (
    PolicyNameTaken,
    PolicyPermissionDenied,
    PolicyValidationError,
    auto_approval_policy_create,
    auto_approval_policy_delete,
    auto_approval_policy_set_enabled,
    auto_approval_policy_update,
)
from oversight.api.serializers import ErrorEnvelopeSerializer

POLICY_READERS = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.REVIEWER})
POLICY_WRITERS = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD})
ADMIN_ONLY = frozenset({Role.ADMIN})


def auto_approval_policies_for_user(*, user: User) -> QuerySet[AutoApprovalPolicy]:
    """The policies of the caller's teams plus those covering every team (no team: they decide the
    caller's items too); admins see all."""
    policies = AutoApprovalPolicy.objects.select_related("team", "created_by")
    if not getattr(user, "is_authenticated", False):
        return policies.none()
    scoped = scope_to_teams(policies, user)
    if user.is_admin_role:
        return scoped
    return scoped | policies.filter(team__isnull=True)


@contextmanager
def policy_service_errors() -> Iterator[None]:
    """The policy services' refusals as API errors: a taken name 409, bad data 400, a role 403."""
    try:
        yield
    except PolicyNameTaken as exc:
        raise FieldConflict(exc.fields) from exc
    except PolicyValidationError as exc:
        raise ValidationError(exc.fields) from exc
    except PolicyPermissionDenied as exc:
        raise PermissionDenied(str(exc)) from exc


class AutoApprovalPolicyFilter(django_filters.FilterSet):
    enabled = django_filters.BooleanFilter()
    shadow_mode = django_filters.BooleanFilter()
    auto_action = django_filters.ChoiceFilter(choices=ReviewDecision.choices)
    team = django_filters.UUIDFilter(field_name="team", help_text="A team id.")

    class Meta:
        model = AutoApprovalPolicy
        fields = ["enabled", "shadow_mode", "auto_action", "team"]


_WRITE_ERRORS = {
    400: OpenApiResponse(ErrorEnvelopeSerializer, description="Invalid fields (risk outside 0–100, a severity…)."),
    403: OpenApiResponse(ErrorEnvelopeSerializer, description="Your role may not do this (only admins enable)."),
}
_ADMIN_ERRORS = {
    403: OpenApiResponse(ErrorEnvelopeSerializer, description="Admins only."),
    404: OpenApiResponse(ErrorEnvelopeSerializer, description="No such policy visible to you."),
}


@extend_schema_view(
    list=extend_schema(summary="Auto-approval policies (yours and every-team ones), by name"),
    retrieve=extend_schema(summary="One auto-approval policy with its spot-check agreement"),
)
class AutoApprovalPolicyViewSet(
    UUIDLookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Admins, governance leads and reviewers read; admins and governance leads create and edit
    disabled or shadow policies; only admins enable, disable, delete, or change a deciding policy."""

    object_name = "auto-approval policy"
    serializer_class = s.AutoApprovalPolicySerializer
    filterset_class = AutoApprovalPolicyFilter
    ordering_fields = ["policy_name", "created_at"]
    ordering = ["policy_name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    read_roles = POLICY_READERS
    write_roles = POLICY_WRITERS
    action_roles = {"destroy": ADMIN_ONLY, "enable": ADMIN_ONLY, "disable": ADMIN_ONLY}

    def get_queryset(self):
        return auto_approval_policies_for_user(user=self.request.user)

    def represent(self, policies: list[AutoApprovalPolicy], *, many: bool = False):
        """Serialized policies with their spot-check agreement (one aggregate query for all of them)."""
        agreement = policy_agreement(policy_ids=[policy.pk for policy in policies]) if policies else {}
        context = {**self.get_serializer_context(), "agreement": agreement}
        if many:
            return s.AutoApprovalPolicySerializer(policies, many=True, context=context).data
        return s.AutoApprovalPolicySerializer(policies[0], context=context).data

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.represent(page, many=True))

    def retrieve(self, request, *args, **kwargs):
        return Response(self.represent([self.get_object()]))

    @extend_schema(
        summary="Create an auto-approval policy (disabled unless an admin enables it)",
        request=s.AutoApprovalPolicyWriteSerializer,
        responses={
            201: s.AutoApprovalPolicySerializer,
            **_WRITE_ERRORS,
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="The policy name is taken."),
        },
    )
    def create(self, request):
        body = s.AutoApprovalPolicyWriteSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        with policy_service_errors():
            policy = auto_approval_policy_create(actor=request.user, data=body.validated_data)
        return Response(self.represent([policy]), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change some fields of a policy",
        request=s.AutoApprovalPolicyWriteSerializer,
        responses={
            200: s.AutoApprovalPolicySerializer,
            **_WRITE_ERRORS,
            404: OpenApiResponse(ErrorEnvelopeSerializer, description="No such policy visible to you."),
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="The policy name is taken."),
        },
    )
    def partial_update(self, request, pk=None):
        """Only the fields sent change (each change audited). Changing what an enabled policy decides,
        or ``enabled`` itself, is for admins."""
        policy = self.get_object()
        body = s.AutoApprovalPolicyWriteSerializer(data=request.data, partial=True, context={"request": request})
        body.is_valid(raise_exception=True)
        with policy_service_errors():
            policy = auto_approval_policy_update(policy=policy, actor=request.user, data=body.validated_data)
        return Response(self.represent([policy]))

    @extend_schema(summary="Delete a policy (admins)", responses={204: None, **_ADMIN_ERRORS})
    def destroy(self, request, pk=None):
        """Items it decided keep their decisions; the audit log keeps its history."""
        policy = self.get_object()
        with policy_service_errors():
            auto_approval_policy_delete(policy=policy, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Enable a policy: it starts deciding matching items (admins)",
        request=s.PolicyToggleSerializer,
        responses={200: s.AutoApprovalPolicySerializer, **_ADMIN_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def enable(self, request, pk=None):
        """Idempotent: enabling an enabled policy changes and audits nothing."""
        return self._set_enabled(request, enabled=True)

    @extend_schema(
        summary="Disable a policy (admins)",
        request=s.PolicyToggleSerializer,
        responses={200: s.AutoApprovalPolicySerializer, **_ADMIN_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def disable(self, request, pk=None):
        """Stores ``reason`` as ``disabled_reason``. Idempotent."""
        return self._set_enabled(request, enabled=False)

    def _set_enabled(self, request, *, enabled: bool) -> Response:
        policy = self.get_object()
        body = s.PolicyToggleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with policy_service_errors():
            auto_approval_policy_set_enabled(
                policy=policy, enabled=enabled, actor=request.user, reason=body.validated_data.get("reason", "")
            )
        return Response(self.represent([self.get_object()]))
