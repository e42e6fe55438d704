"""Capability checks owned by the governance core (registered with the KPI service)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, PredictionType, RiskClass
from governance.models import (
    AISystem,
    AuditLog,
    AuditVerification,
    ControlAssessment,
    Deployment,
    EvaluationRun,
    Policy,
)
from governance.selectors_predictive import (
    latest_prediction_created_at,
    predictor_models_active,
    predictor_quality_problems,
)
from governance.services.endpoints import PUBLIC_ENDPOINTS, api_endpoints
from governance.services.kpis import (
    ENFORCED,
    NOT_ENFORCED,
    CapabilityStatus,
    Measurement,
    capability_check,
    kpi_provider,
)

ASSESSMENT_MAX_AGE = timedelta(days=365)
EVALUATION_MAX_AGE = timedelta(days=30)
AUDIT_VERIFICATION_MAX_AGE = timedelta(hours=2)


@capability_check("inventory")
def inventory_status() -> CapabilityStatus:
    systems = AISystem.objects.filter(is_active=True)
    count = systems.count()
    if not count:
        return CapabilityStatus(NOT_ENFORCED, "no active AI system is registered")
    teams = systems.values("team").distinct().count()
    return CapabilityStatus(ENFORCED, f"{count} active AI systems registered across {teams} teams")


@capability_check("risk_classification")
def risk_classification_status() -> CapabilityStatus:
    """Every system carries an EU AI Act tier and every high-risk one has a control assessment < 1 year old."""
    since = timezone.now() - ASSESSMENT_MAX_AGE
    recent = ControlAssessment.objects.filter(system=OuterRef("pk"), assessed_at__gte=since)
    high = AISystem.objects.filter(is_active=True, risk_class=RiskClass.HIGH)
    unassessed = list(high.filter(~Exists(recent)).values_list("name", flat=True)[:5])
    total = AISystem.objects.filter(is_active=True).count()
    if not total:
        return CapabilityStatus(NOT_ENFORCED, "no active AI system to classify")
    if unassessed:
        return CapabilityStatus(
            NOT_ENFORCED, f"high-risk systems without a current control assessment: {', '.join(unassessed)}"
        )
    return CapabilityStatus(ENFORCED, f"{total} systems classified; all {high.count()} high-risk systems assessed")


@capability_check("evaluation")
def evaluation_status() -> CapabilityStatus:
    """Every active high-risk system has an evaluation run in the last 30 days."""
    since = timezone.now() - EVALUATION_MAX_AGE
    recent = EvaluationRun.objects.filter(system=OuterRef("pk"), ran_at__gte=since)
    runs = EvaluationRun.objects.filter(ran_at__gte=since).count()
    if not runs:
        return CapabilityStatus(NOT_ENFORCED, "no evaluation run in the last 30 days")
    stale = list(
        AISystem.objects.filter(is_active=True, risk_class=RiskClass.HIGH)
        .filter(~Exists(recent))
        .values_list("name", flat=True)[:5]
    )
    if stale:
        return CapabilityStatus(NOT_ENFORCED, f"high-risk systems not evaluated in 30 days: {', '.join(stale)}")
    return CapabilityStatus(ENFORCED, f"{runs} evaluation results in the last 30 days")


@capability_check("audit_trail")
def audit_trail_status() -> CapabilityStatus:
    last = AuditVerification.objects.order_by("-created_at").first()
    if last is None:
        return CapabilityStatus(NOT_ENFORCED, "the audit chain has never been verified")
    if not last.ok:
        return CapabilityStatus(NOT_ENFORCED, f"last verification failed at seq={last.broken_seq}: {last.reason}")
    if last.created_at < timezone.now() - AUDIT_VERIFICATION_MAX_AGE:
        return CapabilityStatus(NOT_ENFORCED, f"last verification is older than 2 h ({last.created_at:%Y-%m-%d %H:%M})")
    return CapabilityStatus(
        ENFORCED, f"chain of {last.checked_rows} rows verified at {last.created_at:%Y-%m-%d %H:%M} UTC"
    )


@capability_check("access_control")
def access_control_status() -> CapabilityStatus:
    """Every API endpoint that is not public on purpose requires an authenticated caller with a role."""
    endpoints = [e for e in api_endpoints() if e.name not in PUBLIC_ENDPOINTS]
    open_endpoints = sorted({e.route for e in endpoints if not e.requires_authentication})
    if open_endpoints:
        return CapabilityStatus(NOT_ENFORCED, f"endpoints without authentication: {', '.join(open_endpoints[:5])}")
    return CapabilityStatus(ENFORCED, f"all {len(endpoints)} API endpoints require a JWT or session and a role")


@kpi_provider("rate_limit_coverage")
def rate_limit_coverage_kpi() -> Measurement:
    """Share of URL routes (health probes and the metrics scrape exempt) that pass the DB-backed limiter."""
    from governance.api.throttling import rate_limit_coverage

    limited, total, unlimited = rate_limit_coverage()
    share = limited / total if total else 0.0
    detail = f"{limited} of {total} routes limited through the rate_limits table"
    if unlimited:
        detail = f"not rate limited: {', '.join(unlimited[:5])}; " + detail
    return Measurement(
        value=round(share * 100, 1), display=f"{share:.0%} ({limited}/{total})", met=not unlimited, detail=detail
    )


@capability_check("policy_as_code")
def policy_as_code_status() -> CapabilityStatus:
    """At least one policy is in force (only validated versions can be), and the CI/CD gate applies it; the
    detail counts the gate's decisions and the deployments it did not allow in the last 30 days."""
    active = Policy.objects.filter(active_version__isnull=False).count()
    if not active:
        total = Policy.objects.count()
        return CapabilityStatus(NOT_ENFORCED, f"no policy is active ({total} stored, none activated)")
    since = timezone.now() - EVALUATION_MAX_AGE
    decisions = AuditLog.objects.filter(action=AuditAction.CICD_GATE_DECIDED, at__gte=since).count()
    circumvented = Deployment.objects.filter(deployed_at__gte=since, circumvention=True).count()
    return CapabilityStatus(
        ENFORCED,
        f"{active} active validated policies; {decisions} gate decisions in 30 days; "
        f"{circumvented} deployments the gate did not allow (each a security incident)",
    )


