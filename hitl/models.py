"""The human-in-the-loop review queue."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from governance.choices import Severity
from governance.models import AISystem, VigilModel


class ReviewType(models.TextChoices):
    ALERT_TRIAGE = "alert_triage", "Alert triage"
    MODEL_CHANGE = "model_change", "Model change"
    POLICY_EXCEPTION = "policy_exception", "Policy exception"
    DATA_ACCESS = "data_access", "Data access"
    # Opened by predictive governance when a forecast passes the review threshold, before any alert fires.
    PROACTIVE_RISK = "proactive_risk", "Proactive risk review"


class ReviewStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    ESCALATED = "escalated", "Escalated"


class DecisionSource(models.TextChoices):
    HUMAN = "human", "Human"
    AUTO_POLICY = "auto_policy", "Auto-approval policy"
    BULK = "bulk", "Bulk triage"


class ReviewDecision(models.TextChoices):
    """What a reviewer (or a policy, or a suggestion) decides about a pending item.

    approve: the change / the observed behaviour is acceptable, no further action;
    reject: refused (a change not allowed, an alert dismissed as a false positive);
    escalate: serious enough for an incident (opens one, or joins the open one of the same fingerprint).
    """

    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    ESCALATE = "escalate", "Escalate"


# The status an item ends in for each decision (one place for the mapping).
STATUS_FOR_DECISION = {
    ReviewDecision.APPROVE: ReviewStatus.APPROVED,
    ReviewDecision.REJECT: ReviewStatus.REJECTED,
    ReviewDecision.ESCALATE: ReviewStatus.ESCALATED,
}
DECISION_FOR_STATUS = {status: decision for decision, status in STATUS_FOR_DECISION.items()}


# The review types a person (or a service account) may ask for; alert triage is queued from alerts only.
REQUESTABLE_REVIEW_TYPES = (ReviewType.MODEL_CHANGE, ReviewType.POLICY_EXCEPTION, ReviewType.DATA_ACCESS)


class ReviewItem(VigilModel):
    """Something a person must judge: a medium alert, a model change, a policy exception.

    At most one pending item per source alert (a partial unique constraint), so re-processing an
    alert never queues it twice. Status leaves ``pending`` only through ``hitl.services.decisions``
    (a guarded update, audited). The latest auto-assist suggestion is copied onto the row
    (``suggested_decision``, ``assist_confidence``, ``risk_score``) so the queue can be filtered,
    sorted and bulk-triaged on it; every suggestion ever made stays in ``AssistResult``.
    """

    team_scope_path = "system__team"

    review_type = models.CharField(max_length=24, choices=ReviewType.choices, db_index=True)
    title = models.CharField(max_length=300)
    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="review_items")
    severity = models.CharField(max_length=16, choices=Severity.choices, db_index=True)
    source_alert = models.ForeignKey(
        "oversight.Alert", null=True, blank=True, on_delete=models.SET_NULL, related_name="review_items"
    )
    source_incident = models.ForeignKey(
        "incidents.Incident", null=True, blank=True, on_delete=models.SET_NULL, related_name="review_items"
    )
    fingerprint = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="What this item is about, stable across recurrences (the alert fingerprint for alert triage).",
    )
    rule = models.CharField(max_length=100, blank=True, db_index=True, help_text="Detection rule or check name.")
    status = models.CharField(max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.PENDING, db_index=True)
    sla_due_at = models.DateTimeField(db_index=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_reviews"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="requested_reviews",
        help_text="Who asked for this review (model change, policy exception, data access); empty for items "
        "the engines queue from alerts.",
    )
    decision = models.CharField(max_length=16, choices=ReviewDecision.choices, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="decided_reviews"
    )
    decided_by_policy = models.ForeignKey(
        "hitl.AutoApprovalPolicy", null=True, blank=True, on_delete=models.SET_NULL, related_name="decided_items"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    decision_source = models.CharField(max_length=16, choices=DecisionSource.choices, blank=True)
    escalated_incident = models.ForeignKey(
        "incidents.Incident",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="escalated_reviews",
        help_text="The incident this item was escalated into (opened or joined).",
    )
    context = models.JSONField(default=dict, blank=True, help_text="What the reviewer needs: values, thresholds.")
    # The latest auto-assist suggestion (denormalized from AssistResult for filtering and bulk triage).
    suggested_decision = models.CharField(max_length=16, choices=ReviewDecision.choices, blank=True, db_index=True)
    assist_confidence = models.FloatField(null=True, blank=True)
    risk_score = models.FloatField(null=True, blank=True, db_index=True)
    assisted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "review_queue"
        ordering = ["sla_due_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["source_alert"],
                condition=Q(status="pending"),
                name="review_one_pending_per_alert",
            ),
            models.CheckConstraint(
                condition=Q(status="pending", decided_at__isnull=True)
                | (~Q(status="pending") & Q(decided_at__isnull=False)),
                name="review_decided_at_matches_status",
            ),
            models.CheckConstraint(
                condition=Q(risk_score__isnull=True) | Q(risk_score__gte=0, risk_score__lte=100),
                name="review_risk_score_0_100",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "sla_due_at"], name="review_status_due"),
            models.Index(fields=["status", "decided_at"], name="review_status_decided"),
            models.Index(fields=["status", "assisted_at"], name="review_status_assisted"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_pending(self) -> bool:
        return self.status == ReviewStatus.PENDING


class AssistResult(VigilModel):
    """One auto-assist suggestion for one review item (the plan's ``AutoAssistResult``).

    Append-only: re-assisting an item adds a row; the item carries the latest one. ``factors`` names
    every input and its contribution, so a reviewer (and an auditor) can see why.
    """

    team_scope_path = "item__system__team"

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="assist_results")
    summary = models.TextField()
    suggested_decision = models.CharField(max_length=16, choices=ReviewDecision.choices)
    confidence = models.FloatField(help_text="Probability that a human would take the suggested decision (0–1).")
    risk_score = models.FloatField(help_text="0 (no risk) to 100.")
    evidence_refs = models.JSONField(default=list, blank=True, help_text='e.g. ["alert:<id>", "event:<id>"].')
    reasoning = models.TextField()
    factors = models.JSONField(default=dict, blank=True, help_text="Each factor's value and contribution.")
    sla_recommendation = models.JSONField(default=dict, blank=True, help_text="{hours, due_at, reason}.")
    provider = models.CharField(max_length=40, db_index=True)
    model_version = models.CharField(max_length=60, blank=True)
    fallback_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        db_table = "assist_results"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["item", "-created_at"], name="assist_item_latest")]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__gte=0, confidence__lte=1) & Q(risk_score__gte=0, risk_score__lte=100),
                name="assist_result_ranges",
            )
        ]

    def __str__(self) -> str:
        return f"{self.suggested_decision} ({self.confidence:.2f}) for {self.item_id}"


class AutoApprovalPolicy(VigilModel):
    """The plan's ``auto_approval_policies``: which pending items may be decided without a human.

    Only items matching every filter (empty filter = any), with an assist risk score ≤
    ``max_risk_score`` and a confidence ≥ the configured floor (``hitl.auto_approval``) qualify; the
    policy's ``auto_action`` must also be what the assist engine suggested. A policy in shadow mode
    records what it would do (``Decision`` rows with ``shadow=True``) and changes nothing. Only admins
    enable a policy; the automation-bias monitor disables one whose spot-check agreement falls below
    the floor.
    """

    team_scope_path = "team"

    policy_name = models.CharField(max_length=120, unique=True)
    team = models.ForeignKey(
        "governance.Team",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="auto_approval_policies",
        help_text="Only items of this team's systems; empty means every team.",
    )
    severity_filter = models.JSONField(default=list, blank=True, help_text="Severities it may decide (empty: any).")
    review_type_filter = models.JSONField(default=list, blank=True, help_text="Review types (empty: any).")
    max_risk_score = models.FloatField(default=30)
    auto_action = models.CharField(max_length=16, choices=ReviewDecision.choices, default=ReviewDecision.APPROVE)
    enabled = models.BooleanField(default=False)
    shadow_mode = models.BooleanField(
        default=False, help_text="Record what the policy would decide without deciding anything."
    )
    requires_audit_log = models.BooleanField(
        default=True, editable=False, help_text="Always true: every automatic decision is audited."
    )
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    disabled_reason = models.CharField(max_length=300, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "auto_approval_policies"
        ordering = ["policy_name"]
        verbose_name_plural = "auto-approval policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(max_risk_score__gte=0, max_risk_score__lte=100), name="policy_max_risk_0_100"
            ),
            models.CheckConstraint(condition=Q(requires_audit_log=True), name="policy_always_audited"),
        ]

    def __str__(self) -> str:
        return self.policy_name

    @property
    def mode(self) -> str:
        if self.shadow_mode:
            return "shadow"
        return "enabled" if self.enabled else "disabled"


class Decision(VigilModel):
    """Every decision taken on a review item, and every decision a shadow policy would have taken.

    The item row holds the outcome; this table is the history the assist model learns from (human
    decisions only) and the record the automation-bias monitor compares against.
    """

    team_scope_path = "item__system__team"

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="decisions")
    decision = models.CharField(max_length=16, choices=ReviewDecision.choices)
    source = models.CharField(max_length=16, choices=DecisionSource.choices)
    policy = models.ForeignKey(
        AutoApprovalPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    rationale = models.TextField(blank=True)
    shadow = models.BooleanField(default=False, help_text="Proposed by a shadow-mode policy; nothing changed.")
    confidence = models.FloatField(null=True, blank=True)
    risk_score = models.FloatField(null=True, blank=True)
    decided_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "review_decisions"
        ordering = ["-decided_at"]
        indexes = [models.Index(fields=["source", "shadow", "decided_at"], name="decision_source_time")]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "policy"], condition=Q(shadow=True), name="decision_one_shadow_per_policy_item"
            )
        ]

    def __str__(self) -> str:
        return f"{self.decision} by {self.source}"


class SpotCheckStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    AGREED = "agreed", "Agreed"
    DISAGREED = "disagreed", "Disagreed"


class SpotCheck(VigilModel):
    """An automatically decided item sampled for a human second look (the automation-bias monitor).

    The human's verdict is compared with the policy's decision; each policy's agreement rate over its
    completed spot checks decides whether it stays enabled.
    """

    team_scope_path = "item__system__team"

    item = models.OneToOneField(ReviewItem, on_delete=models.CASCADE, related_name="spot_check")
    policy = models.ForeignKey(AutoApprovalPolicy, on_delete=models.CASCADE, related_name="spot_checks")
    auto_decision = models.CharField(max_length=16, choices=ReviewDecision.choices)
    status = models.CharField(
        max_length=16, choices=SpotCheckStatus.choices, default=SpotCheckStatus.PENDING, db_index=True
    )
    human_decision = models.CharField(max_length=16, choices=ReviewDecision.choices, blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    rationale = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    escalated_incident = models.ForeignKey(
        "incidents.Incident",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="spot_checks",
        help_text="Opened or joined when the spot-checker escalated an item the policy had not.",
    )

    class Meta:
        db_table = "review_spot_checks"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["policy", "status"], name="spot_check_policy_status")]

    def __str__(self) -> str:
        return f"spot check of {self.item_id} ({self.status})"


class AssistModel(VigilModel):
    """A model of past human decisions, trained by ``hitl.assist.learned``; the newest active one is used.

    Parameters are plain JSON (coefficients, calibration), so a model is inspectable and needs no
    pickle to load.
    """

    team_scope_path = None

    version = models.PositiveIntegerField(unique=True)
    trained_at = models.DateTimeField()
    training_samples = models.PositiveIntegerField()
    holdout_samples = models.PositiveIntegerField(default=0)
    feature_names = models.JSONField(default=list)
    classes = models.JSONField(default=list)
    parameters = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True, help_text="Held-out agreement, ECE, class counts.")
    active = models.BooleanField(default=True, db_index=True)
    trained_by = models.CharField(max_length=150, default="system")

    class Meta:
        db_table = "assist_models"
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"assist model v{self.version}"
