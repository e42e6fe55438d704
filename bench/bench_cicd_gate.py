"""CI/CD gate benchmark (issue 7): decision p95 ≤ 50 ms on PostgreSQL.

The estate is realistic rather than empty: 200 AI systems, 100,000 telemetry events over the last 7 days
(10 signals), 2,000 evaluation runs, 2,000 incidents and 2,000 pending reviews spread over the systems,
and three active policies in scope of the gated system (the shipped clean example — 14 rules over
metrics, signals with windows up to 24 h and percentiles, attributes — plus two smaller ones). Each
decision evaluates every policy on the facts of now, checks incidents, reviews and the latest
evaluations, and appends its audit entry. Baseline in the same run, interleaved: the audit append alone
(``audit_record`` of the same data), the one write every decision must make.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import timedelta
from pathlib import Path

from django.db import connection
from django.utils import timezone

from bench.harness import write_result

SYSTEMS = 200
EVENTS = 100_000
RUNS = 2_000
INCIDENTS = 2_000
REVIEWS = 2_000
DECISIONS = 300
TARGET_P95_MS = 50.0
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "policies" / "clean.yaml"
SIGNALS = [
    ("psi", "data_quality"), ("null_rate", "data_quality"), ("error_rate", "model_perf"),
    ("latency_p95_ms", "model_perf"), ("dp_gap", "fairness"), ("eo_gap", "fairness"),
    ("prompt_injection_score", "security"), ("auth_failures", "security"),
    ("retention_violations", "compliance"), ("accuracy", "model_perf"),
]  # fmt: skip


def _estate():
    from django.contrib.auth.models import Group

    from governance.choices import RiskClass, Role
    from governance.models import AISystem, EvaluationRun, Team, User

    team, _ = Team.objects.get_or_create(slug="fraud-ml", defaults={"name": "Fraud ML"})
    lead, created = User.objects.get_or_create(username="bench-gate-lead", defaults={"email": "lead@example.com"})
    if created:
        lead.groups.add(Group.objects.get(name=Role.GOVERNANCE_LEAD))
        lead.teams.add(team)
    pipeline, created = User.objects.get_or_create(
        username="bench-gate-ci", defaults={"email": "ci@example.com", "is_service_account": True}
    )
    if created:
        pipeline.groups.add(Group.objects.get(name=Role.CICD))
        pipeline.teams.add(team)
    systems = [
        AISystem(
            name=f"bench-gate-{n:03d}",
            team=team,
            entity_type="model",
            risk_class=RiskClass.HIGH if n % 2 == 0 else RiskClass.LIMITED,
        )  # fmt: skip
        for n in range(SYSTEMS)
    ]
    AISystem.objects.bulk_create(systems)
    now = timezone.now()
    rng = random.Random(7)
    runs = [
        EvaluationRun(
            system=systems[n % SYSTEMS],
            suite=rng.choice(["accuracy", "robustness", "holdout"]),
            metric=rng.choice(["exact_match", "consistency"]),
            value=rng.uniform(0.75, 0.99),
            threshold=0.8,
            passed=True,
            ran_at=now - timedelta(hours=rng.uniform(0, 24 * 30)),
            provenance="gateway",
        )  # fmt: skip
        for n in range(RUNS)
    ]
    EvaluationRun.objects.bulk_create(runs, batch_size=1000)
    ids = [str(system.pk) for system in systems]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO events_raw (event_id, system_id, category, severity, signal, value, occurred_at,
                                    received_at, attributes, batch_id, processed_at)
            SELECT gen_random_uuid(), (%(ids)s::uuid[])[1 + n %% %(systems)s], (%(categories)s::text[])[1 + n %% 10],
                   'info', (%(signals)s::text[])[1 + n %% 10], random(), %(now)s - interval '7 days' * random(),
                   %(now)s, '{}'::jsonb, gen_random_uuid(), %(now)s
            FROM generate_series(1, %(count)s) AS n
            """,
            {"ids": ids, "systems": SYSTEMS, "categories": [c for _, c in SIGNALS],
             "signals": [s for s, _ in SIGNALS], "now": now, "count": EVENTS},
        )  # fmt: skip
    return team, lead, pipeline, systems


