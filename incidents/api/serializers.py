"""Shapes of the incidents API. Serializers check types only; the services validate the rest."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.api.fields import IdListField
from governance.choices import Severity
from incidents.models import (
    FollowUp,
    FollowUpStatus,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentStatus,
    IncidentType,
    RCATemplate,
    RegulatoryBasis,
)
from incidents.services import rca
from incidents.services.bulk import MAX_BULK_INCIDENTS
from incidents.services.lifecycle import NOTE_MAX_LENGTH
from incidents.services.regulatory import REFERENCE_MAX_LENGTH, regulatory_countdown


def _note_field(**kwargs) -> serializers.CharField:
    # The lifecycle service trims and bounds notes; blank is allowed (a default message is written).
    return serializers.CharField(required=False, allow_blank=True, max_length=NOTE_MAX_LENGTH, **kwargs)


# --- incidents ---------------------------------------------------------------------------------------
class IncidentSerializer(serializers.ModelSerializer):
    system_name = serializers.CharField(source="system.name", read_only=True, allow_null=True, default=None)
    status = serializers.ChoiceField(choices=IncidentStatus.choices, read_only=True)
    sla_breached = serializers.BooleanField(
        read_only=True,
        help_text="Unacknowledged past sla_due_at (or acknowledged after it), or unresolved past resolve_due_at "
        "(or resolved after it).",
    )

    class Meta:
        model = Incident
        fields = [
            "id",
            "title",
            "system",
            "system_name",
            "team",
            "severity",
            "status",
            "incident_type",
            "fingerprint",
            "opened_at",
            "acknowledged_at",
            "mitigated_at",
            "resolved_at",
            "closed_at",
            "sla_due_at",
            "resolve_due_at",
            "sla_breached",
            "escalation_level",
            "next_escalation_at",
            "assignee",
            "rca_template",
            "rca_completed_at",
            "follow_up_date",
            "resolution_reason",
            "serious",
            "regulatory_basis",
            "regulatory_deadline_at",
            "regulatory_reported_at",
            "source_alert",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "sla_due_at": {"help_text": "Acknowledge target (slo.incident_ack_minutes)."},
            "resolve_due_at": {"help_text": "Resolve target (slo.incident_resolve_minutes)."},
            "assignee": {"help_text": "A user id."},
        }


class TimelineEntrySerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=IncidentEventKind.choices, read_only=True)

    class Meta:
        model = IncidentEvent
        fields = ["kind", "at", "actor", "message", "data"]
        read_only_fields = fields


class FollowUpSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=FollowUpStatus.choices, read_only=True)
    owner_username = serializers.CharField(source="owner.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = FollowUp
        fields = [
            "id",
            "incident",
            "title",
            "owner",
            "owner_username",
            "due_date",
            "status",
            "completed_at",
            "notified_at",
            "escalated_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RegulatoryCountdownSerializer(serializers.Serializer):
    deadline_at = serializers.DateTimeField()
    basis = serializers.ChoiceField(choices=RegulatoryBasis.choices)
    basis_label = serializers.CharField()
    remaining_seconds = serializers.IntegerField(
        help_text="To the deadline from now (from the filing once reported); negative once past."
    )
    overdue = serializers.BooleanField()
    reported = serializers.BooleanField()
    reported_at = serializers.DateTimeField(allow_null=True)


class IncidentDetailSerializer(IncidentSerializer):
    rca = serializers.DictField(child=serializers.CharField(), read_only=True, help_text="RCA text per field.")
    rca_required_fields = serializers.SerializerMethodField(
        help_text="Fields of the RCA template a high or critical incident must fill before it closes."
    )
    rca_missing_fields = serializers.SerializerMethodField(help_text="Required fields still empty.")
    timeline = serializers.SerializerMethodField(help_text="Every step, oldest first; reopening keeps it.")
    follow_ups = serializers.SerializerMethodField()
    regulatory_countdown = serializers.SerializerMethodField(
        help_text="EU AI Act Art. 73 reporting deadline of a serious incident; null otherwise."
    )

    class Meta(IncidentSerializer.Meta):
        fields = [
            *IncidentSerializer.Meta.fields,
            "description",
            "rca",
            "rca_required_fields",
            "rca_missing_fields",
            "timeline",
            "follow_ups",
            "regulatory_countdown",
        ]
        read_only_fields = fields

    def get_rca_required_fields(self, incident: Incident) -> list[str]:
        return rca.required_fields(incident)

    def get_rca_missing_fields(self, incident: Incident) -> list[str]:
        return rca.missing_fields(incident)

    @extend_schema_field(TimelineEntrySerializer(many=True))
    def get_timeline(self, incident: Incident) -> list[dict[str, Any]]:
        return TimelineEntrySerializer(incident.timeline.order_by("at", "created_at"), many=True).data

    @extend_schema_field(FollowUpSerializer(many=True))
    def get_follow_ups(self, incident: Incident) -> list[dict[str, Any]]:
        return FollowUpSerializer(incident.follow_ups.select_related("owner").order_by("due_date"), many=True).data

    @extend_schema_field(RegulatoryCountdownSerializer(allow_null=True))
    def get_regulatory_countdown(self, incident: Incident) -> dict[str, Any] | None:
        return regulatory_countdown(incident)


# --- transitions -------------------------------------------------------------------------------------
class NoteBodySerializer(serializers.Serializer):
    note = _note_field(help_text="Optional; written on the timeline.")


class ResolveSerializer(serializers.Serializer):
    resolution_reason = serializers.CharField(
        required=False, allow_blank=True, help_text="One of the configured incidents.resolution_reasons."
    )
    note = _note_field(help_text="Optional; written on the timeline.")
    follow_up_date = serializers.DateField(
        required=False, allow_null=True, help_text="When to review the incident again (today or later)."
    )


class CloseSerializer(serializers.Serializer):
    reason = _note_field(help_text="Optional; recorded as the resolution reason if there is none yet.")


class ReopenSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=NOTE_MAX_LENGTH, help_text="Why it is reopened; required.")


class IncidentAssignSerializer(serializers.Serializer):
    assignee = serializers.UUIDField(allow_null=True, help_text="A user id of the incident's team; null unassigns.")


class IncidentNoteSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=NOTE_MAX_LENGTH)


# --- bulk resolution ---------------------------------------------------------------------------------
class BulkResolveSerializer(serializers.Serializer):
    """Shape only: ``incidents_bulk_resolve`` checks the combination (ids xor filter) and every
    incident, naming each problem."""

    ids = IdListField(
        required=False,
        max_length=MAX_BULK_INCIDENTS,
        help_text=f"Open incident ids of your teams (at most {MAX_BULK_INCIDENTS:,}; more answers 413).",
    )
    filter = serializers.DictField(
        required=False,
        help_text=(
            "Instead of ids: open incidents matching every key — severity, status, system (id or name), "
            f"older_than_hours, opened_before, incident_type. At most {MAX_BULK_INCIDENTS:,} may match."
        ),
    )
    resolution_reason = serializers.CharField(help_text="One of the configured incidents.resolution_reasons.")
    note = _note_field(help_text="Optional; written on every timeline.")
    close = serializers.BooleanField(
        default=False, help_text="Also close them (high/critical ones need a complete RCA)."
    )


class BulkResolveResultSerializer(serializers.Serializer):
    resolved = serializers.IntegerField()
    closed = serializers.IntegerField()
    ids = serializers.ListField(child=serializers.UUIDField())


# --- knowledge graph ---------------------------------------------------------------------------------
class GraphQuerySerializer(serializers.Serializer):
    depth = serializers.ChoiceField(
        choices=[(1, "1"), (2, "2")], default=1, help_text="2 follows incident-to-incident links one more hop."
    )


class GraphNodeSerializer(serializers.Serializer):
    id = serializers.CharField(help_text='"<type>:<id>", e.g. "system:…".')
    type = serializers.CharField(help_text="incident, system, alert, policy, audit or review.")
    label = serializers.CharField()
    data = serializers.DictField()


class GraphEdgeSerializer(serializers.Serializer):
    source = serializers.CharField()
    target = serializers.CharField()
    relation = serializers.CharField()


class GraphSerializer(serializers.Serializer):
    nodes = GraphNodeSerializer(many=True, help_text="The incident itself first.")
    edges = GraphEdgeSerializer(many=True)


# --- regulatory (EU AI Act Art. 73) --------------------------------------------------------------------
class MarkSeriousSerializer(serializers.Serializer):
    basis = serializers.ChoiceField(choices=RegulatoryBasis.choices)
    aware_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When the provider became aware (not in the future); default now."
    )
    note = _note_field(help_text="Optional; written on the timeline.")


class MarkReportedSerializer(serializers.Serializer):
    reference = serializers.CharField(max_length=REFERENCE_MAX_LENGTH, help_text="The authority's reference.")
    reported_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Default now.")


class ReportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=[("json", "JSON"), ("html", "Printable HTML")],
        required=False,
        help_text="html: the printable page (also chosen by Accept: text/html).",
    )


# --- follow-ups --------------------------------------------------------------------------------------
class FollowUpCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=FollowUp._meta.get_field("title").max_length)
    owner = serializers.UUIDField(required=False, allow_null=True, help_text="A user id; default: nobody.")
    due_date = serializers.DateField(
        required=False,
        allow_null=True,
        help_text="Today or later; default: today + incidents.follow_ups.default_days.",
    )


# --- RCA ---------------------------------------------------------------------------------------------
# The body of ``PUT/PATCH /incidents/{id}/rca``: any field names, so a raw schema rather than a serializer.
RCA_VALUES_SCHEMA = {
    "type": "object",
    "description": (
        "RCA field name → text (an empty text clears the field). Names are letters, digits and underscores; "
        "see the incident's rca_required_fields."
    ),
    "additionalProperties": {"type": "string"},
    "example": {"root_cause": "The upstream feed dropped a column.", "impact": "Scores were stale for 2 h."},
}


class RCATemplateSerializer(serializers.ModelSerializer):
    incident_type = serializers.ChoiceField(choices=IncidentType.choices, read_only=True)
    required_fields = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = RCATemplate
        fields = ["id", "incident_type", "name", "template_content", "required_fields", "created_at", "updated_at"]
        read_only_fields = fields


class RCATemplateUpdateSerializer(serializers.Serializer):
    """Types only; ``incidents.services.templates.rca_template_update`` validates the values."""

    name = serializers.CharField(required=False)
    template_content = serializers.CharField(required=False, trim_whitespace=False)
    required_fields = serializers.ListField(
        child=serializers.CharField(), required=False, help_text='Field names, e.g. ["root_cause", "impact"].'
    )


# --- metrics -----------------------------------------------------------------------------------------
class LatencySerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    count = serializers.IntegerField()


class IncidentMetricsSerializer(serializers.Serializer):
    open_by_severity = serializers.DictField(
        child=serializers.IntegerField(), help_text=f"Open incidents per severity ({', '.join(Severity.values)})."
    )
    mtta_seconds = serializers.DictField(
        child=LatencySerializer(),
        help_text='{"<severity>"|"all": {p50, p95, count}} of incidents acknowledged in the window.',
    )
    mttr_seconds = serializers.DictField(
        child=LatencySerializer(),
        help_text='{"<severity>"|"all": {p50, p95, count}} of incidents resolved in the window.',
    )
    breached_sla = serializers.IntegerField(help_text="Open incidents that missed their acknowledge or resolve target.")
    serious_open = serializers.IntegerField(help_text="Open incidents marked serious (EU AI Act Art. 73).")
    window_days = serializers.IntegerField(help_text="The MTTA/MTTR window (days up to as_of).")
    as_of = serializers.DateTimeField()
