"""``/spot-checks``: automatically decided items sampled for a human second look (the automation-bias
monitor). A verdict that disagrees often enough disables the policy (``hitl.services.auto_approval``)."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response

from governance.api.errors import Conflict
from governance.api.mixins import UUIDLookupMixin
from governance.choices import Role
from governance.selectors import scope_to_teams
from hitl.api import serializers as s
from hitl.models import SpotCheck, SpotCheckStatus
from hitl.services.auto_approval import (
    SpotCheckInvalid,
    SpotCheckMissing,
    SpotCheckNotPending,
    SpotCheckPermissionDenied,
    spot_check_record,
)
from oversight.api.serializers import ErrorEnvelopeSerializer

SPOT_CHECKERS = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.REVIEWER})


class SpotCheckFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=SpotCheckStatus.choices)
    policy = django_filters.UUIDFilter(field_name="policy", help_text="An auto-approval policy id.")

    class Meta:
        model = SpotCheck
        fields = ["status", "policy"]


@extend_schema_view(
    list=extend_schema(summary="Spot checks of your teams' items (newest first)"),
    retrieve=extend_schema(summary="One spot check"),
)
class SpotCheckViewSet(UUIDLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Admins, governance leads and reviewers of the item's team read spot checks and give verdicts."""

    object_name = "spot check"
    serializer_class = s.SpotCheckSerializer
    filterset_class = SpotCheckFilter
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    read_roles = SPOT_CHECKERS
    action_roles = {"verdict": SPOT_CHECKERS}

    def get_queryset(self):
        checks = SpotCheck.objects.select_related("item", "item__system", "policy", "reviewer")
        return scope_to_teams(checks, self.request.user)

    @extend_schema(
        summary="Give a verdict on an automatic decision",
        request=s.SpotCheckVerdictSerializer,
        responses={
            200: s.SpotCheckSerializer,
            400: OpenApiResponse(ErrorEnvelopeSerializer, description="A bad decision or a blank rationale."),
            403: OpenApiResponse(ErrorEnvelopeSerializer, description="Your role may not give verdicts."),
            404: OpenApiResponse(ErrorEnvelopeSerializer, description="No such spot check in your teams."),
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="It already has a verdict; nothing changed."),
        },
    )
    @action(detail=True, methods=["post"])
    def verdict(self, request, pk=None):
        """Your decision on the item, compared with the policy's: ``agreed`` or ``disagreed``. The
        item keeps its decision; the policy's agreement rate is rechecked at once."""
        check = self.get_object()
        body = s.SpotCheckVerdictSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            spot_check_record(spot_check_id=check.pk, reviewer=request.user, **body.validated_data)
        except SpotCheckNotPending as exc:
            raise Conflict(str(exc)) from exc
        except SpotCheckInvalid as exc:
            raise ValidationError(exc.fields) from exc
        except SpotCheckPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        except SpotCheckMissing as exc:
            raise NotFound(str(exc)) from exc
        return Response(self.get_serializer(self.get_object()).data)
