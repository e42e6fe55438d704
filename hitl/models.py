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


class ReviewStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    ESCALATED = "escalated", "Escalated"


class DecisionSource(models.TextChoices):
    HUMAN = "human", "Human"
    AUTO_POLICY = "auto_policy", "Auto-approval policy"
    BULK = "bulk", "Bulk triage"


class ReviewItem(VigilModel):
    """Something a person must judge: a medium alert, a model change, a policy exception.

    At most one pending item per source alert (a partial unique constraint), so re-processing an
    alert never queues it twice.
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
    status = models.CharField(max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.PENDING, db_index=True)
    sla_due_at = models.DateTimeField(db_index=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_reviews"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="decided_reviews"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    decision_source = models.CharField(max_length=16, choices=DecisionSource.choices, blank=True)
    context = models.JSONField(default=dict, blank=True, help_text="What the reviewer needs: values, thresholds.")

    class Meta:
        db_table = "review_queue"
        ordering = ["sla_due_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["source_alert"],
                condition=Q(status="pending"),
                name="review_one_pending_per_alert",
            )
        ]
        indexes = [models.Index(fields=["status", "sla_due_at"], name="review_status_due")]

    def __str__(self) -> str:
        return self.title
