"""Policy circumvention, part 1: getting past the CI/CD gate.

Two ``policy_circumvention`` detections:

- a deployment the gate did not allow: reported (``POST /deployments``) although the gate's latest
  decision for that system and artifact was ``deny`` (critical), or the gate was never asked (high);
  source ``deployment:<id>``, citing the gate's ``cicd.gate_decided`` entry and the
  ``deployment.recorded`` entry;
- an evaluation result without an eval run: a result of a suite the gateway runs (``EVALUATION_SUITES``)
  recorded by anything but the gateway's own run (e.g. ``POST /evaluation-runs``), high; source
  ``evaluation_run:<id>``, citing its ``evaluation.recorded`` entry. Such a result is kept
  (``provenance = reported``) but never counts as a pass at the gate.

Both are reported right after the recording transaction commits; ``bypass_scan_gate_circumvention``
(for the minute scan) reports any of the last hour's that a failed commit hook lost. The detection's
period is the moment the deployment or result was recorded, so both paths name the same detection and
it is stored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from governance.choices import AuditAction, EvaluationProvenance, GateVerdict
from governance.models import AuditLog, Deployment, EvaluationRun
from governance.services.bypass.core import bypass_detection_emit, detector_settings
from governance.services.gateway import EVALUATION_SUITES

__all__ = [
    "DETECTOR",
    "SCAN_LOOKBACK",
    "bypass_scan_gate_circumvention",
    "deployment_circumvention_report",
    "evaluation_run_unverified_report",
    "is_unverified_gateway_result",
]

DETECTOR = "policy_circumvention"
# How far back the minute scan looks for circumventions whose detection was lost after commit.
SCAN_LOOKBACK = timedelta(hours=1)


def _enabled() -> bool:
    return bool(detector_settings(DETECTOR)["enabled"])


def is_unverified_gateway_result(*, suite: str, provenance: str) -> bool:
    """Whether a result claims a suite the gateway runs without coming from a gateway run."""
    return suite in EVALUATION_SUITES and provenance != EvaluationProvenance.GATEWAY


def _deployment_emit(
    *, deployment: Deployment, recorded_entry_id: Any, reasons: Sequence[str], now: datetime | None
) -> bool:
    system = deployment.system
    denied = deployment.gate_decision == GateVerdict.DENY
    said = "although the CI/CD gate denied it" if denied else "without any CI/CD gate decision"
    refs = [ref for ref in (deployment.gate_audit_entry, recorded_entry_id) if ref is not None]
    return bypass_detection_emit(
        detector=DETECTOR,
        source=f"deployment:{deployment.pk}",
        summary=f"{system.name}: {deployment.artifact} deployed to {deployment.environment} {said}",
        severity="critical" if denied else "high",
        details={
            "system": str(system.pk),
            "system_name": system.name,
            "artifact": deployment.artifact,
            "environment": deployment.environment,
            "deployment": str(deployment.pk),
            "gate_decision": deployment.gate_decision,
            "reasons": list(reasons) or None,
        },
        audit_refs=refs,
        now=now,
        period=deployment.created_at,
    )


def deployment_circumvention_report(
    *, deployment: Deployment, recorded_entry_id: Any, reasons: Sequence[str] = (), now: datetime | None = None
) -> bool:
    """Report a deployment the gate did not allow as ONE ``policy_circumvention`` detection (critical
    after a ``deny``, high when the gate was never asked), citing the gate's entry and ``recorded_entry_id``
    (its ``deployment.recorded`` entry); ``reasons`` are the gate's deny reasons. Nothing when the detector
    is switched off or the deployment is not a circumvention; idempotent. Returns True when new."""
    if not deployment.circumvention or not _enabled():
        return False
    return _deployment_emit(deployment=deployment, recorded_entry_id=recorded_entry_id, reasons=reasons, now=now)


def _evaluation_emit(*, run: EvaluationRun, recorded_entry_id: Any, now: datetime | None) -> bool:
    system = run.system
    by = f" by {run.triggered_by}" if run.triggered_by else ""
    return bypass_detection_emit(
        detector=DETECTOR,
        source=f"evaluation_run:{run.pk}",
        summary=f"{system.name}: {run.suite}/{run.metric} result posted{by} without an eval run",
        severity="high",
        details={
            "system": str(system.pk),
            "system_name": system.name,
            "suite": run.suite,
            "evaluation_run": str(run.pk),
        },
        audit_refs=[recorded_entry_id] if recorded_entry_id is not None else [],
        now=now,
        period=run.created_at,
    )


def evaluation_run_unverified_report(
    *, run: EvaluationRun, recorded_entry_id: Any, now: datetime | None = None
) -> bool:
    """Report a result of a gateway suite that did not come from a gateway run as ONE high
    ``policy_circumvention`` detection citing ``recorded_entry_id`` (its ``evaluation.recorded`` entry).
    Nothing for results of other suites, for gateway runs, or when the detector is switched off;
    idempotent. Returns True when new."""
    if not is_unverified_gateway_result(suite=run.suite, provenance=run.provenance) or not _enabled():
        return False
    return _evaluation_emit(run=run, recorded_entry_id=recorded_entry_id, now=now)


def bypass_scan_gate_circumvention(*, now: datetime | None = None) -> int:
    """Report the circumventions of the last hour (deployments the gate did not allow, unverified results
    of gateway suites) whose detection is not stored yet: the safety net for a detection lost after its
    recording committed. Three queries plus one existence check per candidate (candidates are rare);
    idempotent. Returns how many new detections were recorded."""
    now = now or timezone.now()
    if not _enabled():
        return 0
    since = now - SCAN_LOOKBACK
    deployments = list(
        Deployment.objects.filter(circumvention=True, created_at__gte=since, created_at__lte=now).select_related(
            "system"
        )
    )
    runs = list(
        EvaluationRun.objects.filter(suite__in=list(EVALUATION_SUITES), created_at__gte=since, created_at__lte=now)
        .exclude(provenance=EvaluationProvenance.GATEWAY)
        .select_related("system")
    )
    if not deployments and not runs:
        return 0
    entries = AuditLog.objects.filter(
        Q(
            action=AuditAction.DEPLOYMENT_RECORDED,
            object_type=Deployment._meta.label_lower,
            object_id__in=[str(d.pk) for d in deployments],
        )
        | Q(
            action=AuditAction.EVALUATION_RECORDED,
            object_type=EvaluationRun._meta.label_lower,
            object_id__in=[str(r.pk) for r in runs],
        )
        | Q(pk__in=[d.gate_audit_entry for d in deployments if d.gate_audit_entry])
    ).values_list("pk", "action", "object_id", "data")
    recorded: dict[str, Any] = {}
    reasons: dict[str, list[str]] = {}
    for pk, action, object_id, data in entries:
        if action == AuditAction.CICD_GATE_DECIDED:
            reasons[str(pk)] = list(data.get("reasons") or [])
        else:
            recorded[object_id] = pk
    emitted = 0
    for deployment in deployments:
        emitted += _deployment_emit(
            deployment=deployment,
            recorded_entry_id=recorded.get(str(deployment.pk)),
            reasons=reasons.get(str(deployment.gate_audit_entry), []),
            now=now,
        )
    for run in runs:
        emitted += _evaluation_emit(run=run, recorded_entry_id=recorded.get(str(run.pk)), now=now)
    return emitted
