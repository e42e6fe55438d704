"""The governance capabilities, control assessments and evaluation runs."""

from django.db import models

from governance.choices import AssessmentStatus, EvaluationProvenance, Framework
from governance.models.base import VigilModel
from governance.models.organization import AISystem, User

__all__ = ["Capability", "ControlAssessment", "EvaluationRun"]


class Capability(VigilModel):
    """One of Vigil's 12 governance capabilities. Whether it is enforced is computed, never stored:
    see ``governance.services.kpis.capability_statuses``."""

    team_scope_path = None  # platform-wide, visible to every role

    code = models.SlugField(max_length=64, unique=True)
    number = models.PositiveSmallIntegerField(unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField()
    enforced_by = models.CharField(max_length=200, help_text="The engine that enforces it.")
    regulatory_refs = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["number"]
        verbose_name_plural = "capabilities"

    def __str__(self) -> str:
        return f"{self.number}. {self.name}"


class ControlAssessment(VigilModel):
    """An assessment of one governance control on one AI system against a framework clause."""

    team_scope_path = "system__team"

    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="control_assessments")
    control = models.CharField(max_length=120, help_text="Control identifier, e.g. 'human-oversight'.")
    framework = models.CharField(max_length=16, choices=Framework.choices, default=Framework.EU_AI_ACT)
    reference = models.CharField(max_length=64, blank=True, help_text="Clause, e.g. 'Art. 14'.")
    status = models.CharField(max_length=24, choices=AssessmentStatus.choices, db_index=True)
    assessed_at = models.DateTimeField(db_index=True)
    assessor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    next_review_due = models.DateField(null=True, blank=True, db_index=True)
    notes = models.TextField(blank=True)
    evidence = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-assessed_at"]
        indexes = [models.Index(fields=["system", "control", "-assessed_at"])]

    def __str__(self) -> str:
        return f"{self.system} · {self.control}: {self.status}"


class EvaluationRun(VigilModel):
    """One metric from an evaluation suite run against a system, with its pass/fail verdict."""

    team_scope_path = "system__team"

    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="evaluation_runs")
    suite = models.CharField(max_length=120, db_index=True)
    metric = models.CharField(max_length=120, db_index=True)
    value = models.FloatField()
    threshold = models.FloatField(null=True, blank=True)
    passed = models.BooleanField(db_index=True)
    ran_at = models.DateTimeField(db_index=True)
    details = models.JSONField(default=dict, blank=True)
    triggered_by = models.CharField(max_length=150, blank=True)
    # Set by the service that records the run, never by its reporter: only ``evaluation_suite_run`` writes
    # ``gateway``. Rows recorded before provenance existed were classified by the migration from the audit log.
    provenance = models.CharField(
        max_length=16, choices=EvaluationProvenance.choices, default=EvaluationProvenance.REPORTED, db_index=True
    )

    class Meta:
        ordering = ["-ran_at"]
        indexes = [models.Index(fields=["system", "metric", "-ran_at"])]

    def __str__(self) -> str:
        verdict = "pass" if self.passed else "fail"
        return f"{self.system} · {self.suite}/{self.metric}={self.value:g} ({verdict})"
