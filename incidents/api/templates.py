"""``/rca-templates``: what a root-cause analysis of each incident type must contain. Everyone reads;
admins and governance leads edit through ``incidents.services.templates`` (validated, audited)."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from governance.choices import Role
from governance.selectors import is_uuid, scope_to_teams
from incidents.api import serializers as s
from incidents.models import IncidentType, RCATemplate
from incidents.services.templates import RCATemplateInvalid, rca_template_update
from oversight.api.serializers import ErrorEnvelopeSerializer

TEMPLATE_EDITORS = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD})


class RCATemplateFilter(django_filters.FilterSet):
    incident_type = django_filters.ChoiceFilter(choices=IncidentType.choices)

    class Meta:
        model = RCATemplate
        fields = ["incident_type"]


@extend_schema_view(
    list=extend_schema(summary="RCA templates, one per incident type"),
    retrieve=extend_schema(
        summary="One RCA template (by id or incident type)",
        responses={200: s.RCATemplateSerializer, 404: OpenApiResponse(ErrorEnvelopeSerializer)},
    ),
)
class RCATemplateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A template is linked to each incident when it opens (by its type); a high or critical incident
    closes only once every ``required_fields`` entry of its RCA is filled."""

    serializer_class = s.RCATemplateSerializer
    filterset_class = RCATemplateFilter
    ordering_fields = ["incident_type"]
    ordering = ["incident_type"]
    http_method_names = ["get", "patch", "head", "options"]
    write_roles = TEMPLATE_EDITORS

    def get_queryset(self):
        return scope_to_teams(RCATemplate.objects.all(), self.request.user)  # platform-wide rows

    def get_object(self) -> RCATemplate:
        ref = self.kwargs["pk"]
        lookup = {"pk": ref} if is_uuid(ref) else {"incident_type": ref}
        template = self.get_queryset().filter(**lookup).first()
        if template is None:
            raise NotFound(f"No RCA template {ref!r}.")
        return template

    @extend_schema(
        summary="Change a template's name, guidance or required fields (admins, governance leads)",
        request=s.RCATemplateUpdateSerializer,
        responses={
            200: s.RCATemplateSerializer,
            400: OpenApiResponse(ErrorEnvelopeSerializer, description="Invalid fields; each is named."),
            403: OpenApiResponse(ErrorEnvelopeSerializer, description="Admins and governance leads only."),
            404: OpenApiResponse(ErrorEnvelopeSerializer, description="No such template."),
        },
    )
    def partial_update(self, request, pk=None):
        """Only the fields sent change; ``required_fields`` is a non-empty list of distinct field names
        (letters, digits, underscores). Audited ``rca_template.updated``; sending the current values
        changes and audits nothing. Open incidents are checked against the new fields when they close."""
        template = self.get_object()
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["an object with name, template_content or required_fields"]})
        try:
            template = rca_template_update(template=template, actor=request.user, data=request.data)
        except RCATemplateInvalid as exc:
            raise ValidationError(exc.fields) from exc
        return Response(s.RCATemplateSerializer(template).data)
