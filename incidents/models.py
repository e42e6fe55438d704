"""Incidents and their timeline."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from governance.choices import Severity
from governance.models import AISystem, Team, VigilModel


class IncidentStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    MITIGATED = "mitigated", "Mitigated"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


OPEN_INCIDENT_STATUSES = (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED, IncidentStatus.MITIGATED)

# target -> the statuses it may be reached from: the one source of truth for lifecycle transitions.
ALLOWED_FROM = {
    IncidentStatus.ACKNOWLEDGED: (IncidentStatus.OPEN,),
    IncidentStatus.MITIGATED: (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED),
    IncidentStatus.RESOLVED: OPEN_INCIDENT_STATUSES,
    IncidentStatus.CLOSED: (*OPEN_INCIDENT_STATUSES, IncidentStatus.RESOLVED),
    IncidentStatus.OPEN: (IncidentStatus.RESOLVED, IncidentStatus.CLOSED),  # reopen
}


class IncidentType(models.TextChoices):
    """What kind of problem: picks the RCA template (``rca_templates.incident_type``)."""

    DATA_QUALITY = "data_quality", "Data quality"
    MODEL_PERFORMANCE = "model_perf", "Model performance"
    FAIRNESS = "fairness", "Fairness"
    SECURITY = "security", "Security"
    COMPLIANCE = "compliance", "Compliance"
    AVAILABILITY = "availability", "Availability (telemetry lost)"
    HUMAN_OVERSIGHT = "human_oversight", "Escalated human review"
    OTHER = "other", "Other"


class RegulatoryBasis(models.TextChoices):
    """EU AI Act Art. 73 reporting deadlines for a serious incident on a high-risk AI system."""

    STANDARD = "standard", "Serious incident (Art. 73(2): 15 days)"
    WIDESPREAD = "widespread", "Widespread infringement or critical infrastructure (Art. 73(3): 2 days)"
    DEATH = "death", "Death of a person (Art. 73(4): 10 days)"


class RCATemplate(VigilModel):
    """The plan's ``rca_templates``: what a root-cause analysis of one incident type must contain."""

    team_scope_path = None

    incident_type = models.CharField(max_length=32, choices=IncidentType.choices, unique=True)
    name = models.CharField(max_length=120)
    template_content = models.TextField(help_text="Guidance shown to whoever writes the RCA (Markdown).")
    required_fields = models.JSONField(
        default=list, help_text='Field names the RCA must fill before a high/critical close, e.g. ["root_cause"].'
    )

    class Meta:
        db_table = "rca_templates"
        ordering = ["incident_type"]
        verbose_name = "RCA template"

    def __str__(self) -> str:
        return self.name


class Incident(VigilModel):
    """A serious problem someone must drive to closure. One open incident per alert fingerprint."""

    team_scope_path = "team"

    title = models.CharField(max_length=300)
    system = models.ForeignKey(AISystem, null=True, blank=True, on_delete=models.PROTECT, related_name="incidents")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="incidents")
    severity = models.CharField(max_length=16, choices=Severity.choices, db_index=True)
    status = models.CharField(max_length=16, choices=IncidentStatus.choices, default=IncidentStatus.OPEN, db_index=True)
    fingerprint = models.CharField(max_length=64, blank=True, db_index=True)
    source_alert = models.ForeignKey(
        "oversight.Alert", null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents"
    )
    opened_at = models.DateTimeField(db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    sla_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    escalation_level = models.PositiveSmallIntegerField(default=0)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_incidents"
    )
    incident_type = models.CharField(
        max_length=32, choices=IncidentType.choices, default=IncidentType.OTHER, db_index=True
    )
    mitigated_at = models.DateTimeField(null=True, blank=True)
    resolve_due_at = models.DateTimeField(
        null=True, blank=True, help_text="Resolve target (slo.incident_resolve_minutes); sla_due_at is the ack target."
    )
    last_activity_at = models.DateTimeField(null=True, blank=True, db_index=True)
    reopened_count = models.PositiveSmallIntegerField(default=0)
    # Escalation (OnCall style): the policy frozen at open, the next step's time and a token that makes
    # each step happen exactly once.
    escalation_snapshot = models.JSONField(default=dict, blank=True)
    next_escalation_at = models.DateTimeField(null=True, blank=True)
    escalation_token = models.CharField(max_length=64, blank=True)
    last_escalated_at = models.DateTimeField(null=True, blank=True)
    rca_template = models.ForeignKey(
        RCATemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents"
    )
    rca = models.JSONField(default=dict, blank=True, help_text="The RCA: one text per template field.")
    rca_completed_at = models.DateTimeField(null=True, blank=True)
    follow_up_date = models.DateField(null=True, blank=True)
    resolution_reason = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    # EU AI Act Art. 73: a serious incident on a high-risk system must be reported by a deadline.
    serious = models.BooleanField(default=False)
    regulatory_basis = models.CharField(max_length=16, choices=RegulatoryBasis.choices, blank=True)
    regulatory_deadline_at = models.DateTimeField(null=True, blank=True, db_index=True)
    regulatory_reported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "incidents"
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=Q(status__in=["open", "acknowledged", "mitigated"]) & ~Q(fingerprint=""),
                name="incident_one_open_per_fingerprint",
            ),
            models.CheckConstraint(
                condition=~Q(status="closed") | Q(closed_at__isnull=False), name="incident_closed_has_closed_at"
            ),
            models.CheckConstraint(
                condition=~Q(status="resolved") | Q(resolved_at__isnull=False),
                name="incident_resolved_has_resolved_at",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "severity"], name="incident_status_severity"),
            # The lifecycle tick's scan: open incidents whose next escalation is due.
            models.Index(
                fields=["next_escalation_at"],
                condition=Q(status__in=["open", "acknowledged", "mitigated"]),
                name="incident_escalation_due",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class IncidentEventKind(models.TextChoices):
    OPENED = "opened", "Opened"
    ALERT_ATTACHED = "alert_attached", "Alert attached"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    ESCALATED = "escalated", "Escalated"
    MITIGATED = "mitigated", "Mitigated"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"
    REOPENED = "reopened", "Reopened"
    NOTE = "note", "Note"
    ASSIGNED = "assigned", "Assigned"
    RCA_UPDATED = "rca_updated", "RCA updated"
    FOLLOW_UP = "follow_up", "Follow-up"
    NOTIFIED = "notified", "Notification sent"
    REGULATORY = "regulatory", "Regulatory deadline"


class IncidentEvent(VigilModel):
    """One entry of an incident's timeline."""

    team_scope_path = "incident__team"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    kind = models.CharField(max_length=24, choices=IncidentEventKind.choices)
    at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["incident", "at"], name="incident_event_timeline")]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%Y-%m-%d %H:%M:%S}"


