"""``/events``: bulk ingest (``POST``) and team-scoped reads of raw events."""

from __future__ import annotations

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from governance.api.errors import PayloadTooLarge
from governance.api.parsers import VigilJSONParser
from governance.choices import HUMAN_ROLES, Role, Severity
from oversight import selectors
from oversight.api import serializers as s
from oversight.models import Category, EventRaw
from oversight.services.ingest import ingest_events
from oversight.validation import EventBatchTooLarge, EventValidationError, events_from_body

INGEST_ROLES = frozenset({Role.INGEST, Role.ADMIN, Role.GOVERNANCE_LEAD})
EVENT_READ_ROLES = HUMAN_ROLES | {Role.INGEST}


class EventsJSONParser(VigilJSONParser):
    """The project's JSON parser, except that ``NaN`` and ``Infinity`` literals parse (as floats) so
    that event validation reports them on the field that holds them (``events.3.value: must be a
    finite number``) instead of refusing the whole body with a parse error that names no event.
    Validation refuses every non-finite number, so none is ever stored."""

    strict = False


class InvalidEvents(exceptions.APIException):
    """400 envelope with code ``invalid`` and every bad item's fields."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"

    def __init__(self, error: EventValidationError):
        self.fields = error.errors
        super().__init__(detail=error.message)


class TooManyEvents(PayloadTooLarge):
    def __init__(self, error: EventBatchTooLarge):
        self.fields = {"events": [error.field_message]}
        super().__init__(detail=str(error))


class EventFilter(django_filters.FilterSet):
    system = django_filters.CharFilter(method="filter_system", help_text="The AI system's id or name.")
    category = django_filters.ChoiceFilter(choices=Category.choices)
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    signal = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(
        field_name="occurred_at", lookup_expr="gte", help_text="Events that occurred at or after this time."
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="occurred_at", lookup_expr="lt", help_text="Events that occurred before this time."
    )
    batch = django_filters.UUIDFilter(field_name="batch_id", help_text="The ingest batch id.")
    scenario_id = django_filters.CharFilter()
    processed = django_filters.BooleanFilter(
        field_name="processed_at", lookup_expr="isnull", exclude=True, help_text="Whether processing has run."
    )

    class Meta:
        model = EventRaw
        fields = ["system", "category", "severity", "signal", "since", "until", "batch", "scenario_id", "processed"]

    def filter_system(self, queryset, name, value):
        return queryset.filter(selectors.system_ref_filter(value))


@extend_schema_view(
    list=extend_schema(summary="Raw events of your teams' systems (newest first)"),
    retrieve=extend_schema(
        summary="One event by its client event_id",
        parameters=[OpenApiParameter("event_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
    ),
)
class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Telemetry events. ``POST`` ingests a batch of up to 5,000 events, all or nothing."""

    serializer_class = s.EventSerializer
    filterset_class = EventFilter
    ordering_fields = ["occurred_at"]
    ordering = ["-id"]  # arrival order: unique and never changes, so the cursor is exact
    lookup_field = "event_id"
    lookup_value_regex = "[^/]+"
    parser_classes = [EventsJSONParser]
    read_roles = EVENT_READ_ROLES
    write_roles = INGEST_ROLES

    def get_queryset(self):
        return selectors.events_for_user(user=self.request.user)

    def get_object(self):
        event = selectors.event_get_for_user(user=self.request.user, event_id=self.kwargs["event_id"])
        if event is None:
            raise NotFound(f"No event with event_id {self.kwargs['event_id']!r}.")
        return event

    @extend_schema(
        summary="Ingest a batch of events",
        request=s.EventBatchInSerializer,
        responses={
            202: s.IngestResultSerializer,
            400: OpenApiResponse(s.ErrorEnvelopeSerializer, description="Invalid events; nothing was stored."),
            413: OpenApiResponse(s.ErrorEnvelopeSerializer, description="Over 5,000 events or 10 MB."),
        },
    )
    def create(self, request):
        """Validate every event, then store the new ones (a resent ``event_id`` counts as a duplicate)
        and enqueue their processing. Any invalid event rejects the whole batch (400, every bad field
        named)."""
        try:
            items = events_from_body(request.data)
            result = ingest_events(items=items, submitted_by=request.user)
        except EventBatchTooLarge as exc:
            raise TooManyEvents(exc) from exc
        except EventValidationError as exc:
            raise InvalidEvents(exc) from exc
        body = {"batch_id": str(result.batch_id), "accepted": result.accepted, "duplicates": result.duplicates}
        return Response(body, status=status.HTTP_202_ACCEPTED)
