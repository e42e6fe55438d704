"""``/incidents``: list and inspect the incidents of your teams, drive one through its lifecycle
(acknowledge, mitigate, resolve, close, reopen, assign, notes, RCA), resolve many at once, read its
knowledge graph, its EU AI Act Art. 73 deadline and report, its follow-ups, and the incident metrics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import django_filters
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer, StaticHTMLRenderer
from rest_framework.response import Response

from governance.api.errors import Conflict, PayloadTooLarge
from governance.api.mixins import UUIDLookupMixin
from governance.choices import Role, Severity
from governance.models import User
from governance.selectors import is_uuid
from incidents import selectors
from incidents.api import serializers as s
from incidents.models import OPEN_INCIDENT_STATUSES, Incident, IncidentStatus, IncidentType
from incidents.services.bulk import BulkResolveError, incidents_bulk_resolve
from incidents.services.graph import incident_graph
from incidents.services.housekeeping import follow_up_create
from incidents.services.lifecycle import (
    IncidentInvalid,
    IncidentTransitionError,
    incident_acknowledge,
    incident_assign,
    incident_close,
    incident_mitigate,
    incident_note,
    incident_reopen,
    incident_resolve,
)
from incidents.services.rca import RCAInvalid, incident_rca_update
from incidents.services.regulatory import (
    incident_mark_reported,
    incident_mark_serious,
    incident_report,
    incident_report_html,
)
from oversight.api.serializers import ErrorEnvelopeSerializer
from oversight.selectors import system_ref_filter

# Who may act on an incident (viewers read only); marking serious and reporting to the authority is
# for the people accountable for compliance.
RESPONDER_ROLES = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.SECURITY, Role.REVIEWER})
REGULATORY_ROLES = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.SECURITY})
ASSIGNEE_ME = "me"


@contextmanager
def incident_service_errors() -> Iterator[None]:
    """The lifecycle services' refusals as API errors: an illegal or lost transition 409 (404 when
    the incident is gone), bad input 400 naming each field."""
    try:
        yield
    except IncidentTransitionError as exc:
        if exc.current is None:
            raise NotFound(f"No incident {exc.incident_id}.") from exc
        raise Conflict(f"{exc}; nothing was changed.") from exc
    except (IncidentInvalid, RCAInvalid) as exc:
        raise ValidationError(exc.fields) from exc


class IncidentFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=IncidentStatus.choices)
    open = django_filters.BooleanFilter(
        method="filter_open", help_text="true: open, acknowledged or mitigated; false: resolved or closed."
    )
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    system = django_filters.CharFilter(method="filter_system", help_text="The AI system's id or name.")
    team = django_filters.UUIDFilter(field_name="team", help_text="A team id.")
    incident_type = django_filters.ChoiceFilter(choices=IncidentType.choices)
    assignee = django_filters.CharFilter(method="filter_assignee", help_text='A user id, or "me".')
    serious = django_filters.BooleanFilter(help_text="Marked serious (EU AI Act Art. 73).")
    sla_breached = django_filters.BooleanFilter(
        field_name="sla_breached", help_text="Missed the acknowledge or the resolve target."
    )
    opened_before = django_filters.IsoDateTimeFilter(
        field_name="opened_at", lookup_expr="lt", help_text="Opened before this time (ISO 8601)."
    )
    opened_after = django_filters.IsoDateTimeFilter(
        field_name="opened_at", lookup_expr="gte", help_text="Opened at or after this time (ISO 8601)."
    )

    class Meta:
        model = Incident
        fields = [
            "status",
            "open",
            "severity",
            "system",
            "team",
            "incident_type",
            "assignee",
            "serious",
            "sla_breached",
            "opened_before",
            "opened_after",
        ]

    def filter_open(self, queryset, name, value):
        if value:
            return queryset.filter(status__in=OPEN_INCIDENT_STATUSES)
        return queryset.exclude(status__in=OPEN_INCIDENT_STATUSES)

    def filter_system(self, queryset, name, value):
        return queryset.filter(system_ref_filter(value))

    def filter_assignee(self, queryset, name, value):
        if value == ASSIGNEE_ME:
            return queryset.filter(assignee=self.request.user)
        if not is_uuid(value):
            raise ValidationError({"assignee": [f'must be a user id or "{ASSIGNEE_ME}"']})
        return queryset.filter(assignee_id=value)


_NOT_FOUND = {404: OpenApiResponse(ErrorEnvelopeSerializer, description="No such incident in your teams.")}
_FORBIDDEN = {403: OpenApiResponse(ErrorEnvelopeSerializer, description="Your role may not act on incidents.")}
_INVALID = {400: OpenApiResponse(ErrorEnvelopeSerializer, description="Invalid input; the fields are named.")}
_TRANSITION_ERRORS = {
    **_INVALID,
    **_FORBIDDEN,
    **_NOT_FOUND,
    409: OpenApiResponse(ErrorEnvelopeSerializer, description="Not allowed from its current status; nothing changed."),
}


def _transition_schema(summary: str, request: Any) -> Any:
    """The schema every lifecycle transition shares: the incident's detail, or a 400/403/404/409."""
    responses = {200: s.IncidentDetailSerializer, **_TRANSITION_ERRORS}
    return extend_schema(summary=summary, request=request, responses=responses)