class LinkTarget(models.TextChoices):
    INCIDENT = "incident", "Incident"
    SYSTEM = "system", "AI system"
    ALERT = "alert", "Alert"
    POLICY = "policy", "Policy"
    AUDIT = "audit", "Audit entry"
    REVIEW = "review", "Review item"


class LinkRelation(models.TextChoices):
    AFFECTS = "affects", "affects"
    TRIGGERED_BY = "triggered_by", "triggered by"
    SIMILAR_TO = "similar_to", "similar to"
    SAME_FINGERPRINT = "same_fingerprint", "recurrence of"
    GOVERNED_BY = "governed_by", "governed by"
    RECORDED_IN = "recorded_in", "recorded in"
    ESCALATED_FROM = "escalated_from", "escalated from"
    EVIDENCED_BY = "evidenced_by", "evidenced by"


class IncidentLink(VigilModel):
    """A knowledge-graph edge from an incident to something related (another incident, its system, an
    alert, a policy, an audit entry, a review). Created automatically; unique per (incident, target,
    relation)."""

    team_scope_path = "incident__team"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="links")
    target_type = models.CharField(max_length=16, choices=LinkTarget.choices)
    target_id = models.CharField(max_length=64)
    relation = models.CharField(max_length=24, choices=LinkRelation.choices)
    label = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "incident_links"
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "target_type", "target_id", "relation"], name="incident_link_unique"
            )
        ]
        indexes = [models.Index(fields=["target_type", "target_id"], name="incident_link_target")]

    def __str__(self) -> str:
        return f"{self.incident_id} {self.relation} {self.target_type}:{self.target_id}"


class FollowUpStatus(models.TextChoices):
    OPEN = "open", "Open"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"


class FollowUp(VigilModel):
    """Work promised when an incident was resolved (a fix to ship, a control to add), with an owner and
    a due date. Due ones notify their owner; overdue ones escalate."""

    team_scope_path = "incident__team"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="follow_ups")
    title = models.CharField(max_length=300)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="follow_ups"
    )
    due_date = models.DateField(db_index=True)
    status = models.CharField(max_length=16, choices=FollowUpStatus.choices, default=FollowUpStatus.OPEN)
    completed_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "incident_follow_ups"
        ordering = ["due_date"]
        indexes = [models.Index(fields=["status", "due_date"], name="follow_up_status_due")]

    def __str__(self) -> str:
        return self.title


class NotificationChannel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    REFUSED = "refused", "Refused (target not allowed)"


class Notification(VigilModel):
    """One message to one target about one incident step (an outbox row). ``dedupe_key`` is unique, so
    a step that runs twice cannot notify twice; a sender task delivers pending rows after commit."""

    team_scope_path = "incident__team"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="notifications")
    channel = models.CharField(max_length=16, choices=NotificationChannel.choices)
    target = models.CharField(max_length=500, help_text="An email address or a webhook URL.")
    kind = models.CharField(max_length=32, help_text="escalation, follow_up_due, follow_up_overdue, regulatory, …")
    subject = models.CharField(max_length=300)
    payload = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=200, unique=True)
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "incident_notifications"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.channel} to {self.target}: {self.subject}"
