"""Serializers of the review-queue API. They check the shape of requests and render rows; every rule
(who may decide what, which items a bulk request may touch, policy limits) lives in ``hitl.services``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.api.fields import IdListField
from governance.api.serializers import ScopedPrimaryKeyRelatedField
from governance.choices import Severity
from governance.models import Team
from hitl.models import (
    REQUESTABLE_REVIEW_TYPES,
    AssistModel,
    AssistResult,
    AutoApprovalPolicy,
    Decision,
    DecisionSource,
    ReviewDecision,
    ReviewItem,
    ReviewStatus,
    ReviewType,
    SpotCheck,
)
from hitl.services.decisions import RATIONALE_MAX_LENGTH, clean_rationale
from hitl.services.requests import DESCRIPTION_MAX_LENGTH
from hitl.services.triage import MAX_BULK_ITEMS

MAX_ASSIST_ITEMS = 1000


def _rationale_field(**kwargs) -> serializers.CharField:
    return serializers.CharField(
        max_length=RATIONALE_MAX_LENGTH,
        allow_blank=True,
        trim_whitespace=False,  # clean_rationale trims; a blank one is refused there with one message
        **kwargs,
    )


def _named_values(choices: type, **kwargs) -> serializers.ChoiceField:
    """A read-only choice; its enum is named once in ``SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]``."""
    return serializers.ChoiceField(choices=choices.choices, read_only=True, **kwargs)


# --- review items ------------------------------------------------------------------------------------
class SuggestionSerializer(serializers.Serializer):
    """The latest auto-assist suggestion, as copied onto the item."""

    suggested_decision = _named_values(ReviewDecision)
    confidence = serializers.FloatField(allow_null=True, help_text="0–1.")
    risk_score = serializers.FloatField(allow_null=True, help_text="0 (no risk) to 100.")
    assisted_at = serializers.DateTimeField(allow_null=True)


class ReviewItemSerializer(serializers.ModelSerializer):
    system_name = serializers.CharField(source="system.name", read_only=True)
    team = serializers.UUIDField(source="system.team_id", read_only=True, help_text="The system's team.")
    sla_breached = serializers.BooleanField(read_only=True, help_text="Pending past sla_due_at, or decided after it.")
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by_policy = serializers.SlugRelatedField(
        slug_field="policy_name", read_only=True, help_text="The auto-approval policy that decided it."
    )
    suggestion = serializers.SerializerMethodField(help_text="Null until auto-assist has looked at the item.")

    class Meta:
        model = ReviewItem
        fields = [
            "id",
            "review_type",
            "title",
            "system",
            "system_name",
            "team",
            "severity",
            "status",
            "sla_due_at",
            "sla_breached",
            "assignee",
            "requested_by",
            "decision",
            "decided_by",
            "decided_by_policy",
            "decided_at",
            "rationale",
            "decision_source",
            "source_alert",
            "source_incident",
            "escalated_incident",
            "context",
            "suggestion",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(SuggestionSerializer(allow_null=True))
    def get_suggestion(self, item: ReviewItem) -> dict[str, Any] | None:
        if not item.suggested_decision:
            return None
        return SuggestionSerializer(
            {
                "suggested_decision": item.suggested_decision,
                "confidence": item.assist_confidence,
                "risk_score": item.risk_score,
                "assisted_at": item.assisted_at,
            }
        ).data


class AssistResultSerializer(serializers.ModelSerializer):
    suggested_decision = _named_values(ReviewDecision)

    class Meta:
        model = AssistResult
        fields = [
            "summary",
            "suggested_decision",
            "confidence",
            "risk_score",
            "evidence_refs",
            "reasoning",
            "factors",
            "sla_recommendation",
            "provider",
            "model_version",
            "fallback_reason",
            "created_at",
        ]
        read_only_fields = fields


class DecisionSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)
    policy = serializers.SlugRelatedField(slug_field="policy_name", read_only=True)
    source = _named_values(DecisionSource)

    class Meta:
        model = Decision
        fields = [
            "id",
            "decision",
            "source",
            "policy",
            "actor",
            "rationale",
            "shadow",
            "confidence",
            "risk_score",
            "decided_at",
        ]
        read_only_fields = fields


class ReviewItemDetailSerializer(ReviewItemSerializer):
    status = _named_values(ReviewStatus)
    assist = serializers.SerializerMethodField(help_text="The latest auto-assist result; null if never assisted.")
    decisions = serializers.SerializerMethodField(
        help_text="Every decision on the item, newest first (shadow: what a shadow-mode policy would have done)."
    )

    class Meta(ReviewItemSerializer.Meta):
        fields = [*ReviewItemSerializer.Meta.fields, "assist", "decisions"]
        read_only_fields = fields

    @extend_schema_field(AssistResultSerializer(allow_null=True))
    def get_assist(self, item: ReviewItem) -> dict[str, Any] | None:
        latest = item.assist_results.order_by("-created_at").first()
        return AssistResultSerializer(latest).data if latest else None

    @extend_schema_field(DecisionSerializer(many=True))
    def get_decisions(self, item: ReviewItem) -> list[dict[str, Any]]:
        rows = item.decisions.select_related("actor", "policy").order_by("-decided_at", "-created_at")
        return DecisionSerializer(rows, many=True).data


class DecideSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=ReviewDecision.choices)
    rationale = _rationale_field(help_text="Why; required, recorded in the audit log.")

    def validate_rationale(self, value: str) -> str:
        try:
            return clean_rationale(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class ReviewRequestSerializer(serializers.Serializer):
    """Shape only: ``hitl.services.requests.review_item_request`` checks the values (a requestable type, a
    system of your teams, a known severity, a storable context) and names every problem at once."""

    review_type = serializers.CharField(
        help_text=f"One of {', '.join(REQUESTABLE_REVIEW_TYPES)} (alert_triage is queued from alerts only)."
    )
    system = serializers.CharField(max_length=200, help_text="The AI system's id or unique name (of your teams).")
    title = serializers.CharField(max_length=300, help_text="What is to be judged.")
    severity = serializers.CharField(required=False, default=Severity.MEDIUM, help_text="Default medium.")
    description = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=DESCRIPTION_MAX_LENGTH,
        help_text="Why it is needed; kept in the item's context under the key description.",
    )
    context = serializers.DictField(
        required=False, help_text="What the reviewer needs (a JSON object, at most 16 KB serialized)."
    )


class AssignSerializer(serializers.Serializer):
    assignee = serializers.UUIDField(allow_null=True, help_text="A user id of the item's team; null unassigns.")


class BulkDecideSerializer(serializers.Serializer):
    """Shape only: ``review_items_bulk_decide`` checks the combination (ids xor filter, decision unless
    apply_suggestions, rationale) and every item, naming each problem."""

    ids = IdListField(
        required=False,
        max_length=MAX_BULK_ITEMS,
        help_text=f"Pending item ids of your teams (at most {MAX_BULK_ITEMS:,}; more answers 413).",
    )
    filter = serializers.DictField(
        required=False,
        help_text=(
            "Instead of ids: pending items matching every key — severity, review_type, suggestion "
            "(approve|reject|escalate|none), system (id or name), team (id), sla_breached (bool), "
            f"max_risk_score, min_confidence. At most {MAX_BULK_ITEMS:,} may match."
        ),
    )
    decision = serializers.ChoiceField(
        choices=ReviewDecision.choices,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Required unless apply_suggestions.",
    )
    rationale = _rationale_field(required=False, help_text="Why; required.")
    apply_suggestions = serializers.BooleanField(
        default=False,
        help_text="Decide each item as auto-assist suggests (only medium/low/info items above the confidence floor).",
    )


class BulkDecideResultSerializer(serializers.Serializer):
    decided = serializers.IntegerField()
    by_decision = serializers.DictField(child=serializers.IntegerField(), help_text='e.g. {"approve": 12}.')
    ids = serializers.ListField(child=serializers.UUIDField())


class ClearLowRiskSerializer(serializers.Serializer):
    rationale = _rationale_field(required=False, help_text="Optional; a rationale naming the thresholds by default.")


class ClearLowRiskResultSerializer(serializers.Serializer):
    decided = serializers.IntegerField()
    ids = serializers.ListField(child=serializers.UUIDField())


class AssistRunSerializer(serializers.Serializer):
    ids = IdListField(
        required=False,
        max_length=MAX_ASSIST_ITEMS,
        help_text="Items of your teams to assist now (non-pending ones are skipped); default: unassisted pending ones.",
    )
    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ASSIST_ITEMS,
        default=MAX_ASSIST_ITEMS,
        help_text="Without ids: how many unassisted pending items, oldest first.",
    )


class AssistRunResultSerializer(serializers.Serializer):
    assisted = serializers.IntegerField()
    provider = serializers.CharField()
    model_version = serializers.CharField(help_text="Empty when the rules alone suggested.")
    fallbacks = serializers.IntegerField(help_text="Items the configured provider could not answer (default used).")
    auto_decided = serializers.IntegerField(help_text="Items then decided by enabled auto-approval policies.")
    shadow = serializers.IntegerField(help_text="Decisions shadow-mode policies recorded without acting.")
    spot_checks = serializers.IntegerField(help_text="Auto-decided items sampled for a human spot check.")
    ids = serializers.ListField(child=serializers.UUIDField(), help_text="The items assisted.")


class HourlyFlowSerializer(serializers.Serializer):
    hour = serializers.DateTimeField()
    inflow = serializers.IntegerField()
    outflow = serializers.IntegerField()


class BacklogHealthSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    oldest_pending_at = serializers.DateTimeField(allow_null=True)
    oldest_age_seconds = serializers.FloatField(allow_null=True)
    sla_breached = serializers.IntegerField(help_text="Pending items past their SLA.")
    pending_by_severity = serializers.DictField(child=serializers.IntegerField())
    inflow_24h = serializers.IntegerField(help_text="Items queued in the 24 hourly buckets.")
    outflow_24h = serializers.IntegerField(help_text="Items decided in the 24 hourly buckets.")
    net_flow_24h = serializers.IntegerField(help_text="inflow_24h − outflow_24h (positive: the backlog grows).")
    decided_24h_by_source = serializers.DictField(child=serializers.IntegerField())
    hourly = HourlyFlowSerializer(many=True, help_text="The current hour and the 23 before it, oldest first.")
    as_of = serializers.DateTimeField()


# --- auto-approval policies ----------------------------------------------------------------------------
class PolicyAgreementSerializer(serializers.Serializer):
    checked = serializers.IntegerField(help_text="Spot checks with a human verdict in the window.")
    agreed = serializers.IntegerField()
    disagreed = serializers.IntegerField()
    pending = serializers.IntegerField(help_text="Spot checks awaiting a verdict.")
    rate = serializers.FloatField(allow_null=True, help_text="agreed / checked; null before any verdict.")
    judged = serializers.BooleanField(help_text="Enough verdicts for the automation-bias monitor to act on the rate.")


NO_AGREEMENT = {"checked": 0, "agreed": 0, "disagreed": 0, "pending": 0, "rate": None, "judged": False}


class AutoApprovalPolicySerializer(serializers.ModelSerializer):
    auto_action = _named_values(ReviewDecision, help_text="What it decides.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    mode = serializers.ChoiceField(
        choices=[("enabled", "Enabled"), ("disabled", "Disabled"), ("shadow", "Shadow")], read_only=True
    )
    agreement = serializers.SerializerMethodField(help_text="Human spot-check agreement with its decisions.")

    class Meta:
        model = AutoApprovalPolicy
        fields = [
            "id",
            "policy_name",
            "team",
            "severity_filter",
            "review_type_filter",
            "max_risk_score",
            "auto_action",
            "enabled",
            "shadow_mode",
            "requires_audit_log",
            "description",
            "mode",
            "disabled_reason",
            "disabled_at",
            "created_by",
            "created_at",
            "updated_at",
            "agreement",
        ]
        read_only_fields = fields

    @extend_schema_field(PolicyAgreementSerializer)
    def get_agreement(self, policy: AutoApprovalPolicy) -> dict[str, Any]:
        """From ``context["agreement"]`` (``{policy_id: PolicyAgreement}``, one query for a whole page)."""
        figures = self.context.get("agreement", {}).get(policy.id)
        if figures is None:
            return dict(NO_AGREEMENT)
        return {key: getattr(figures, key) for key in NO_AGREEMENT}


class AutoApprovalPolicyWriteSerializer(serializers.Serializer):
    """Types only; ``hitl.services.policies`` validates the values (known severities, never high or
    critical, risk 0–100, a unique name) and who may enable."""

    policy_name = serializers.CharField(max_length=120)
    team = ScopedPrimaryKeyRelatedField(
        queryset=Team.objects.all(), required=False, allow_null=True, help_text="One of your teams; null: every team."
    )
    severity_filter = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text=f"Severities it may decide: {Severity.LOW}, {Severity.MEDIUM}, {Severity.INFO} (empty: all three).",
    )
    review_type_filter = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text=f"Review types it may decide, of {', '.join(ReviewType.values)} (empty: any).",
    )
    max_risk_score = serializers.FloatField(required=False, help_text="0–100; default 30.")
    auto_action = serializers.CharField(
        required=False, help_text=f"What it decides: one of {'|'.join(ReviewDecision.values)}; default approve."
    )
    enabled = serializers.BooleanField(required=False, help_text="Only admins may enable a policy.")
    shadow_mode = serializers.BooleanField(required=False, help_text="Record what it would decide; decide nothing.")
    description = serializers.CharField(required=False, allow_blank=True)


class PolicyToggleSerializer(serializers.Serializer):
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=300, help_text="Audited (and kept as disabled_reason)."
    )


# --- spot checks -------------------------------------------------------------------------------------------
class SpotCheckSerializer(serializers.ModelSerializer):
    item_title = serializers.CharField(source="item.title", read_only=True)
    system = serializers.UUIDField(source="item.system_id", read_only=True)
    system_name = serializers.CharField(source="item.system.name", read_only=True)
    severity = serializers.ChoiceField(source="item.severity", choices=Severity.choices, read_only=True)
    policy_name = serializers.CharField(source="policy.policy_name", read_only=True)
    reviewer = serializers.SlugRelatedField(slug_field="username", read_only=True)
    auto_decision = _named_values(ReviewDecision, help_text="What the policy decided.")
    human_decision = _named_values(
        ReviewDecision, allow_blank=True, help_text="The reviewer's verdict; empty while pending."
    )

    class Meta:
        model = SpotCheck
        fields = [
            "id",
            "item",
            "item_title",
            "system",
            "system_name",
            "severity",
            "policy",
            "policy_name",
            "auto_decision",
            "status",
            "human_decision",
            "reviewer",
            "rationale",
            "checked_at",
            "escalated_incident",
            "created_at",
        ]
        read_only_fields = fields


class SpotCheckVerdictSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(
        choices=ReviewDecision.choices, help_text="What you would have decided; compared with the policy's."
    )
    rationale = _rationale_field(help_text="Why; required.")

    def validate_rationale(self, value: str) -> str:
        try:
            return clean_rationale(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


# --- assist models -------------------------------------------------------------------------------------------
class AssistModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = AssistModel
        fields = [
            "id",
            "version",
            "trained_at",
            "training_samples",
            "holdout_samples",
            "metrics",
            "active",
            "trained_by",
        ]
        read_only_fields = fields
