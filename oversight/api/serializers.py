"""Serializers of the event pipeline API. Read shapes only: event bodies are checked by
``oversight.validation`` (one fast pass over thousands of items); the request serializers here
describe those bodies in the OpenAPI document."""

from __future__ import annotations

from rest_framework import serializers

from governance.choices import Severity
from oversight.models import Alert, Category, EventRaw
from oversight.validation import MAX_ATTRIBUTES_BYTES, MAX_EVENTS_PER_BATCH, MAX_SCENARIO_ID_LENGTH, SIGNAL_PATTERN


class EventSerializer(serializers.ModelSerializer):
    system_name = serializers.CharField(read_only=True)
    batch_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = EventRaw
        fields = [
            "event_id",
            "system",
            "system_name",
            "category",
            "severity",
            "signal",
            "value",
            "occurred_at",
            "received_at",
            "batch_id",
            "attributes",
            "scenario_id",
            "processed_at",
        ]
        read_only_fields = fields


class EventInSerializer(serializers.Serializer):
    """One event as a client sends it (documentation of what ``oversight.validation`` accepts)."""

    event_id = serializers.UUIDField(
        required=False, help_text="Idempotency key: a resent event_id is counted as a duplicate. Generated if absent."
    )
    system = serializers.CharField(help_text="The AI system's id or its unique name.")
    category = serializers.ChoiceField(choices=Category.choices)
    severity = serializers.ChoiceField(choices=Severity.choices)
    signal = serializers.RegexField(SIGNAL_PATTERN, max_length=64, help_text='e.g. "psi", "accuracy", "dp_gap".')
    value = serializers.FloatField(help_text="A finite JSON number (no NaN or Infinity, no strings).")
    occurred_at = serializers.DateTimeField(
        help_text="ISO 8601 with a timezone offset or Z; at most 5 minutes in the future."
    )
    attributes = serializers.DictField(required=False, help_text=f"At most {MAX_ATTRIBUTES_BYTES} bytes as JSON.")
    scenario_id = serializers.CharField(required=False, allow_null=True, max_length=MAX_SCENARIO_ID_LENGTH)


class EventBatchInSerializer(serializers.Serializer):
    events = EventInSerializer(many=True, help_text=f"1 to {MAX_EVENTS_PER_BATCH} events.")


class IngestResultSerializer(serializers.Serializer):
    batch_id = serializers.UUIDField()
    accepted = serializers.IntegerField(help_text="New events stored.")
    duplicates = serializers.IntegerField(help_text="Events whose event_id was already stored (not stored again).")


class _ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Messages by field path, e.g. {"events.3.severity": ["..."]}.',
    )


class ErrorEnvelopeSerializer(serializers.Serializer):
    error = _ErrorDetailSerializer()


class AlertSerializer(serializers.ModelSerializer):
    rule = serializers.CharField(source="rule_name", read_only=True)
    rule_kind = serializers.CharField(read_only=True)
    system_name = serializers.CharField(read_only=True)
    incident_id = serializers.UUIDField(read_only=True, allow_null=True)
    review_id = serializers.UUIDField(read_only=True, allow_null=True)
    mttd_seconds = serializers.SerializerMethodField(help_text="detected_at − first_event_at; null until firing.")

    class Meta:
        model = Alert
        fields = [
            "id",
            "fingerprint",
            "rule",
            "rule_kind",
            "system",
            "system_name",
            "status",
            "severity",
            "category",
            "signal",
            "first_event_at",
            "detected_at",
            "last_seen_at",
            "resolved_at",
            "count",
            "labels",
            "annotations",
            "evidence_event_ids",
            "incident_id",
            "review_id",
            "mttd_seconds",
        ]
        read_only_fields = fields

    def get_mttd_seconds(self, alert: Alert) -> float | None:
        if alert.detected_at is None:
            return None
        return (alert.detected_at - alert.first_event_at).total_seconds()
