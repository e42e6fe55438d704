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
    rca_completed_at = models.DateTimeField(null=True, blank=True)
    follow_up_date = models.DateField(null=True, blank=True)
    resolution_reason = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)

    class Meta:
        db_table = "incidents"
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=Q(status__in=["open", "acknowledged", "mitigated"]) & ~Q(fingerprint=""),
                name="incident_one_open_per_fingerprint",
            )
        ]
        indexes = [models.Index(fields=["status", "severity"], name="incident_status_severity")]

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
