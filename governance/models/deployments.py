"""Deployments that CI/CD pipelines report, each judged against the CI/CD gate's decision."""

from django.db import models

from governance.choices import GateVerdict
from governance.models.base import VigilModel
from governance.models.organization import AISystem, User

__all__ = ["Deployment"]


class Deployment(VigilModel):
    """One artifact of an AI system deployed to an environment, as its pipeline reported it (Sentry's deploys).

    ``gate_decision`` is the latest ``cicd.gate_decided`` verdict for this system and artifact at or before
    ``deployed_at`` (``missing`` when the gate was never asked); ``gate_audit_entry`` is that audit entry.
    A deployment the gate did not allow is a ``circumvention`` and a ``policy_circumvention`` detection.
    Evidence: written once by ``deployment_record``, never changed.
    """

    team_scope_path = "system__team"

    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="deployments")
    artifact = models.CharField(max_length=300, help_text="What was deployed (image digest, model URI…).")
    environment = models.CharField(max_length=64, default="production", db_index=True)
    deployed_at = models.DateTimeField(db_index=True)
    reported_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    gate_decision = models.CharField(max_length=8, choices=GateVerdict.choices, db_index=True)
    gate_audit_entry = models.UUIDField(
        null=True, blank=True, help_text="The audit entry of the gate decision it was judged against."
    )
    circumvention = models.BooleanField(
        default=False, db_index=True, help_text="Deployed although the gate denied it or was never asked."
    )

    class Meta:
        db_table = "deployments"
        ordering = ["-deployed_at"]
        indexes = [models.Index(fields=["system", "-deployed_at"], name="deployment_system_recent")]

    def __str__(self) -> str:
        return f"{self.system} · {self.artifact} → {self.environment} ({self.gate_decision})"