PREDICTION_MAX_AGE = timedelta(hours=1)  # four times the 15-minute prediction pass


@capability_check("predictive_governance")
def predictive_governance_status() -> CapabilityStatus:
    """Enforced while predictions are being produced (the newest is < 1 h old) and the active drift-risk
    model's measured quality meets ``governance.predictive.quality_floor`` (AUC at least, Brier at most)."""
    predictive = registry.get("governance.predictive")
    floor = predictive["quality_floor"]
    problems = []
    if not predictive["enabled"]:
        problems.append("predictive governance is disabled (governance.predictive.enabled)")
    latest = latest_prediction_created_at()
    if latest is None:
        problems.append("no prediction has been made yet")
    elif latest < timezone.now() - PREDICTION_MAX_AGE:
        problems.append(f"the newest prediction is older than 1 h ({latest:%Y-%m-%d %H:%M} UTC)")
    model = predictor_models_active().get(PredictionType.DRIFT_RISK)
    if model is None:
        problems.append("no active drift risk model")
    else:
        problems += predictor_quality_problems(model=model, floor=floor)
    if problems:
        return CapabilityStatus(NOT_ENFORCED, "; ".join(problems))
    return CapabilityStatus(
        ENFORCED,
        f"newest prediction {latest:%Y-%m-%d %H:%M} UTC; drift risk model v{model.version} AUC "
        f"{model.metrics['auc']:.3f} ≥ {floor['auc']}, Brier {model.metrics['brier']:.3f} ≤ {floor['brier']}",
    )