def _open_work(systems) -> None:
    """Incidents (none critical on the gated system) and pending reviews (none high on it)."""
    from hitl.models import ReviewItem
    from incidents.models import Incident

    now = timezone.now()
    incidents = [
        Incident(
            title=f"bench gate incident {n}",
            system=systems[1 + n % (SYSTEMS - 1)],
            team=systems[0].team,
            severity=["critical", "high", "medium", "low"][n % 4],
            status="open",
            fingerprint=f"bench-gate-{n}",
            opened_at=now,
            sla_due_at=now + timedelta(hours=4),
            resolve_due_at=now + timedelta(days=1),
            last_activity_at=now,
            incident_type="data_quality",
        )  # fmt: skip
        for n in range(INCIDENTS)
    ]
    Incident.objects.bulk_create(incidents, batch_size=1000)
    reviews = [
        ReviewItem(
            review_type="alert_triage",
            title=f"bench gate review {n}",
            system=systems[n % SYSTEMS],
            severity="medium" if n % SYSTEMS == 0 else ["high", "medium", "low"][n % 3],
            status="pending",
            sla_due_at=now + timedelta(hours=8),
        )  # fmt: skip
        for n in range(REVIEWS)
    ]
    ReviewItem.objects.bulk_create(reviews, batch_size=1000)


def _policies(lead) -> None:
    import yaml

    from governance.services.policies import policy_create, policy_version_activate

    text = EXAMPLE.read_text()
    document = yaml.safe_load(text)
    document["metadata"].pop("owner_team", None)
    versions = [policy_create(text=yaml.safe_dump(document), actor=lead)]
    for key, action in (("bench-latency", "require_review"), ("bench-drift", "deny")):
        small = {"apiVersion": "vigil/v1", "kind": "Policy", "metadata": {"id": key, "name": key},
                 "spec": {"default_action": "allow", "rules": [
                     {"id": f"{key}-rule", "category": "model_perf", "severity": "high", "action": action,
                      "when": [{"signal": "latency_p95_ms", "aggregate": "p99", "window": "1h", "op": ">",
                                "value": 10_000, "unit": "ms"}]}]}}  # fmt: skip
        versions.append(policy_create(document=small, actor=lead))
    for version in versions:
        policy_version_activate(version=version, actor=lead)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run() -> None:
    from governance.choices import AuditAction
    from governance.services.audit import audit_record
    from governance.services.cicd_gate import cicd_gate_decide

    _team, lead, pipeline, systems = _estate()
    _open_work(systems)
    _policies(lead)
    gated = systems[0]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    decisions: list[float] = []
    appends: list[float] = []
    outcome = None
    for n in range(DECISIONS):
        started = time.perf_counter()
        outcome = cicd_gate_decide(caller=pipeline, system=gated, artifact=f"registry/model@sha256:{n:064x}")
        decisions.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        audit_record(action=AuditAction.CICD_GATE_DECIDED, actor=pipeline, target=gated,
                     data={"artifact": f"baseline-{n}", "decision": outcome.decision, "reasons": outcome.reasons,
                           "policies": outcome.policies})  # fmt: skip
        appends.append((time.perf_counter() - started) * 1000)
    decisions, appends = decisions[20:], appends[20:]  # warm-up: connection, caches, plans
    p50, p95 = statistics.median(decisions), _percentile(decisions, 0.95)
    base_p50 = statistics.median(appends)
    results = [
        {"metric": "gate decision p50", "value": round(p50, 2), "unit": "ms"},
        {
            "metric": "gate decision p95",
            "value": round(p95, 2),
            "unit": "ms",
            "target": f"≤ {TARGET_P95_MS:g}",
            "ok": p95 <= TARGET_P95_MS,
        },  # fmt: skip
        {"metric": "baseline: audit append p50 (same run)", "value": round(base_p50, 2), "unit": "ms"},
        {"metric": "decision / audit append (p50)", "value": round(p50 / base_p50, 1), "unit": "×"},
        {"metric": "policies evaluated per decision", "value": len(outcome.policies), "unit": ""},
    ]
    write_result(
        "cicd_gate",
        title="CI/CD gate: one decision (3 policies, facts of now, incidents, reviews, evaluations, audit)",
        results=results,
        notes=f"{SYSTEMS} systems, {EVENTS:,} events over 7 days, {RUNS:,} evaluation runs, {INCIDENTS:,} open "
        f"incidents and {REVIEWS:,} pending reviews in the estate; {DECISIONS - 20} timed decisions after 20 "
        f"warm-up ones; last decision: {outcome.decision} ({len(outcome.reasons)} reasons).",
    )
    for row in results:
        print(f"  {row['metric']:<45} {row['value']} {row['unit']}")
