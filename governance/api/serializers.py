"""Serializers of the governance core. They validate and shape data; writes go through services."""

from __future__ import annotations

from rest_framework import serializers

from governance.choices import HUMAN_ROLES
from governance.models import (
    AISystem,
    AuditLog,
    Capability,
    ControlAssessment,
    EvaluationRun,
    Team,
    User,
)
from governance.selectors import scope_to_teams


class ScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related-object field that only accepts objects within the caller's teams."""

    def get_queryset(self):
        request = self.context.get("request")
        queryset = super().get_queryset()
        if request is None:
            return queryset.none()
        return scope_to_teams(queryset, request.user)


class TeamSerializer(serializers.ModelSerializer):
    slug = serializers.SlugField(required=False, max_length=120)

    class Meta:
        model = Team
        fields = ["id", "name", "slug", "description", "email", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class AISystemSerializer(serializers.ModelSerializer):
    team = ScopedPrimaryKeyRelatedField(queryset=Team.objects.all())
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AISystem
        fields = [
            "id",
            "name",
            "entity_type",
            "team",
            "risk_class",
            "owner",
            "description",
            "metadata",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "owner", "created_at", "updated_at"]

    def validate_metadata(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class AISystemUpdateSerializer(AISystemSerializer):
    class Meta(AISystemSerializer.Meta):
        read_only_fields = ["id", "name", "owner", "created_at", "updated_at"]


class CapabilitySerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()
    evidence = serializers.SerializerMethodField()

    class Meta:
        model = Capability
        fields = ["id", "number", "code", "name", "description", "enforced_by", "regulatory_refs", "status", "evidence"]
        # Read-only also keeps the schema independent of the database: a writable ``number`` would carry
        # the backend's integer range (32767 on PostgreSQL, 2**63-1 on SQLite).
        read_only_fields = fields

    def _status(self, obj):
        return self.context["statuses"][obj.code]

    def get_status(self, obj) -> str:
        return self._status(obj).status

    def get_evidence(self, obj) -> str:
        return self._status(obj).evidence


class ControlAssessmentSerializer(serializers.ModelSerializer):
    system = ScopedPrimaryKeyRelatedField(queryset=AISystem.objects.all())
    assessor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ControlAssessment
        fields = [
            "id",
            "system",
            "control",
            "framework",
            "reference",
            "status",
            "assessed_at",
            "assessor",
            "next_review_due",
            "notes",
            "evidence",
            "created_at",
        ]
        read_only_fields = ["id", "assessor", "created_at"]


class EvaluationRunSerializer(serializers.ModelSerializer):
    system = ScopedPrimaryKeyRelatedField(queryset=AISystem.objects.all())
    passed = serializers.BooleanField(required=False, allow_null=True, default=None)
    higher_is_better = serializers.BooleanField(write_only=True, default=True)

    class Meta:
        model = EvaluationRun
        fields = [
            "id",
            "system",
            "suite",
            "metric",
            "value",
            "threshold",
            "higher_is_better",
            "passed",
            "ran_at",
            "details",
            "triggered_by",
            "provenance",
            "created_at",
        ]
        # provenance: only the gateway's own suite run records ``gateway``; a posted result is ``reported``.
        read_only_fields = ["id", "triggered_by", "provenance", "created_at"]

    def validate_value(self, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise serializers.ValidationError("Must be a finite number.")
        return value

    def validate(self, attrs):
        if attrs.get("passed") is None and attrs.get("threshold") is None:
            raise serializers.ValidationError({"threshold": ["Give a threshold, or an explicit passed verdict."]})
        return attrs


class UserSerializer(serializers.ModelSerializer):
    password = serializers.CharField(write_only=True, style={"input_type": "password"}, trim_whitespace=False)
    roles = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(HUMAN_ROLES)),
        source="role_list",
        allow_empty=False,
        help_text="Role names (groups). Service-account roles are given by create_service_account.",
    )
    teams = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all(), many=True, required=False)

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "password",
            "roles",
            "teams",
            "is_service_account",
            "is_active",
            "date_joined",
        ]
        read_only_fields = ["id", "is_service_account", "is_active", "date_joined"]


class AuditLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditLog
        fields = [
            "id",
            "seq",
            "at",
            "actor",
            "actor_type",
            "action",
            "object_type",
            "object_id",
            "data",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class AuditVerificationSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked_rows = serializers.IntegerField()
    head_seq = serializers.IntegerField(allow_null=True)
    head_hash = serializers.CharField()
    broken_seq = serializers.IntegerField(allow_null=True)
    broken_id = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
