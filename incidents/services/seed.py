"""``manage.py seed_incidents --open 218``: the plan's open-incident backlog on the demo estate.

What it creates, on the demo estate's systems (``governance.services.demo_seed`` makes them if missing),
all open (status open, acknowledged or mitigated):

* a few critical incidents (about 2 %, opened in the last day) and some high ones (about 8 %, opened
  in the last days), most already acknowledged or mitigated; a share of them carries a complete RCA,
  some a partial one (root cause only), the rest none — so a backlog drain must leave those open;
* many medium, low and info incidents aged from hours to weeks; about half of the low and info ones
  are stale (no activity for more than a week: the lifecycle engine's auto-close candidates) and a
  fifth of those have an open follow-up (which keeps them from being auto-closed);
* a handful opened minutes to a few hours ago of every lower severity (still being looked at).

Each incident is opened the way intake opens one (``lifecycle.lifecycle_fields``: SLA timers, the
escalation snapshot and token, the RCA template of its type), gets an ``opened`` timeline entry (and
``acknowledged``/``mitigated`` ones when it got that far) and an ``incident.opened`` audit entry.

Idempotent by plan: the same ``seed`` always plans the same incidents (severities in a shuffled order, so
any slice of the plan is a mix); each seeded incident is tagged on its ``opened`` timeline entry, and a
re-run creates only the part of the plan beyond the incidents seeded so far (whatever their status
since) — the same arguments create nothing, a larger count tops up. Fingerprints derive from each
incident's place in the plan, so they never collide with one another.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance.choices import AuditAction, EntityType, RiskClass, Role, Severity
from governance.models import AISystem, User
from governance.services.audit import AuditEntry, audit_record_many
from governance.services.demo_seed import demo_estate_systems, demo_persona
from incidents.models import (
    FollowUp,
    FollowUpStatus,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentStatus,
    IncidentType,
    RCATemplate,
)
from incidents.services import rca
from incidents.services.lifecycle import escalation_policy_snapshot, first_escalation_at, lifecycle_fields
from oversight.services.detection import alert_fingerprint

SEED_TAG = "seed_incidents"  # key of the seeded incidents' ``opened`` timeline entry (its place in the plan)
SEED_ACTOR = "system:seed_incidents"
RESPONDER_USERNAME = "seed-responder"

# The plan's 218 open incidents: 5 critical and 17 high, 30 % medium, 33 % low, the rest info.
CRITICAL_SHARE, HIGH_SHARE = 5 / 218, 17 / 218
MEDIUM_SHARE, LOW_SHARE = 0.30, 0.33
RCA_COMPLETE_SHARE, RCA_PARTIAL_SHARE = 0.4, 0.3  # of the high and critical incidents
STALE_SHARE = 0.5  # of the low and info incidents: untouched for more than a week
FOLLOW_UP_EVERY = 5  # every fifth stale incident has an open follow-up
RECENT_EVERY = 25  # every 25th other medium/low/info incident opened minutes to a few hours ago
STALE_AGE = (timedelta(days=8), timedelta(days=35))
RECENT_AGE = (timedelta(minutes=5), timedelta(hours=3))
# How old the rest are, by severity: critical ones get attention fast, info ones linger.
AGES = {
    Severity.CRITICAL: (timedelta(minutes=20), timedelta(hours=20)),
    Severity.HIGH: (timedelta(hours=2), timedelta(days=4)),
    Severity.MEDIUM: (timedelta(hours=6), timedelta(days=21)),
    Severity.LOW: (timedelta(hours=6), timedelta(days=6)),
    Severity.INFO: (timedelta(hours=6), timedelta(days=6)),
}
# (open, acknowledged, mitigated) weights by severity.
STATUS_WEIGHTS = {
    Severity.CRITICAL: (1, 3, 2),
    Severity.HIGH: (2, 4, 2),
    Severity.MEDIUM: (5, 4, 1),
    Severity.LOW: (7, 3, 0.5),
    Severity.INFO: (8, 2, 0),
}
STATUSES = (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED, IncidentStatus.MITIGATED)

# What goes wrong, by the kind of system: (incident type, rule, signal).
SOURCES = {
    EntityType.MODEL: [
        (IncidentType.MODEL_PERFORMANCE, "threshold:model_perf", "accuracy"),
        (IncidentType.MODEL_PERFORMANCE, "rate:model_perf", "latency_p95_ms"),
        (IncidentType.FAIRNESS, "threshold:fairness", "dp_gap"),
        (IncidentType.DATA_QUALITY, "rate:data_quality", "psi"),
        (IncidentType.AVAILABILITY, "absence:heartbeat", "heartbeat"),
    ],
    EntityType.SYSTEM: [
        (IncidentType.SECURITY, "threshold:security", "prompt_injection_score"),
        (IncidentType.SECURITY, "rate:security", "auth_failures"),
        (IncidentType.COMPLIANCE, "threshold:compliance", "missing_documentation"),
        (IncidentType.HUMAN_OVERSIGHT, "review:escalated", ""),
        (IncidentType.AVAILABILITY, "absence:heartbeat", "heartbeat"),
    ],
    EntityType.DATASET: [
        (IncidentType.DATA_QUALITY, "threshold:data_quality", "null_rate"),
        (IncidentType.DATA_QUALITY, "rate:data_quality", "schema_violations"),
        (IncidentType.DATA_QUALITY, "rate:data_quality", "freshness_lag_minutes"),
        (IncidentType.COMPLIANCE, "threshold:compliance", "retention_violations"),
    ],
}
RCA_TEXTS = {
    "root_cause": "Upstream change shipped without the contract check; the monitor caught the drift it caused.",
    "impact": "Decisions on the affected segment for the incident window; no harm to persons identified.",
    "corrective_actions": "Rolled back the change, added the contract check to CI, follow-up to backfill.",
    "affected_data": "Feature tables of the affected day (partition listed in the ticket).",
    "model_version": "The serving version at the time, rolled back to the previous one.",
    "affected_groups": "Applicants of the under-represented segment; gap measured and mitigated.",
    "attack_vector": "Crafted prompts through the public chat endpoint; no data exposed.",
    "obligation": "Record-keeping (Art. 12) and the internal documentation policy.",
}
FOLLOW_UP_TITLES = ("Add a regression check for this signal", "Review the alert threshold with the owners")


@dataclass
class PlannedIncident:
    index: int
    system: AISystem
    severity: str
    status: str
    incident_type: str
    rule: str
    signal: str
    opened_at: datetime
    acknowledged_at: datetime | None = None
    mitigated_at: datetime | None = None
    rca: str = ""  # "complete", "partial" or ""
    stale: bool = False
    follow_up: bool = False

    @property
    def fingerprint(self) -> str:
        labels = {"rule": self.rule, "system": str(self.system.id), "occurrence": str(self.index)}
        if self.signal:
            labels["signal"] = self.signal
        return alert_fingerprint(labels)

    @property
    def last_activity_at(self) -> datetime:
        return self.mitigated_at or self.acknowledged_at or self.opened_at

    @property
    def title(self) -> str:
        what = self.signal or "escalated review"
        return f"[{self.severity}] {self.rule}: {what} on {self.system.name}"


@dataclass
class IncidentSeedReport:
    created: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    stale: int = 0
    follow_ups: int = 0
    rca_complete: int = 0
    systems: int = 0
    admin_password: str | None = None


def _seeded_random(key: str) -> random.Random:
    return random.Random(key)  # noqa: S311 (reproducible demo data, not a secret)


def _age(rng: random.Random, span: tuple[timedelta, timedelta]) -> timedelta:
    low, high = span
    return low + (high - low) * rng.random()


def _severities(count: int) -> list[str]:
    n_critical, n_high = round(count * CRITICAL_SHARE), round(count * HIGH_SHARE)
    n_medium, n_low = round(count * MEDIUM_SHARE), round(count * LOW_SHARE)
    n_low = min(n_low, max(0, count - n_critical - n_high - n_medium))
    n_info = max(0, count - n_critical - n_high - n_medium - n_low)
    return (
        [Severity.CRITICAL] * n_critical
        + [Severity.HIGH] * n_high
        + [Severity.MEDIUM] * n_medium
        + [Severity.LOW] * n_low
        + [Severity.INFO] * n_info
    )[:count]


def plan_incidents(*, systems: list[AISystem], count: int, seed: int, now: datetime) -> list[PlannedIncident]:
    """The open incidents of the plan, in a stable order (see the module docstring)."""
    rng = _seeded_random(f"seed_incidents:{seed}")
    systems = sorted(systems, key=lambda s: s.name)
    high_risk = [s for s in systems if s.risk_class == RiskClass.HIGH] or systems
    planned: list[PlannedIncident] = []
    stale_count = lower_count = 0
    severities = _severities(count)
    _seeded_random(f"seed_incidents:{seed}:order").shuffle(severities)
    for index, severity in enumerate(severities):
        # Critical and high incidents land on the high-risk systems, the rest anywhere.
        system = rng.choice(high_risk if severity in (Severity.CRITICAL, Severity.HIGH) else systems)
        incident_type, rule, signal = rng.choice(SOURCES.get(system.entity_type, SOURCES[EntityType.SYSTEM]))
        lower = severity in (Severity.MEDIUM, Severity.LOW, Severity.INFO)
        stale = severity in (Severity.LOW, Severity.INFO) and rng.random() < STALE_SHARE
        recent = False
        if lower and not stale:
            recent = lower_count % RECENT_EVERY == RECENT_EVERY - 1
            lower_count += 1
        if stale:
            age = _age(rng, STALE_AGE)
        elif recent:
            age = _age(rng, RECENT_AGE)
        else:
            age = _age(rng, AGES[severity])
        opened_at = now - age
        status = rng.choices(STATUSES, weights=STATUS_WEIGHTS[severity])[0]
        item = PlannedIncident(
            index=index,
            system=system,
            severity=severity,
            status=status,
            incident_type=incident_type,
            rule=rule,
            signal=signal,
            opened_at=opened_at,
            stale=stale,
        )
        if status in (IncidentStatus.ACKNOWLEDGED, IncidentStatus.MITIGATED):
            # Acknowledged within a few minutes to a couple of hours; a stale one was touched once, early.
            item.acknowledged_at = opened_at + min(age * 0.1, timedelta(minutes=rng.uniform(3, 120)))
        if status == IncidentStatus.MITIGATED:
            item.mitigated_at = item.acknowledged_at + (now - item.acknowledged_at) * rng.uniform(0.1, 0.4)
        if stale:
            item.follow_up = stale_count % FOLLOW_UP_EVERY == 0
            stale_count += 1
        if severity in (Severity.CRITICAL, Severity.HIGH):
            draw = rng.random()
            if draw < RCA_COMPLETE_SHARE:
                item.rca = "complete"
            elif draw < RCA_COMPLETE_SHARE + RCA_PARTIAL_SHARE:
                item.rca = "partial"
        planned.append(item)
    return planned


# --- writing ----------------------------------------------------------------------------------------
def _rca_values(planned: PlannedIncident, required: list[str]) -> dict[str, str]:
    if planned.rca == "complete":
        return {name: RCA_TEXTS.get(name, f"{name.replace('_', ' ').capitalize()}: documented.") for name in required}
    if planned.rca == "partial":
        return {"root_cause": RCA_TEXTS["root_cause"]}
    return {}


def _incident(
    planned: PlannedIncident, *, responder: User, snapshot: dict[str, Any], template_ids, required_by_template
) -> Incident:
    fields = lifecycle_fields(
        severity=planned.severity,
        incident_type=planned.incident_type,
        opened_at=planned.opened_at,
        snapshot=snapshot,
        template_ids=template_ids,
    )
    if planned.acknowledged_at is not None:
        # As ``incident_acknowledge`` leaves it: escalation now watches the resolve target.
        fields["next_escalation_at"] = max(
            first_escalation_at(breach_at=fields["resolve_due_at"], snapshot=snapshot), planned.acknowledged_at
        )
    fields["last_activity_at"] = planned.last_activity_at
    required = required_by_template.get(fields["rca_template_id"], list(rca.DEFAULT_REQUIRED_FIELDS))
    values = _rca_values(planned, required)
    return Incident(
        title=planned.title[:300],
        system=planned.system,
        team_id=planned.system.team_id,
        severity=planned.severity,
        status=planned.status,
        fingerprint=planned.fingerprint,
        opened_at=planned.opened_at,
        acknowledged_at=planned.acknowledged_at,
        mitigated_at=planned.mitigated_at,
        assignee=responder if planned.acknowledged_at else None,
        description=(
            f"Rule {planned.rule} fired on {planned.system.name}"
            f"{f' ({planned.signal})' if planned.signal else ''}; seeded demo incident."
        ),
        rca=values,
        rca_completed_at=planned.last_activity_at if planned.rca == "complete" else None,
        **fields,
    )


def _timeline(planned: PlannedIncident, incident: Incident, *, responder: User) -> list[IncidentEvent]:
    events = [
        IncidentEvent(
            incident=incident,
            kind=IncidentEventKind.OPENED,
            at=planned.opened_at,
            actor="oversight",
            message=f"Opened from alert {planned.rule} ({planned.severity}).",
            data={SEED_TAG: planned.index},
        )
    ]
    if planned.acknowledged_at is not None:
        events.append(
            IncidentEvent(
                incident=incident,
                kind=IncidentEventKind.ACKNOWLEDGED,
                at=planned.acknowledged_at,
                actor=responder.username,
                message="Acknowledged.",
            )
        )
    if planned.mitigated_at is not None:
        events.append(
            IncidentEvent(
                incident=incident,
                kind=IncidentEventKind.MITIGATED,
                at=planned.mitigated_at,
                actor=responder.username,
                message="Mitigated: impact contained while the cause is investigated.",
            )
        )
    if planned.rca:
        events.append(
            IncidentEvent(
                incident=incident,
                kind=IncidentEventKind.RCA_UPDATED,
                at=planned.last_activity_at,
                actor=responder.username,
                message="RCA complete." if planned.rca == "complete" else "RCA updated (root_cause).",
                data={"fields": sorted(incident.rca), "complete": planned.rca == "complete"},
            )
        )
    return events


def incidents_seed(*, count: int = 218, seed: int = 42, now: datetime | None = None) -> IncidentSeedReport:
    """Create the planned open incidents not created yet (see the module docstring), in one transaction.

    Bulk inserts (chunks of 1,000); one ``incident.opened`` audit entry per incident created (data
    ``seeded: true``) through ``audit_record_many``; follow-ups are created open, owned by the responder.
    """
    now = now or timezone.now()
    report = IncidentSeedReport()
    with transaction.atomic():
        systems, report.admin_password = demo_estate_systems(actor=SEED_ACTOR)
        report.systems = len(systems)
        responder = demo_persona(
            username=RESPONDER_USERNAME, role=Role.SECURITY, systems=systems, email="seed-responder@example.com"
        )
        existing = IncidentEvent.objects.filter(kind=IncidentEventKind.OPENED, data__has_key=SEED_TAG).count()
        planned = plan_incidents(systems=systems, count=count, seed=seed, now=now)[existing:]
        snapshot, template_ids = escalation_policy_snapshot(), rca.template_ids()
        required_by_template = dict(RCATemplate.objects.values_list("id", "required_fields"))
        incidents = [
            _incident(
                p, responder=responder, snapshot=snapshot, template_ids=template_ids,
                required_by_template=required_by_template,
            )
            for p in planned
        ]  # fmt: skip
        Incident.objects.bulk_create(incidents, batch_size=1000)
        # created_at/updated_at are automatic: backdate them so the rows carry their real ages.
        for incident, p in zip(incidents, planned, strict=True):
            incident.created_at, incident.updated_at = p.opened_at, p.last_activity_at
        Incident.objects.bulk_update(incidents, ["created_at", "updated_at"], batch_size=500)
        timeline = [event for incident, p in zip(incidents, planned, strict=True) for event in
                    _timeline(p, incident, responder=responder)]  # fmt: skip
        IncidentEvent.objects.bulk_create(timeline, batch_size=1000)
        for event in timeline:
            event.created_at = event.updated_at = event.at
        IncidentEvent.objects.bulk_update(timeline, ["created_at", "updated_at"], batch_size=500)
        follow_ups = [
            FollowUp(
                incident=incident,
                title=FOLLOW_UP_TITLES[p.index % len(FOLLOW_UP_TITLES)],
                owner=responder,
                due_date=(now + timedelta(days=7 + p.index % 14)).date(),
                status=FollowUpStatus.OPEN,
            )
            for incident, p in zip(incidents, planned, strict=True)
            if p.follow_up
        ]
        FollowUp.objects.bulk_create(follow_ups, batch_size=1000)
        audit_record_many(
            entries=[
                AuditEntry(
                    action=AuditAction.INCIDENT_OPENED,
                    actor=SEED_ACTOR,
                    target=incident,
                    data={
                        "severity": incident.severity,
                        "fingerprint": incident.fingerprint,
                        "system": str(incident.system_id),
                        "opened_at": incident.opened_at,
                        "seeded": True,
                    },
                )
                for incident in incidents
            ]
        )
        report.created = len(incidents)
        report.by_severity = dict(Counter(incident.severity for incident in incidents))
        report.by_status = dict(Counter(incident.status for incident in incidents))
        report.stale = sum(1 for p in planned if p.stale)
        report.follow_ups = len(follow_ups)
        report.rca_complete = sum(1 for p in planned if p.rca == "complete")
    return report


def incidents_record_history(*, incidents: list[dict]) -> int:
    """Store incidents that opened and resolved in the past (a synthetic history with known onsets, for
    the predictive-governance backtest and training): each dict names ``system`` (an AISystem),
    ``title``, ``severity``, ``opened_at`` and ``resolved_at``. Written resolved, with no escalation, no
    notification and no timeline (they are not happening now). Returns the incidents stored."""
    rows = [
        Incident(
            title=item["title"][:300],
            system=item["system"],
            team_id=item["system"].team_id,
            severity=item["severity"],
            status=IncidentStatus.RESOLVED,
            opened_at=item["opened_at"],
            acknowledged_at=item["opened_at"],
            resolved_at=item["resolved_at"],
            last_activity_at=item["resolved_at"],
            resolution_reason="historical",
            description="Historical incident (synthetic history).",
        )
        for item in incidents
    ]
    Incident.objects.bulk_create(rows, batch_size=1000)
    return len(rows)
