"""Every runtime-tunable key of Vigil, declared once: category, default, description, schema.

The defaults here seed ``platform_config`` (data migrations call ``config.seeding``); from then on the
database is the source of truth and operators change values in the admin or through the API. A key
missing from the database falls back to its default here and the KPI "config centralized" drops.

Adding a key: declare it below, add ``config/schemas/<key>.json``, and add a data migration that calls
``config.seeding.seed_missing_keys`` (idempotent: inserts only keys that are not there yet).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from config.models import ConfigCategory

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SEVERITIES = ("critical", "high", "medium", "low", "info")
# The governance-bypass detectors (governance.services.bypass) and the security signal each reports as.
BYPASS_DETECTORS = (
    "invalid_jwt",
    "rate_limit_abuse",
    "identity_rotation",
    "direct_write",
    "unusual_pattern",
    "policy_circumvention",
)
BYPASS_SIGNALS = tuple(f"bypass_{detector}" for detector in BYPASS_DETECTORS)
# Self-monitoring (tasks.self_monitor): the platform's own queue health, as data_quality signals of vigil-platform.
SELF_MONITORING_SIGNALS = ("queue_depth", "outbox_lag_seconds", "beat_lag_seconds")

# A semantic check returns {"value.<path>": ["message", ...]} for what JSON Schema cannot express.
SemanticCheck = Callable[[Any], dict[str, list[str]]]


@dataclass(frozen=True)
class ConfigKey:
    key: str
    category: str
    default: Any
    description: str
    checks: tuple[SemanticCheck, ...] = field(default=())

    @property
    def schema(self) -> dict[str, Any]:
        return load_schema(self.key)


@cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text())


# --- semantic checks ------------------------------------------------------------------------------
def check_threshold_order(value: dict[str, Any]) -> dict[str, list[str]]:
    """Warning must be less severe than critical; ratios must lie in 0..1."""
    errors: dict[str, list[str]] = {}
    for signal, spec in value.items():
        warning, critical = spec["warning"], spec["critical"]
        if spec["direction"] == "above" and not warning < critical:
            errors[f"value.{signal}.warning"] = [
                f"direction is 'above', so warning ({warning}) must be below critical ({critical})"
            ]
        if spec["direction"] == "below" and not warning > critical:
            errors[f"value.{signal}.warning"] = [
                f"direction is 'below', so warning ({warning}) must be above critical ({critical})"
            ]
        if spec["unit"] == "ratio":
            for level in ("warning", "critical"):
                if not 0 <= spec[level] <= 1:
                    errors.setdefault(f"value.{signal}.{level}", []).append("a ratio must lie between 0 and 1")
    return errors


def check_severity_monotonic(value: dict[str, Any]) -> dict[str, list[str]]:
    """A more severe problem never gets a looser target than a less severe one."""
    errors: dict[str, list[str]] = {}
    for stricter, looser in zip(SEVERITIES, SEVERITIES[1:], strict=False):
        if value[stricter] > value[looser]:
            errors[f"value.{stricter}"] = [
                f"{stricter} ({value[stricter]}) must not be longer than {looser} ({value[looser]})"
            ]
    return errors


def check_escalation_steps_increase(value: dict[str, Any]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    minutes = [step["after_minutes"] for step in value["steps"]]
    for index in range(1, len(minutes)):
        if minutes[index] <= minutes[index - 1]:
            errors[f"value.steps.{index}.after_minutes"] = [
                f"steps must be in increasing order of after_minutes ({minutes[index]} ≤ {minutes[index - 1]})"
            ]
    return errors


def check_weights_sum_to_one(value: dict[str, float]) -> dict[str, list[str]]:
    total = sum(value.values())
    if abs(total - 1.0) > 1e-6:
        return {"value": [f"weights must sum to 1 (they sum to {total:g})"]}
    return {}


# --- declarations ---------------------------------------------------------------------------------
def check_bypass_levels(value: dict[str, Any]) -> dict[str, list[str]]:
    """A critical number of failed JWTs cannot be below the number that makes a detection."""
    invalid_jwt = value["invalid_jwt"]
    if invalid_jwt["critical_failures"] < invalid_jwt["min_failures"]:
        return {
            "value.invalid_jwt.critical_failures": [
                f"must be at least min_failures ({invalid_jwt['min_failures']}), got {invalid_jwt['critical_failures']}"
            ]
        }
    return {}


def check_retention_order(value: dict[str, Any]) -> dict[str, list[str]]:
    """Hourly rows outlive the raw windows they are rolled up from."""
    if value["hourly_days"] < value["raw_days"]:
        return {"value.hourly_days": [f"must be at least raw_days ({value['raw_days']}), got {value['hourly_days']}"]}
    return {}


def check_predictive_levels(value: dict[str, Any]) -> dict[str, list[str]]:
    """A proactive review needs a score at least as high as the alert threshold of its prediction type."""
    errors: dict[str, list[str]] = {}
    review = value["review_threshold"]
    for kind, threshold in value["alert_thresholds"].items():
        if review < threshold:
            errors.setdefault("value.review_threshold", []).append(
                f"must be at least alert_thresholds.{kind} ({threshold}), got {review}"
            )
    return errors


def _thresholds(category: str, signals: dict[str, dict[str, Any]]) -> ConfigKey:
    return ConfigKey(
        key=f"oversight.thresholds.{category}",
        category=ConfigCategory.THRESHOLDS,
        default=signals,
        description=f"Detection thresholds (warning and critical) for {category.replace('_', ' ')} signals.",
        checks=(check_threshold_order,),
    )


def _per_severity(key: str, category: str, default: dict[str, float], description: str) -> ConfigKey:
    return ConfigKey(
        key=key, category=category, default=default, description=description, checks=(check_severity_monotonic,)
    )


KEYS: tuple[ConfigKey, ...] = (
    _thresholds(
        "data_quality",
        {
            "null_rate": {"direction": "above", "warning": 0.05, "critical": 0.2, "unit": "ratio"},
            "schema_violations": {"direction": "above", "warning": 5, "critical": 50, "unit": "count"},
            "psi": {"direction": "above", "warning": 0.1, "critical": 0.25, "unit": "score"},
            "freshness_lag_minutes": {"direction": "above", "warning": 60, "critical": 360, "unit": "count"},
            "queue_depth": {
                "direction": "above",
                "warning": 1000,
                "critical": 10000,
                "unit": "count",
                "description": "Self-monitoring: messages waiting in the deepest Celery queue.",
            },
            "outbox_lag_seconds": {
                "direction": "above",
                "warning": 120,
                "critical": 600,
                "unit": "count",
                "description": "Self-monitoring: age in seconds of the oldest unprocessed event batch.",
            },
            "beat_lag_seconds": {
                "direction": "above",
                "warning": 300,
                "critical": 1800,
                "unit": "count",
                "description": "Self-monitoring: seconds the latest periodic task is overdue (beyond 3 intervals).",
            },
        },
    ),
    _thresholds(
        "model_perf",
        {
            "accuracy": {"direction": "below", "warning": 0.9, "critical": 0.8, "unit": "ratio"},
            "latency_p95_ms": {"direction": "above", "warning": 500, "critical": 2000, "unit": "ms"},
            "error_rate": {"direction": "above", "warning": 0.02, "critical": 0.1, "unit": "ratio"},
        },
    ),
    _thresholds(
        "fairness",
        {
            "dp_gap": {
                "direction": "above",
                "warning": 0.1,
                "critical": 0.2,
                "unit": "ratio",
                "description": "Demographic-parity gap between groups.",
            },
            "eo_gap": {
                "direction": "above",
                "warning": 0.1,
                "critical": 0.2,
                "unit": "ratio",
                "description": "Equalized-odds gap between groups.",
            },
        },
    ),
    _thresholds(
        "security",
        {
            "prompt_injection_score": {"direction": "above", "warning": 0.5, "critical": 0.85, "unit": "score"},
            "auth_failures": {"direction": "above", "warning": 10, "critical": 50, "unit": "count"},
            # Governance-bypass detections (governance.services.bypass): value 1 per detection, so every
            # detection crosses the critical level and the threshold rule raises its own alert.
            **{
                signal: {"direction": "above", "warning": 0, "critical": 0.5, "unit": "count"}
                for signal in BYPASS_SIGNALS
            },
        },
    ),
    _thresholds(
        "compliance",
        {
            "missing_documentation": {"direction": "above", "warning": 0.5, "critical": 2, "unit": "count"},
            "retention_violations": {"direction": "above", "warning": 0.5, "critical": 5, "unit": "count"},
        },
    ),
    ConfigKey(
        key="oversight.correlation_window_seconds",
        category=ConfigCategory.THRESHOLDS,
        default=300,
        description="Signals on one system inside this window are correlated into one compound alert.",
    ),
    ConfigKey(
        key="oversight.alert_quiet_period_seconds",
        category=ConfigCategory.THRESHOLDS,
        default=900,
        description="A firing alert with no new breach for this long resolves; a later breach is a new occurrence.",
    ),
    ConfigKey(
        key="oversight.rate_rule",
        category=ConfigCategory.THRESHOLDS,
        default={"min_breaches": 3, "window_seconds": 300},
        description=(
            "Rate rules fire when one signal of one system crosses its warning level this many times "
            "inside the window (a sustained drift); fewer breaches keep the alert pending."
        ),
    ),
    ConfigKey(
        key="oversight.absence_window_seconds",
        category=ConfigCategory.THRESHOLDS,
        default=600,
        description="A system that has sent heartbeats and sends none for this long raises a heartbeat-absence alert.",
    ),
    ConfigKey(
        key="oversight.compound_min_signals",
        category=ConfigCategory.THRESHOLDS,
        default=2,
        description="Distinct signals breaching their warning level on one system inside the correlation window "
        "that make a compound alert.",
    ),
    _per_severity(
        "slo.mttd_seconds",
        ConfigCategory.SLO,
        {"critical": 300, "high": 900, "medium": 3600, "low": 14400, "info": 86400},
        "Mean-time-to-detect target per severity (seconds).",
    ),
    _per_severity(
        "slo.incident_ack_minutes",
        ConfigCategory.SLO,
        {"critical": 5, "high": 15, "medium": 60, "low": 240, "info": 1440},
        "Time to acknowledge an incident before its SLA is breached (minutes).",
    ),
    _per_severity(
        "slo.incident_resolve_minutes",
        ConfigCategory.SLO,
        {"critical": 60, "high": 240, "medium": 1440, "low": 4320, "info": 10080},
        "Time to resolve an incident (the MTTR target) per severity (minutes).",
    ),
    _per_severity(
        "hitl.sla_hours",
        ConfigCategory.SLO,
        {"critical": 1, "high": 4, "medium": 24, "low": 72, "info": 168},
        "HITL review SLA per severity (hours until a pending item is overdue).",
    ),
    ConfigKey(
        key="incidents.escalation_policy",
        category=ConfigCategory.ESCALATION,
        default={
            "steps": [
                {"after_minutes": 0, "notify": ["assignee", "team"], "channels": ["email"]},
                {
                    "after_minutes": 15,
                    "notify": ["team", "role:governance_lead"],
                    "reassign_to": "team_lead",
                    "channels": ["email", "webhook"],
                },
                {
                    "after_minutes": 45,
                    "notify": ["role:admin"],
                    "reassign_to": "role:governance_lead",
                    "channels": ["email", "webhook"],
                },
            ],
            "repeat_last_every_minutes": 60,
        },
        description="Escalation steps taken after an incident breaches its SLA, in order.",
        checks=(check_escalation_steps_increase,),
    ),
    ConfigKey(
        key="incidents.auto_close",
        category=ConfigCategory.POLICY,
        default={"days": 7, "severities": ["low", "info"]},
        description="Stale incidents of these severities with no activity for this many days are auto-closed.",
    ),
    ConfigKey(
        key="incidents.resolution_reasons",
        category=ConfigCategory.POLICY,
        default=["Fixed", "False positive", "Duplicate", "Accepted risk", "Mitigated upstream", "Stale, no impact"],
        description="The reasons offered when resolving incidents, singly or in bulk.",
    ),
    ConfigKey(
        key="incidents.notifications",
        category=ConfigCategory.ESCALATION,
        default={"webhook_urls": [], "allow_private_targets": False, "allowed_hosts": [], "timeout_seconds": 5},
        description=(
            "Where escalation notices go besides email: webhook URLs (signed with HMAC-SHA256 using "
            "VIGIL_WEBHOOK_SECRET). Private, loopback and link-local targets are refused unless "
            "allow_private_targets is set or the host is listed in allowed_hosts."
        ),
    ),
    ConfigKey(
        key="incidents.regulatory",
        category=ConfigCategory.POLICY,
        default={"standard_days": 15, "widespread_days": 2, "death_days": 10, "warn_before_hours": [72, 24, 6]},
        description=(
            "EU AI Act Art. 73 reporting deadlines for serious incidents on high-risk systems (days from "
            "awareness), and how long before a deadline the owners are warned again."
        ),
    ),
    ConfigKey(
        key="incidents.follow_ups",
        category=ConfigCategory.POLICY,
        default={"default_days": 14, "escalate_overdue_after_days": 3},
        description="Follow-ups scheduled on resolve fall due after default_days; overdue ones escalate later.",
    ),
    ConfigKey(
        key="ratelimit.limits",
        category=ConfigCategory.POLICY,
        default={
            "default": {"limit": 600, "window_seconds": 60},
            "auth": {"limit": 30, "window_seconds": 60},
            "events_ingest": {"limit": 120, "window_seconds": 60},
            "gateway": {"limit": 120, "window_seconds": 60},
            "cicd_gate": {"limit": 60, "window_seconds": 60},
            "eval": {"limit": 30, "window_seconds": 60},
            "admin_write": {"limit": 300, "window_seconds": 60},
        },
        description="Requests per window per caller, by endpoint group; 'default' covers every other endpoint.",
    ),
    ConfigKey(
        key="hitl.auto_approval",
        category=ConfigCategory.POLICY,
        default={"confidence_floor": 0.9, "max_risk_score": 30, "spot_check_rate": 0.05, "agreement_floor": 0.9},
        description="Guard rails for automatic review decisions: confidence floor, risk ceiling, spot-check sampling.",
    ),
    ConfigKey(
        key="hitl.assist_weights",
        category=ConfigCategory.ENGINE_WEIGHTS,
        default={"severity": 0.35, "signal_strength": 0.25, "risk_class": 0.2, "history": 0.2},
        description="Weights of the auto-assist rule factors in the risk score (sum to 1).",
        checks=(check_weights_sum_to_one,),
    ),
    ConfigKey(
        key="hitl.automation_bias",
        category=ConfigCategory.POLICY,
        default={"min_spot_checks": 20, "window_days": 30},
        description=(
            "Automation-bias monitor: a policy is judged on its spot checks of the last window_days once it "
            "has at least min_spot_checks verdicts; below hitl.auto_approval.agreement_floor it disables itself."
        ),
    ),
    ConfigKey(
        key="hitl.assist_model",
        category=ConfigCategory.ENGINE_WEIGHTS,
        default={"min_training_decisions": 100, "holdout_fraction": 0.2, "history_days": 365},
        description=(
            "Training of the auto-assist model on past human decisions: the fewest decisions worth learning "
            "from, the share held out to measure agreement and calibration, and how far back to look."
        ),
    ),
    ConfigKey(
        key="governance.bypass",
        category=ConfigCategory.THRESHOLDS,
        default={
            "invalid_jwt": {"enabled": True, "min_failures": 10, "critical_failures": 50},
            "rate_limit_abuse": {"enabled": True, "min_denied": 10},
            "identity_rotation": {"enabled": True, "min_identities": 5},
            "direct_write": {"enabled": True, "grace_seconds": 60, "retention_days": 7},
            "unusual_pattern": {
                "enabled": True,
                "baseline_days": 7,
                "min_history_hours": 24,
                "volume_sigma": 4.0,
                "min_requests": 100,
                "new_group_share": 0.2,
                "off_hours_min_requests": 20,
            },
            "policy_circumvention": {"enabled": True},
        },
        description=(
            "Governance-bypass detectors: each can be switched off, and each has the counts that make a "
            "detection (failed JWTs per address per hour, refused requests per window, identities per "
            "address, the grace before an unaudited write counts, the per-caller baseline's sensitivity)."
        ),
        checks=(check_bypass_levels,),
    ),
    ConfigKey(
        key="observability.retention",
        category=ConfigCategory.SLO,
        default={"raw_days": 14, "hourly_days": 400},
        description=(
            "Function metrics: per-minute windows are kept raw_days, then rolled up into hourly rows, which are "
            "kept hourly_days."
        ),
        checks=(check_retention_order,),
    ),
    ConfigKey(
        key="governance.predictive",
        category=ConfigCategory.THRESHOLDS,
        default={
            "enabled": True,
            "timeframe_hours": 24,
            "min_history_hours": 24,
            "alert_thresholds": {"drift_risk": 0.3, "compliance_risk": 0.3, "incident_probability": 0.3},
            "review_threshold": 0.8,
            "quality_floor": {"auc": 0.85, "brier": 0.2},
            "retrain_min_labelled": 200,
            "retention_days": 90,
        },
        description=(
            "Predictive governance: the forecast horizon, the least history an AI system needs before it gets a "
            "prediction, the score from which a prediction is an alert (badge) per type, the score from which it "
            "opens a proactive low-severity review, the measured quality (AUC at least, Brier at most) below "
            "which capability 12 counts as not enforced, the labelled history needed before retraining on real "
            "data, and how long predictions are kept."
        ),
        checks=(check_predictive_levels,),
    ),
)

KEYS_BY_NAME: dict[str, ConfigKey] = {k.key: k for k in KEYS}
