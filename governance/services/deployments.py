"""Deployments reported by CI/CD pipelines, judged against the CI/CD gate (``services.cicd_gate``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from django.db import transaction
from django.utils import timezone

from governance.choices import AuditAction, GateVerdict
from governance.models import AISystem, Deployment, User
from governance.selectors import cicd_gate_entry_latest
from governance.services.audit import audit_record
from governance.services.errors import InvalidFields

__all__ = ["DEPLOYED_AT_MAX_FUTURE", "DeploymentInvalid", "deployment_record"]

# Pipelines report what they just deployed: a little clock skew is normal, a deployment in the future is not.
DEPLOYED_AT_MAX_FUTURE = timedelta(minutes=5)


class DeploymentInvalid(InvalidFields):
    """A deployment report that cannot be recorded; ``fields`` names what is wrong."""


def deployment_record(
    *, system: AISystem, artifact: str, environment: str, deployed_at: datetime, actor: User | None
) -> Deployment:
    """Record that ``artifact`` of ``system`` was deployed to ``environment`` at ``deployed_at``.

    The deployment is judged against the latest ``cicd.gate_decided`` entry for this system and artifact
    at or before ``deployed_at`` (one indexed query): ``allow``, ``deny``, or ``missing`` when the gate was
    never asked. Guarantees: the ``Deployment`` and its ``deployment.recorded`` audit entry (with the gate
    verdict) are written in one transaction; a deployment the gate did not allow (``deny`` or ``missing``)
    is marked ``circumvention`` and, after commit, reported as ONE ``policy_circumvention`` detection
    citing the gate's entry and the deployment's (see ``bypass.gate_circumvention``). Raises
    :class:`DeploymentInvalid` for a naive or future ``deployed_at``. Not idempotent: each report is a
    deployment of its own.
    """
    from governance.services.bypass.gate_circumvention import deployment_circumvention_report

    if timezone.is_naive(deployed_at):
        raise DeploymentInvalid({"deployed_at": ["must include a timezone offset (Z or ±HH:MM)"]})
    latest_allowed = timezone.now() + DEPLOYED_AT_MAX_FUTURE
    if deployed_at > latest_allowed:
        raise DeploymentInvalid(
            {"deployed_at": [f"is more than {DEPLOYED_AT_MAX_FUTURE.seconds // 60} minutes in the future"]}
        )
    with transaction.atomic():
        gate_entry = cicd_gate_entry_latest(system=system, artifact=artifact, at=deployed_at)
        verdict = GateVerdict(gate_entry.data["decision"]) if gate_entry else GateVerdict.MISSING
        deployment = Deployment.objects.create(
            system=system,
            artifact=artifact,
            environment=environment,
            deployed_at=deployed_at,
            reported_by=actor if isinstance(actor, User) else None,
            gate_decision=verdict,
            gate_audit_entry=gate_entry.pk if gate_entry else None,
            circumvention=verdict != GateVerdict.ALLOW,
        )
        entry = audit_record(
            action=AuditAction.DEPLOYMENT_RECORDED,
            actor=actor,
            target=deployment,
            data={
                "system": str(system.pk),
                "system_name": system.name,
                "artifact": artifact,
                "environment": environment,
                "deployed_at": deployed_at,
                "gate_decision": verdict,
                "gate_audit_entry": str(gate_entry.pk) if gate_entry else None,
                "circumvention": deployment.circumvention,
            },
        )
        if deployment.circumvention:
            # robust: the deployment is recorded whatever happens to the detection; the minute scan
            # (``bypass_scan_gate_circumvention``) reports any detection lost here.
            transaction.on_commit(
                partial(
                    deployment_circumvention_report,
                    deployment=deployment,
                    recorded_entry_id=entry.pk,
                    reasons=list(gate_entry.data.get("reasons") or []) if gate_entry else [],
                ),
                robust=True,
            )
    return deployment