@extend_schema_view(
    list=extend_schema(summary="Incidents of your teams (newest first by default)"),
    retrieve=extend_schema(
        summary="One incident with its RCA, timeline, follow-ups and regulatory countdown",
        responses={200: s.IncidentDetailSerializer, **_NOT_FOUND},
    ),
)
class IncidentViewSet(UUIDLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every human role reads the incidents of their teams; reviewers, security, governance leads and
    admins act on them. Status changes only through ``incidents.services.lifecycle`` (guarded
    transitions with a timeline and an audit entry each)."""

    object_name = "incident"
    serializer_class = s.IncidentSerializer
    filterset_class = IncidentFilter
    # Not nullable in practice: every incident gets its acknowledge target when it opens.
    ordering_fields = ["opened_at", "sla_due_at"]
    ordering = ["-opened_at"]
    action_roles = {
        **dict.fromkeys(
            (
                "acknowledge",
                "mitigate",
                "resolve",
                "close",
                "reopen",
                "assign",
                "notes",
                "rca",
                "bulk_resolve",
                "follow_up_create",
            ),
            RESPONDER_ROLES,
        ),
        **dict.fromkeys(("serious", "reported"), REGULATORY_ROLES),
    }

    def get_queryset(self):
        return selectors.with_sla_breached(selectors.incidents_for_user(user=self.request.user), now=timezone.now())

    def get_serializer_class(self):
        return s.IncidentSerializer if self.action == "list" else s.IncidentDetailSerializer

    def handle_exception(self, exc):
        # Errors keep the JSON envelope even when the printable report page was asked for.
        if isinstance(getattr(self.request, "accepted_renderer", None), StaticHTMLRenderer):
            self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return super().handle_exception(exc)

    def detail_response(self) -> Response:
        """The incident as ``GET /incidents/{id}`` shows it now (after a change)."""
        return Response(s.IncidentDetailSerializer(self.get_object()).data)

    def _body(self, serializer_class) -> dict[str, Any]:
        body = serializer_class(data=self.request.data)
        body.is_valid(raise_exception=True)
        return body.validated_data

    # --- lifecycle ----------------------------------------------------------------------------------
    @_transition_schema("Acknowledge an open incident (you become its assignee if it has none)", s.NoteBodySerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """open → acknowledged. The acknowledge timer stops; escalation now watches the resolve target."""
        incident, data = self.get_object(), self._body(s.NoteBodySerializer)
        with incident_service_errors():
            incident_acknowledge(incident_id=incident.id, actor=request.user, note=data.get("note", ""))
        return self.detail_response()

    @_transition_schema("Mark an incident mitigated (impact contained, cause not fixed yet)", s.NoteBodySerializer)
    @action(detail=True, methods=["post"])
    def mitigate(self, request, pk=None):
        """open/acknowledged → mitigated; the resolve timer runs on."""
        incident, data = self.get_object(), self._body(s.NoteBodySerializer)
        with incident_service_errors():
            incident_mitigate(incident_id=incident.id, actor=request.user, note=data.get("note", ""))
        return self.detail_response()

    @_transition_schema("Resolve an incident", s.ResolveSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        """open/acknowledged/mitigated → resolved; escalation stops. ``resolution_reason`` must be one of
        ``incidents.resolution_reasons``; ``follow_up_date`` schedules a follow-up review."""
        incident, data = self.get_object(), self._body(s.ResolveSerializer)
        with incident_service_errors():
            incident_resolve(
                incident_id=incident.id,
                actor=request.user,
                resolution_reason=data.get("resolution_reason", ""),
                note=data.get("note", ""),
                follow_up_date=data.get("follow_up_date"),
            )
        return self.detail_response()

    @_transition_schema("Close an incident (high/critical: only with a complete RCA)", s.CloseSerializer)
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        """Any open status or resolved → closed. A high or critical incident whose RCA lacks a required
        field answers 400 naming each as ``rca.<field>``."""
        incident, data = self.get_object(), self._body(s.CloseSerializer)
        with incident_service_errors():
            incident_close(incident_id=incident.id, actor=request.user, reason=data.get("reason", ""))
        return self.detail_response()

    @_transition_schema("Reopen a resolved or closed incident (the timeline is kept)", s.ReopenSerializer)
    @action(detail=True, methods=["post"])
    def reopen(self, request, pk=None):
        """resolved/closed → open with fresh acknowledge and resolve targets. 409 when another incident
        of the same fingerprint is open meanwhile."""
        incident, data = self.get_object(), self._body(s.ReopenSerializer)
        with incident_service_errors():
            incident_reopen(incident_id=incident.id, actor=request.user, reason=data["reason"])
        return self.detail_response()

    @extend_schema(
        summary="Assign (or unassign) an incident",
        request=s.IncidentAssignSerializer,
        responses={200: s.IncidentDetailSerializer, **_INVALID, **_FORBIDDEN, **_NOT_FOUND},
    )
    @action(detail=True, methods=["post"])
    def assign(self, request, pk=None):
        """Give the incident to a member of its team (``assignee: null`` unassigns); timeline and audit
        ``incident.assigned``."""
        incident, data = self.get_object(), self._body(s.IncidentAssignSerializer)
        assignee = None
        if (assignee_id := data["assignee"]) is not None:
            assignee = User.objects.filter(pk=assignee_id, is_active=True).first()
            if assignee is None:
                raise ValidationError({"assignee": [f"no active user {assignee_id}"]})
        with incident_service_errors():
            incident_assign(incident_id=incident.id, assignee=assignee, actor=request.user)
        return self.detail_response()

    @extend_schema(
        summary="Add a note to the timeline",
        request=s.IncidentNoteSerializer,
        responses={201: s.TimelineEntrySerializer, **_INVALID, **_FORBIDDEN, **_NOT_FOUND},
    )
    @action(detail=True, methods=["post"])
    def notes(self, request, pk=None):
        """A note counts as activity: a noted incident is not stale (auto-close waits)."""
        incident, data = self.get_object(), self._body(s.IncidentNoteSerializer)
        with incident_service_errors():
            entry = incident_note(incident_id=incident.id, actor=request.user, message=data["message"])
        return Response(s.TimelineEntrySerializer(entry).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Write RCA fields (field name → text; an empty text clears the field)",
        request={"application/json": s.RCA_VALUES_SCHEMA},
        responses={200: s.IncidentDetailSerializer, **_INVALID, **_FORBIDDEN, **_NOT_FOUND},
    )
    @action(detail=True, methods=["put", "patch"])
    def rca(self, request, pk=None):
        """Merges the given fields into the RCA (PUT and PATCH alike: fields not sent are kept). Any
        field name is accepted (letters, digits, underscores); ``rca_completed_at`` is set once every
        required field is filled. Timeline and audit ``incident.rca_updated``."""
        incident = self.get_object()
        if not isinstance(request.data, dict):
            raise ValidationError({"rca": ['an object of field name → text, e.g. {"root_cause": "…"}']})
        with incident_service_errors():
            incident_rca_update(incident_id=incident.id, values=dict(request.data), actor=request.user)
        return self.detail_response()

    # --- many at once -------------------------------------------------------------------------------
    @extend_schema(
        summary="Resolve up to 1,000 open incidents at once (all or nothing)",
        request=s.BulkResolveSerializer,
        responses={
            200: s.BulkResolveResultSerializer,
            **_INVALID,
            **_FORBIDDEN,
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="An incident changed meanwhile; retry."),
            413: OpenApiResponse(ErrorEnvelopeSerializer, description="More than 1,000 ids."),
        },
    )
    @action(detail=False, methods=["post"], url_path="bulk-resolve")
    def bulk_resolve(self, request):
        """One configured resolution reason for the listed ids (or the open incidents a filter matches),
        each with its own timeline and audit entry; the RCA template of its type is linked if missing.
        With ``close`` every one is closed too — a high/critical one without its complete RCA fails the
        whole request, naming it. Any problem → 400 naming it (``ids.<index>``), nothing changed."""
        data = self._body(s.BulkResolveSerializer)
        try:
            outcome = incidents_bulk_resolve(
                user=request.user,
                ids=data.get("ids"),
                filters=data.get("filter"),
                resolution_reason=data["resolution_reason"],
                note=data.get("note", ""),
                close=data["close"],
            )
        except BulkResolveError as exc:
            if exc.too_many:
                too_large = PayloadTooLarge(detail=str(exc))
                too_large.fields = exc.fields
                raise too_large from exc
            raise ValidationError(exc.fields) from exc
        except IncidentTransitionError as exc:
            raise Conflict(f"{exc}; nothing was changed, reload and retry.") from exc
        result = {"resolved": outcome.resolved, "closed": outcome.closed, "ids": outcome.ids}
        return Response(s.BulkResolveResultSerializer(result).data)

    @extend_schema(
        summary="Incident metrics of your teams (MTTA/MTTR over 30 days)", responses=s.IncidentMetricsSerializer
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def metrics(self, request):
        """Open incidents by severity, MTTA and MTTR per severity (p50, p95, count) of incidents
        acknowledged / resolved in the last 30 days, open incidents past an SLA target, open serious
        incidents."""
        figures = selectors.incident_metrics(
            queryset=selectors.incidents_for_user(user=request.user), now=timezone.now()
        )
        return Response(s.IncidentMetricsSerializer(figures).data)

    # --- knowledge graph ------------------------------------------------------------------------------
    @extend_schema(
        summary="The incident's knowledge graph: alerts, system, similar incidents, policies, audit entries",
        parameters=[s.GraphQuerySerializer],
        responses={200: s.GraphSerializer, **_INVALID, **_NOT_FOUND},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def graph(self, request, pk=None):
        """Nodes (the incident first) and edges; ``depth=2`` follows incident-to-incident links one more
        hop. Incidents of other teams are left out, with their edges."""
        incident = self.get_object()
        query = s.GraphQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        graph = incident_graph(incident=incident, user=request.user, depth=int(query.validated_data["depth"]))
        return Response(s.GraphSerializer(graph).data)

    # --- EU AI Act Art. 73 ----------------------------------------------------------------------------
    @extend_schema(
        summary="Mark a serious incident (high-risk systems): starts the Art. 73 reporting deadline",
        request=s.MarkSeriousSerializer,
        responses={
            200: s.IncidentDetailSerializer,
            **_INVALID,
            403: OpenApiResponse(ErrorEnvelopeSerializer, description="Admins, governance leads and security only."),
            **_NOT_FOUND,
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="Not allowed in its current state."),
        },
    )
    @action(detail=True, methods=["post"])
    def serious(self, request, pk=None):
        """Deadline = ``aware_at`` (default now) + the days of ``incidents.regulatory`` for the basis
        (standard 15, widespread 2, death 10). Changing the basis recomputes it. Only an incident on a
        high-risk AI system can be serious (else 400 naming ``serious``)."""
        incident, data = self.get_object(), self._body(s.MarkSeriousSerializer)
        with incident_service_errors():
            incident_mark_serious(
                incident_id=incident.id,
                basis=data["basis"],
                actor=request.user,
                aware_at=data.get("aware_at"),
                note=data.get("note", ""),
            )
        return self.detail_response()

    @extend_schema(
        summary="Record that the serious incident was reported to the authority",
        request=s.MarkReportedSerializer,
        responses={
            200: s.IncidentDetailSerializer,
            **_INVALID,
            403: OpenApiResponse(ErrorEnvelopeSerializer, description="Admins, governance leads and security only."),
            **_NOT_FOUND,
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="Not allowed in its current state."),
        },
    )
    @action(detail=True, methods=["post"])
    def reported(self, request, pk=None):
        """Stores the authority's reference and when it was reported (default now); the countdown
        stops. Audited ``incident.reported``."""
        incident, data = self.get_object(), self._body(s.MarkReportedSerializer)
        with incident_service_errors():
            incident_mark_reported(
                incident_id=incident.id,
                actor=request.user,
                reference=data["reference"],
                reported_at=data.get("reported_at"),
            )
        return self.detail_response()

    @extend_schema(
        summary="The incident report (Art. 73 fields) as JSON, or as a printable HTML page",
        parameters=[s.ReportQuerySerializer],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/html"): OpenApiTypes.STR,
            (404, "application/json"): _NOT_FOUND[404],
        },
    )
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[JSONRenderer, StaticHTMLRenderer],
        filter_backends=[],
        pagination_class=None,
    )
    def report(self, request, pk=None):
        """``?format=html`` (or ``Accept: text/html``) answers the self-contained page people print or
        save as PDF; errors are JSON either way."""
        report = incident_report(incident=self.get_object())
        if request.accepted_renderer.format == "html":
            return Response(incident_report_html(report), content_type="text/html; charset=utf-8")
        return Response(report)

    # --- follow-ups -----------------------------------------------------------------------------------
    @extend_schema(
        summary="Follow-ups of an incident (by due date)",
        responses={200: s.FollowUpSerializer(many=True), **_NOT_FOUND},
    )
    @action(detail=True, methods=["get"], url_path="follow-ups", filter_backends=[], pagination_class=None)
    def follow_ups(self, request, pk=None):
        incident = self.get_object()
        rows = incident.follow_ups.select_related("owner").order_by("due_date", "created_at")
        return Response(s.FollowUpSerializer(rows, many=True).data)

    @extend_schema(
        summary="Schedule a follow-up (work promised when the incident was resolved)",
        request=s.FollowUpCreateSerializer,
        responses={201: s.FollowUpSerializer, **_INVALID, **_FORBIDDEN, **_NOT_FOUND},
    )
    @follow_ups.mapping.post
    def follow_up_create(self, request, pk=None):
        """Due by ``due_date`` (default: ``incidents.follow_ups.default_days`` from today); its owner is
        notified when due and the team's leads when overdue. Timeline and audit ``follow_up.created``.
        An incident with an open follow-up is never auto-closed."""
        incident, data = self.get_object(), self._body(s.FollowUpCreateSerializer)
        owner = None
        if (owner_id := data.get("owner")) is not None:
            owner = User.objects.filter(pk=owner_id, is_active=True).first()
            if owner is None:
                raise ValidationError({"owner": [f"no active user {owner_id}"]})
        with incident_service_errors():
            follow_up = follow_up_create(
                incident_id=incident.id,
                title=data["title"],
                owner=owner,
                due_date=data.get("due_date"),
                actor=request.user,
            )
        return Response(s.FollowUpSerializer(follow_up).data, status=status.HTTP_201_CREATED)
