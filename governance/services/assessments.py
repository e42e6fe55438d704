"""Control assessments and evaluation runs."""

from __future__ import annotations

from datetime import date, datetime
from functools import partial
from typing import Any

from django.db import transaction

from governance.choices import AuditAction, EvaluationProvenance
from governance.models import AISystem, ControlAssessment, EvaluationRun, User
from governance.services.audit import audit_record


@transaction.atomic
def control_assessment_record(
    *,
    system: AISystem,
    control: str,
    status: str,
    assessed_at: datetime,
    actor: User | None,
    framework: str = "eu_ai_act",
    reference: str = "",
    next_review_due: date | None = None,
    notes: str = "",
    evidence: list[Any] | None = None,
) -> ControlAssessment:
    """Record an assessment of a control on a system; audited."""
    assessment = ControlAssessment.objects.create(
        system=system,
        control=control,
        status=status,
        assessed_at=assessed_at,
        framework=framework,
        reference=reference,
        next_review_due=next_review_due,
        notes=notes,
        evidence=evidence or [],
        assessor=actor if isinstance(actor, User) else None,
    )
    audit_record(
        action=AuditAction.CONTROL_ASSESSED,
        actor=actor,
        target=assessment,
        data={"system": str(system.pk), "control": control, "status": status, "reference": reference},
    )
    return assessment


@transaction.atomic
def evaluation_run_record(
    *,
    system: AISystem,
    suite: str,
    metric: str,
    value: float,
    ran_at: datetime,
    actor: User | None,
    threshold: float | None = None,
    higher_is_better: bool = True,
    passed: bool | None = None,
    details: dict[str, Any] | None = None,
    provenance: str = EvaluationProvenance.REPORTED,
) -> EvaluationRun:
    """Record one evaluation metric; audited ``evaluation.recorded``. ``passed`` is derived from
    ``threshold`` when not given.

    ``provenance`` is ``reported`` unless the caller is the gateway's own suite run
    (``evaluation_suite_run`` passes ``gateway``). A reported result of a suite the gateway runs is kept
    but unverified: it never counts as a pass at the CI/CD gate, and after commit it is reported as a
    ``policy_circumvention`` detection ("eval results without an eval run").
    """
    from governance.services.bypass.gate_circumvention import (  # the detector reads the gateway's suites
        evaluation_run_unverified_report,
        is_unverified_gateway_result,
    )

    if passed is None:
        if threshold is None:
            raise ValueError("either passed or threshold is required")
        passed = value >= threshold if higher_is_better else value <= threshold
    run = EvaluationRun.objects.create(
        system=system,
        suite=suite,
        metric=metric,
        value=value,
        threshold=threshold,
        passed=passed,
        ran_at=ran_at,
        details=details or {},
        triggered_by=getattr(actor, "username", "") or "",
        provenance=provenance,
    )
    entry = audit_record(
        action=AuditAction.EVALUATION_RECORDED,
        actor=actor,
        target=run,
        data={
            "system": str(system.pk),
            "suite": suite,
            "metric": metric,
            "value": value,
            "threshold": threshold,
            "passed": passed,
            "provenance": provenance,
        },
    )
    if is_unverified_gateway_result(suite=suite, provenance=provenance):
        # robust: the result is recorded whatever happens to the detection (the minute scan retries it).
        transaction.on_commit(
            partial(evaluation_run_unverified_report, run=run, recorded_entry_id=entry.pk), robust=True
        )
    return run
