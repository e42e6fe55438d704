"""``/follow-ups``: work promised when incidents were resolved, across the incidents of your teams;
completing one goes through ``incidents.services.housekeeping`` (timeline, audit)."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from governance.api.errors import Conflict
from governance.api.mixins import UUIDLookupMixin
from governance.selectors import is_uuid
from incidents import selectors
from incidents.api import serializers as s
from incidents.api.incidents import RESPONDER_ROLES
from incidents.models import FollowUp, FollowUpStatus
from incidents.services.housekeeping import FollowUpNotOpen, follow_up_complete
from oversight.api.serializers import ErrorEnvelopeSerializer

OWNER_ME = "me"


class FollowUpFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=FollowUpStatus.choices)
    incident = django_filters.UUIDFilter(field_name="incident", help_text="An incident id.")
    owner = django_filters.CharFilter(method="filter_owner", help_text='A user id, or "me".')
    due_before = django_filters.DateFilter(field_name="due_date", lookup_expr="lte", help_text="Due on or before.")

    class Meta:
        model = FollowUp
        fields = ["status", "incident", "owner", "due_before"]

    def filter_owner(self, queryset, name, value):
        if value == OWNER_ME:
            return queryset.filter(owner=self.request.user)
        if not is_uuid(value):
            raise ValidationError({"owner": [f'must be a user id or "{OWNER_ME}"']})
        return queryset.filter(owner_id=value)


@extend_schema_view(
    list=extend_schema(summary="Follow-ups of your teams' incidents (soonest due first)"),
    retrieve=extend_schema(summary="One follow-up"),
)
class FollowUpViewSet(UUIDLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every human role reads; reviewers, security, governance leads and admins complete."""

    object_name = "follow-up"
    serializer_class = s.FollowUpSerializer
    filterset_class = FollowUpFilter
    ordering_fields = ["due_date", "created_at"]
    ordering = ["due_date"]
    action_roles = {"complete": RESPONDER_ROLES}

    def get_queryset(self):
        return selectors.follow_ups_for_user(user=self.request.user)

    @extend_schema(
        summary="Mark a follow-up done",
        request=None,
        responses={
            200: s.FollowUpSerializer,
            403: OpenApiResponse(ErrorEnvelopeSerializer, description="Your role may not act on incidents."),
            404: OpenApiResponse(ErrorEnvelopeSerializer, description="No such follow-up in your teams."),
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="Already done or cancelled."),
        },
    )
    @action(detail=True, methods=["post"])
    def complete(self, request, pk=None):
        """open → done; timeline of its incident and audit ``follow_up.completed``."""
        follow_up = self.get_object()
        try:
            follow_up_complete(follow_up_id=follow_up.id, actor=request.user)
        except FollowUpNotOpen as exc:
            raise Conflict(f"The {exc}; nothing was changed.") from exc
        return Response(s.FollowUpSerializer(self.get_object()).data)
