"""``manage.py seed_backlog``: a realistic review backlog with a history of human decisions.

What it creates, on the demo estate's systems (``governance.services.demo_seed`` makes them if missing):

* ``history`` decided items spread over the past eight weeks — every kind of review, every severity —
  each decided by a reviewer (``decision_source=human`` and a ``Decision`` row ``source=human``);
* ``pending`` items queued over the last three days: about 1.5 % critical and 5.5 % high (8 and 30 of
  546), which always need a person, a handful of medium items that need judgement, and the rest routine
  medium/low/info items from recurring sources (same fingerprint) that people have approved before.

The decisions come from a hidden, deterministic "human policy" over the same evidence the assist engine
observes — severity, how far the signal went past its thresholds, the system's risk class, the kind of
review — plus a little noise (:data:`DECISION_NOISE` of decisions are a different call, and near the
escalation line people split). So a model of the history can reach about 95 % agreement, and routine
items get confident, low-risk suggestions that policies and "Clear Low Risk" may act on.

Idempotent by plan: the same ``seed`` always plans the same items; items are tagged
(``context.seed_backlog`` = ``history``/``pending``) and a re-run creates only the planned items not
created yet — the same arguments create nothing, a larger count tops up.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, EntityType, RiskClass, Role, Severity
from governance.models import AISystem, User
from governance.services.audit import AuditEntry, audit_record, audit_record_many
from governance.services.demo_seed import demo_estate_systems, demo_persona
from hitl.assist.features import detection_thresholds, signal_strength
from hitl.models import (
    STATUS_FOR_DECISION,
    Decision,
    DecisionSource,
    ReviewDecision,
    ReviewItem,
    ReviewStatus,
    ReviewType,
)
from oversight.services.detection import alert_fingerprint

SEED_TAG = "seed_backlog"
HISTORY_TAG, PENDING_TAG = "history", "pending"
SEED_ACTOR = "system:seed_backlog"
REVIEWER_USERNAME = "seed-reviewer"
HISTORY_SPAN = (timedelta(days=56), timedelta(days=4))  # decided items were queued between these ages
PENDING_SPAN = timedelta(days=3)
CRITICAL_SHARE, HIGH_SHARE = 8 / 546, 30 / 546
JUDGEMENT_ITEMS = 4  # medium items whose evidence needs a person (not routine)

# The hidden human policy. Gravity = severity + 1.5 × signal strength + system risk; people escalate
# above ESCALATION_LINE (splitting within a few hundredths of it), refuse exceptions and data access
# on high-risk systems, refuse a retrained model worse than its critical level, approve the rest.
SEVERITY_GRAVITY = {"critical": 3.0, "high": 2.0, "medium": 1.0, "low": 0.4, "info": 0.0}
RISK_GRAVITY = {"prohibited": 1.5, "high": 1.0, "limited": 0.4, "minimal": 0.0}
STRENGTH_GRAVITY = 1.5
ESCALATION_LINE = 3.0
ESCALATION_SPREAD = 0.06
RETRAIN_REFUSED_AT = 0.55
DECISION_NOISE = 0.03

RATIONALES = {
    ReviewDecision.APPROVE: "Within tolerance for this system; no action needed.",
    ReviewDecision.REJECT: "Not acceptable as requested; refused.",
    ReviewDecision.ESCALATE: "Serious enough for an incident; escalating.",
}
CATEGORY_SIGNALS = {
    "data_quality": ("null_rate", "psi", "schema_violations", "freshness_lag_minutes"),
    "model_perf": ("accuracy", "latency_p95_ms", "error_rate"),
    "fairness": ("dp_gap", "eo_gap"),
    "security": ("prompt_injection_score", "auth_failures"),
    "compliance": ("missing_documentation", "retention_violations"),
}
ENTITY_CATEGORIES = {
    EntityType.MODEL: ("model_perf", "fairness", "data_quality"),
    EntityType.SYSTEM: ("security", "compliance", "model_perf"),
    EntityType.DATASET: ("data_quality", "compliance", "data_quality"),
}
POLICIES = ("data-retention", "human-oversight", "model-documentation")


@dataclass(frozen=True)
class Source:
    """A recurring thing that needs judgement on one system: one fingerprint."""

    system: AISystem
    kind: str  # rate | threshold | compound | absence | model_change | policy_exception | data_access
    review_type: str
    rule: str
    category: str
    signal: str
    severity: str  # typical severity
    routine: bool  # people approve it as a matter of course: the bulk of the pending queue
    weight: float  # how often it recurs in the history

    @property
    def fingerprint(self) -> str:
        if self.review_type == ReviewType.ALERT_TRIAGE:
            labels = {"rule": self.rule, "system": str(self.system.id)}
            if self.signal and self.kind != "compound":
                labels["signal"] = self.signal
            return alert_fingerprint(labels)
        return hashlib.sha256(f"{self.review_type}:{self.system.id}:{self.rule}".encode()).hexdigest()


@dataclass
class PlannedItem:
    source: Source
    severity: str
    context: dict[str, Any]
    title: str
    created_at: datetime
    decision: str = ""
    decided_at: datetime | None = None


@dataclass
class BacklogSeedReport:
    created_pending: int = 0
    created_history: int = 0
    pending_by_severity: dict[str, int] = field(default_factory=dict)
    history_by_decision: dict[str, int] = field(default_factory=dict)
    systems: int = 0
    admin_password: str | None = None


def human_decision(*, severity: str, review_type: str, risk_class: str, strength: float, rng: random.Random) -> str:
    """The hidden policy the seeded reviewers follow (plus noise); see the module docstring."""
    gravity = SEVERITY_GRAVITY[severity] + STRENGTH_GRAVITY * strength + RISK_GRAVITY[risk_class]
    p_escalate = 1 / (1 + math.exp(-(gravity - ESCALATION_LINE) / ESCALATION_SPREAD))
    if rng.random() < p_escalate:
        decision = ReviewDecision.ESCALATE
    elif _refused(review_type=review_type, risk_class=risk_class, strength=strength):
        decision = ReviewDecision.REJECT
    else:
        decision = ReviewDecision.APPROVE
    if rng.random() < DECISION_NOISE:
        decision = rng.choice([d for d in ReviewDecision.values if d != decision])
    return str(decision)


def _refused(*, review_type: str, risk_class: str, strength: float) -> bool:
    exception_or_access = review_type in (ReviewType.POLICY_EXCEPTION, ReviewType.DATA_ACCESS)
    if exception_or_access and risk_class in (RiskClass.HIGH, RiskClass.PROHIBITED):
        return True
    return review_type == ReviewType.MODEL_CHANGE and strength >= RETRAIN_REFUSED_AT


def _seeded_random(key: str) -> random.Random:
    return random.Random(key)  # noqa: S311 (reproducible demo data, not a secret)


# --- planning ---------------------------------------------------------------------------------------
def plan_sources(systems: list[AISystem], rng: random.Random) -> list[Source]:
    """Sources per system: three drifting signals, a threshold breach, a compound, heartbeat loss,
    model changes (models), policy exceptions and data-access requests."""
    sources = []
    for system in systems:
        low_risk = system.risk_class in (RiskClass.LIMITED, RiskClass.MINIMAL)
        categories = ENTITY_CATEGORIES.get(system.entity_type, ENTITY_CATEGORIES[EntityType.SYSTEM])
        for index, category in enumerate(categories):
            signal = CATEGORY_SIGNALS[category][index % len(CATEGORY_SIGNALS[category])]
            # Drift on a low-risk system is routine medium/low noise; on a high-risk one only info is.
            severity = (Severity.MEDIUM, Severity.LOW, Severity.INFO)[index] if low_risk else Severity.INFO
            sources.append(
                Source(system, "rate", ReviewType.ALERT_TRIAGE, f"rate:{category}", category, signal, severity, True, 3)
            )
            if not low_risk:
                sources.append(
                    Source(
                        system,
                        "rate",
                        ReviewType.ALERT_TRIAGE,
                        f"rate:{category}",
                        category,
                        signal,
                        Severity.MEDIUM,
                        False,
                        1.5,
                    )
                )
        category = categories[0]
        signal = CATEGORY_SIGNALS[category][1 % len(CATEGORY_SIGNALS[category])]
        sources += [
            Source(
                system,
                "threshold",
                ReviewType.ALERT_TRIAGE,
                f"threshold:{category}",
                category,
                signal,
                Severity.HIGH,
                False,
                1.5,
            ),
            Source(system, "compound", ReviewType.ALERT_TRIAGE, "compound", "", "", Severity.HIGH, False, 0.7),
            Source(
                system,
                "absence",
                ReviewType.ALERT_TRIAGE,
                "absence:heartbeat",
                "model_perf",
                "heartbeat",
                Severity.HIGH,
                False,
                0.4,
            ),
            Source(
                system,
                "policy_exception",
                ReviewType.POLICY_EXCEPTION,
                f"policy_exception:{rng.choice(POLICIES)}",
                "compliance",
                "requested_days",
                Severity.LOW,
                low_risk,
                1.2,
            ),
            Source(
                system,
                "data_access",
                ReviewType.DATA_ACCESS,
                f"data_access:{system.name}",
                "data_quality",
                "pii_fields",
                Severity.INFO if low_risk else Severity.LOW,
                low_risk,
                1.2,
            ),
        ]
        if system.entity_type == EntityType.MODEL:
            sources.append(
                Source(
                    system,
                    "model_change",
                    ReviewType.MODEL_CHANGE,
                    "model_change:retrain",
                    "model_perf",
                    "accuracy",
                    Severity.LOW,
                    low_risk,
                    1.2,
                )
            )
    return sources


def _shifted(severity: str, rng: random.Random, *, choices: tuple[str, ...], keep: float) -> str:
    return severity if rng.random() < keep else rng.choice(choices)


def draw_item(source: Source, *, at: datetime, rng: random.Random, thresholds, routine: bool) -> PlannedItem:
    """One occurrence of ``source`` queued at ``at``; ``routine`` keeps its evidence in the approve zone."""
    spec = thresholds.get(source.category, {}).get(source.signal, {})
    system = source.system
    context: dict[str, Any] = {"rule": source.rule, "signal": source.signal, "category": source.category}
    first_event_at = (at - timedelta(minutes=rng.randint(1, 30))).isoformat()
    severity = source.severity
    if source.kind == "rate":
        breaches = rng.choice((3, 3, 4) if routine else (3, 4, 4, 5, 6))
        context |= {
            "first_event_at": first_event_at,
            "count": breaches,
            "breaches": breaches,
            "min_breaches": 3,
            "window_seconds": 300,
            "warning": spec["warning"],
            "direction": spec["direction"],
            "unit": spec["unit"],
        }
        if not routine:
            severity = _shifted(severity, rng, choices=(Severity.MEDIUM, Severity.LOW, Severity.INFO), keep=0.85)
        title = f"Triage {source.rule}: {source.signal} on {system.name}"
    elif source.kind == "threshold":
        span = abs(spec["critical"] - spec["warning"])
        sign = 1 if spec["direction"] == "above" else -1
        value = spec["critical"] + sign * span * rng.uniform(0.05, 0.8)
        if spec["unit"] == "ratio":
            value = min(1.0, max(0.0, value))
        context |= {
            "first_event_at": first_event_at,
            "count": 1,
            "value": round(value, 4),
            "critical": spec["critical"],
            "direction": spec["direction"],
            "unit": spec["unit"],
        }
        severity = Severity.CRITICAL if rng.random() < 0.25 else Severity.HIGH
        title = f"Triage {source.rule}: {source.signal} on {system.name}"
    elif source.kind == "compound":
        picked = rng.sample([s for signals in CATEGORY_SIGNALS.values() for s in signals], rng.choice((2, 2, 3)))
        context = {
            "rule": "compound",
            "signal": "",
            "category": "",
            "first_event_at": first_event_at,
            "count": len(picked),
            "signals": sorted(picked),
            "window_seconds": 300,
        }
        title = f"Triage compound: {len(picked)} signals on {system.name}"
    elif source.kind == "absence":
        context |= {"first_event_at": first_event_at, "last_heartbeat_at": first_event_at, "window_seconds": 600}
        title = f"Triage absence:heartbeat on {system.name}"
    elif source.kind == "model_change":
        accuracy = rng.uniform(0.86, 0.97) if routine or rng.random() < 0.8 else rng.uniform(0.72, 0.8)
        context |= {
            "change": "retrain",
            "value": round(accuracy, 4),
            "warning": 0.9,
            "critical": 0.8,
            "direction": "below",
            "unit": "ratio",
        }
        if not routine:
            severity = _shifted(severity, rng, choices=(Severity.LOW, Severity.MEDIUM), keep=0.8)
        title = f"Model change: retrain of {system.name} (holdout accuracy {accuracy:.2f})"
    elif source.kind == "policy_exception":
        days = rng.randint(7, 45) if routine else rng.choice((rng.randint(7, 60), rng.randint(30, 120)))
        context |= {
            "policy": source.rule.split(":", 1)[1],
            "value": days,
            "warning": 30,
            "critical": 90,
            "direction": "above",
            "unit": "days",
            "justification": "Vendor migration in progress.",
        }
        if not routine:
            severity = _shifted(severity, rng, choices=(Severity.LOW, Severity.MEDIUM), keep=0.8)
        title = f"Policy exception: {context['policy']} for {system.name} ({days} days)"
    else:  # data_access
        pii = rng.choice((0, 0, 1)) if routine else rng.choice((0, 1, 2, 3, 6))
        context |= {
            "dataset": system.name,
            "value": pii,
            "warning": 0.5,
            "critical": 5,
            "direction": "above",
            "unit": "count",
            "purpose": "Model evaluation",
        }
        title = f"Data access: {system.name} extract with {pii} PII field(s)"
    return PlannedItem(source=source, severity=str(severity), context=context, title=title[:300], created_at=at)


def plan_backlog(
    *, systems: list[AISystem], pending: int, history: int, seed: int, now: datetime
) -> tuple[list[PlannedItem], list[PlannedItem]]:
    """The full plan (history oldest first, then pending) for ``seed``: the same every time."""
    rng = _seeded_random(str(seed))
    thresholds = detection_thresholds()
    sources = plan_sources(sorted(systems, key=lambda s: s.name), rng)
    sla_hours = registry.get("hitl.sla_hours")

    history_rng = _seeded_random(f"{seed}:history")
    oldest, newest = HISTORY_SPAN
    span = (oldest - newest).total_seconds()
    times = sorted(now - oldest + timedelta(seconds=history_rng.uniform(0, span)) for _ in range(history))
    weights = [s.weight for s in sources]
    decided = []
    for at in times:
        source = history_rng.choices(sources, weights=weights)[0]
        item = draw_item(source, at=at, rng=history_rng, thresholds=thresholds, routine=False)
        strength = signal_strength(item.context, thresholds=thresholds).value
        item.decision = human_decision(
            severity=item.severity,
            review_type=source.review_type,
            risk_class=source.system.risk_class,
            strength=strength,
            rng=history_rng,
        )
        # Decided within the SLA, and never after "now" (an info item's SLA is a week).
        window = min(timedelta(hours=sla_hours[item.severity]), now - at - timedelta(hours=1))
        item.decided_at = at + timedelta(seconds=history_rng.uniform(0.05, 0.9) * window.total_seconds())
        decided.append(item)

    pending_rng = _seeded_random(f"{seed}:pending")
    n_critical, n_high = round(pending * CRITICAL_SHARE), round(pending * HIGH_SHARE)
    n_judgement = min(JUDGEMENT_ITEMS, max(0, pending - n_critical - n_high))
    serious = [s for s in sources if s.kind in ("threshold", "compound", "absence")]
    high_risk_threshold = [s for s in serious if s.kind == "threshold" and s.system.risk_class == RiskClass.HIGH]
    judgement = [s for s in sources if not s.routine and s.kind in ("policy_exception", "model_change", "rate")]
    routine = [s for s in sources if s.routine]
    queued = []
    roles = _spread_roles({"critical": n_critical, "high": n_high, "judgement": n_judgement}, total=pending)
    for role in roles:
        at = now - timedelta(seconds=pending_rng.uniform(60, PENDING_SPAN.total_seconds()))
        if role == "critical":
            item = draw_item(
                pending_rng.choice(high_risk_threshold or serious),
                at=at,
                rng=pending_rng,
                thresholds=thresholds,
                routine=False,
            )
            item.severity = Severity.CRITICAL
        elif role == "high":
            item = draw_item(pending_rng.choice(serious), at=at, rng=pending_rng, thresholds=thresholds, routine=False)
            item.severity = Severity.HIGH
        elif role == "judgement":
            item = draw_item(
                pending_rng.choice(judgement), at=at, rng=pending_rng, thresholds=thresholds, routine=False
            )
            item.severity = Severity.MEDIUM
        else:
            source = pending_rng.choices(routine, weights=[s.weight for s in routine])[0]
            item = draw_item(source, at=at, rng=pending_rng, thresholds=thresholds, routine=True)
        queued.append(item)
    return decided, queued


def _spread_roles(counts: dict[str, int], *, total: int) -> list[str]:
    """``total`` roles with exactly ``counts[role]`` of each named role (the rest ``routine``), spread evenly
    over the sequence rather than front-loaded: every stretch of it, including the tail a top-up creates
    on a database that already holds the start of the plan, carries its share of serious items."""
    counts = {**counts, "routine": max(0, total - sum(counts.values()))}
    placed = sorted(
        ((j + 0.5) / n, order, role)
        for order, (role, n) in enumerate(counts.items())
        for j in range(n)
    )  # fmt: skip
    return [role for _, _, role in placed][:total]


# --- writing ----------------------------------------------------------------------------------------
def _row(planned: PlannedItem, *, tag: str, reviewer: User, sla_hours) -> ReviewItem:
    source = planned.source
    decided = bool(planned.decision)
    return ReviewItem(
        review_type=source.review_type,
        title=planned.title,
        system=source.system,
        severity=planned.severity,
        fingerprint=source.fingerprint,
        rule=source.rule[:100],
        status=STATUS_FOR_DECISION[ReviewDecision(planned.decision)] if decided else ReviewStatus.PENDING,
        sla_due_at=planned.created_at + timedelta(hours=sla_hours[planned.severity]),
        decision=planned.decision,
        decided_by=reviewer if decided else None,
        decided_at=planned.decided_at if decided else None,
        rationale=RATIONALES[ReviewDecision(planned.decision)] if decided else "",
        decision_source=DecisionSource.HUMAN if decided else "",
        context={**planned.context, SEED_TAG: tag},
    )


def backlog_seed(
    *, pending: int = 546, history: int = 3000, seed: int = 42, now: datetime | None = None
) -> BacklogSeedReport:
    """Create the planned backlog items not created yet (see the module docstring); all in one transaction.

    Audits one ``review.created`` entry per pending item created and one summary ``review.decided``
    entry for the history created.
    """
    now = now or timezone.now()
    report = BacklogSeedReport()
    with transaction.atomic():
        systems, report.admin_password = demo_estate_systems(actor=SEED_ACTOR)
        report.systems = len(systems)
        reviewer = demo_persona(
            username=REVIEWER_USERNAME, role=Role.REVIEWER, systems=systems, email="seed-reviewer@example.com"
        )
        sla_hours = registry.get("hitl.sla_hours")
        existing = Counter(
            ReviewItem.objects.filter(**{f"context__{SEED_TAG}__in": [HISTORY_TAG, PENDING_TAG]}).values_list(
                f"context__{SEED_TAG}", flat=True
            )
        )
        decided, queued = plan_backlog(systems=systems, pending=pending, history=history, seed=seed, now=now)
        new_history = decided[existing[HISTORY_TAG] :]
        new_pending = queued[existing[PENDING_TAG] :]
        rows = [_row(p, tag=HISTORY_TAG, reviewer=reviewer, sla_hours=sla_hours) for p in new_history]
        rows += [_row(p, tag=PENDING_TAG, reviewer=reviewer, sla_hours=sla_hours) for p in new_pending]
        ReviewItem.objects.bulk_create(rows, batch_size=1000)
        # created_at is auto_now_add: backdate it in a second statement so the queue has real ages.
        for row, planned in zip(rows, [*new_history, *new_pending], strict=True):
            row.created_at = planned.created_at
        ReviewItem.objects.bulk_update(rows, ["created_at"], batch_size=500)
        history_rows = rows[: len(new_history)]
        Decision.objects.bulk_create(
            [
                Decision(
                    item=row,
                    decision=row.decision,
                    source=DecisionSource.HUMAN,
                    actor=reviewer,
                    rationale=row.rationale,
                    decided_at=row.decided_at,
                )
                for row in history_rows
            ],
            batch_size=1000,
        )
        pending_rows = rows[len(new_history) :]
        audit_record_many(
            entries=[
                AuditEntry(
                    action=AuditAction.REVIEW_CREATED,
                    actor=SEED_ACTOR,
                    target=row,
                    data={"severity": row.severity, "sla_due_at": row.sla_due_at, "seeded": True},
                )
                for row in pending_rows
            ]
        )
        report.created_history = len(history_rows)
        report.created_pending = len(pending_rows)
        report.history_by_decision = dict(Counter(row.decision for row in history_rows))
        report.pending_by_severity = dict(Counter(row.severity for row in pending_rows))
        if history_rows:
            audit_record(
                action=AuditAction.REVIEW_DECIDED,
                actor=SEED_ACTOR,
                object_type=ReviewItem._meta.label_lower,
                data={
                    "seeded_history": len(history_rows),
                    "by_decision": report.history_by_decision,
                    "decided_by": reviewer.username,
                    "seed": seed,
                },
            )
    return report
