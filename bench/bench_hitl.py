"""HITL benchmarks (issue 4), on PostgreSQL.

1. Bulk decide of 1,000 pending items through ``review_items_bulk_decide`` (scoping, checks, locks,
   guarded UPDATE, 1,000 Decision rows, 1,000 chained audit entries) — target ≤ 0.5 s; reported next to
   a bare ``UPDATE`` of the same number of rows, interleaved, as the same-run baseline.
2. Auto-assist throughput in one process (one worker) — target ≥ 2,000 items/s; baseline: reading the
   same items and writing the same number of AssistResult rows with no scoring.
3. Assist quality on generated decision histories (seeds 42, 7, 1234): agreement with held-out human
   decisions ≥ 90 %, ECE ≤ 0.05.
4. The plan's KPI: ``seed_backlog --pending 546``, then assist + an enabled approve policy + Clear Low
   Risk → pending < 50 with every high/critical item still pending.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from bench.harness import write_result

BULK_ITEMS = 1000
BULK_ROUNDS = 7


def _team_and_reviewer():
    from governance.choices import RiskClass, Role
    from governance.models import AISystem, Team, User

    team, _ = Team.objects.get_or_create(slug="bench-hitl", defaults={"name": "Bench HITL"})
    system, _ = AISystem.objects.get_or_create(
        name="bench-hitl-model", defaults={"team": team, "entity_type": "model", "risk_class": RiskClass.LIMITED}
    )
    reviewer, created = User.objects.get_or_create(username="bench-reviewer")
    if created:
        from django.contrib.auth.models import Group

        reviewer.groups.add(Group.objects.get(name=Role.REVIEWER))
        reviewer.teams.add(team)
    return team, system, reviewer


def _pending_items(system, count: int) -> list:
    from governance.choices import Severity
    from hitl.models import ReviewItem, ReviewType

    now = timezone.now()
    items = [
        ReviewItem(
            review_type=ReviewType.ALERT_TRIAGE,
            title=f"bench item {n}",
            system=system,
            severity=(Severity.LOW, Severity.MEDIUM)[n % 2],
            fingerprint=uuid.uuid4().hex,
            rule="threshold:data_quality",
            sla_due_at=now + timedelta(hours=24),
            context={"signal": "psi", "value": 0.12, "warning": 0.1, "critical": 0.25, "direction": "above"},
        )
        for n in range(count)
    ]
    return ReviewItem.objects.bulk_create(items)


def _bulk_decide() -> list[dict]:
    from hitl.services.triage import review_items_bulk_decide

    _, system, reviewer = _team_and_reviewer()
    ours, baseline = [], []
    for _ in range(BULK_ROUNDS):
        ids = [str(item.id) for item in _pending_items(system, BULK_ITEMS)]
        started = time.perf_counter()
        outcome = review_items_bulk_decide(user=reviewer, ids=ids, decision="approve", rationale="bench round")
        ours.append(time.perf_counter() - started)
        assert outcome.decided == BULK_ITEMS

        raw_ids = [item.id for item in _pending_items(system, BULK_ITEMS)]
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE review_queue SET status = 'approved', decision = 'approve', decided_at = now(), "
                "rationale = 'bench', decision_source = 'bulk' WHERE id = ANY(%s) AND status = 'pending'",
                [raw_ids],
            )
        baseline.append(time.perf_counter() - started)
    median, raw = statistics.median(ours), statistics.median(baseline)
    return [
        {
            "metric": "bulk decide 1,000 items (checks, locks, Decision rows, 1,000 audit entries)",
            "value": median,
            "unit": "s",
            "target": "≤ 0.5 s",
            "ok": median <= 0.5,
        },
        {"metric": "baseline: bare UPDATE of 1,000 review rows", "value": raw * 1000, "unit": "ms"},
        {"metric": "bulk decide vs bare UPDATE", "value": median / raw, "unit": "×"},
    ]


QUALITY_SEEDS = (42, 7, 1234)
THROUGHPUT_ITEMS = 10_000


def _wipe_review_tables() -> None:
    """Start a part from an empty review queue (the audit log is append-only and stays)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE review_queue, review_decisions, assist_results, review_spot_checks, assist_models, "
            "auto_approval_policies CASCADE"
        )


def _quality() -> list[dict]:
    from hitl.services.assist import assist_evaluate
    from hitl.services.backlog_seed import backlog_seed

    rows = []
    for seed in QUALITY_SEEDS:
        _wipe_review_tables()
        backlog_seed(pending=546, history=3000, seed=seed)
        report = assist_evaluate()
        rows += [
            {
                "metric": f"seed {seed}: agreement with held-out human decisions ({report.n_holdout} of "
                f"{report.n_train + report.n_holdout})",
                "value": report.agreement,
                "unit": "ratio",
                "target": "≥ 0.90",
                "ok": report.agreement >= 0.90,
            },
            {
                "metric": f"seed {seed}: expected calibration error",
                "value": report.ece,
                "unit": "ratio",
                "target": "≤ 0.05",
                "ok": report.ece <= 0.05,
            },
            {
                "metric": f"seed {seed}: rules-only agreement (for comparison)",
                "value": report.rules_agreement,
                "unit": "ratio",
            },  # fmt: skip
        ]
    return rows


def _baseline_chunk(ids: list) -> None:
    """Read the same rows the service reads and write the same number of AssistResult rows, no scoring."""
    from hitl.models import AssistResult, ReviewItem

    items = list(ReviewItem.objects.select_related("system", "source_alert").filter(pk__in=ids))
    AssistResult.objects.bulk_create(
        [
            AssistResult(
                item=item,
                summary="baseline",
                suggested_decision="approve",
                confidence=0.5,
                risk_score=50,
                reasoning="baseline",
                provider="baseline",
            )  # fmt: skip
            for item in items
        ]
    )


def _assist_throughput() -> list[dict]:
    from hitl.models import AssistResult, ReviewItem, ReviewStatus
    from hitl.services.assist import assist_model_train, review_items_assist
    from hitl.services.backlog_seed import backlog_seed

    _wipe_review_tables()
    backlog_seed(pending=THROUGHPUT_ITEMS, history=3000, seed=42)
    model = assist_model_train(actor="bench").model
    pending = list(
        ReviewItem.objects.filter(status=ReviewStatus.PENDING).order_by("created_at").values_list("id", flat=True)
    )
    chunks = [pending[i : i + 1000] for i in range(0, len(pending), 1000)]
    started = time.perf_counter()
    for chunk in chunks:
        review_items_assist(item_ids=chunk, limit=1000)
    ours = time.perf_counter() - started
    assisted = AssistResult.objects.count()
    started = time.perf_counter()
    for chunk in chunks:
        _baseline_chunk(chunk)
    baseline = time.perf_counter() - started
    return [
        {
            "metric": f"auto-assist throughput, one process, {assisted:,} items (model v{model.version})",
            "value": assisted / ours,
            "unit": "items/s",
            "target": "≥ 2,000 items/s",
            "ok": assisted / ours >= 2000,
        },
        {
            "metric": "baseline: read the items + insert the result rows, no scoring",
            "value": len(pending) / baseline,
            "unit": "items/s",
        },  # fmt: skip
        {"metric": "auto-assist time vs baseline", "value": ours / baseline, "unit": "×"},
    ]


def _backlog_kpi() -> list[dict]:
    from django.contrib.auth.models import Group

    from governance.choices import Role
    from governance.models import User
    from hitl.services.automation import ROUTINE_POLICY_NAME, backlog_triage_run, routine_policy_ensure
    from hitl.services.backlog_seed import backlog_seed

    _wipe_review_tables()
    backlog_seed(pending=546, history=3000, seed=42)
    from hitl.services.assist import assist_model_train

    assist_model_train(actor="bench")
    routine_policy_ensure(actor="bench")
    admin, created = User.objects.get_or_create(username="bench-admin")
    if created:
        admin.groups.add(Group.objects.get(name=Role.ADMIN))
    started = time.perf_counter()
    report = backlog_triage_run(user=admin, enable_policies=[ROUTINE_POLICY_NAME], clear_low_risk=True)
    elapsed = time.perf_counter() - started
    return [
        {"metric": "backlog before (seed_backlog --pending 546)", "value": report.before.pending, "unit": "items"},
        {
            "metric": "backlog after assist + routine policy + Clear Low Risk",
            "value": report.after.pending,
            "unit": "items",
            "target": "< 50",
            "ok": report.after.pending < 50,
        },
        {
            "metric": "high/critical items still pending for a human",
            "value": report.high_critical_pending,
            "unit": "items",
            "target": f"= {report.before.pending_by_severity['high'] + report.before.pending_by_severity['critical']}",
            "ok": report.high_critical_pending
            == report.before.pending_by_severity["high"] + report.before.pending_by_severity["critical"],
        },
        {
            "metric": "decided by the policy / by Clear Low Risk",
            "value": f"{report.auto_decided} / {report.cleared_low_risk}",
            "unit": "items",
        },  # fmt: skip
        {"metric": "wall time of the triage run", "value": elapsed, "unit": "s"},
    ]


def run() -> None:
    results = []
    for part in (_bulk_decide, _assist_throughput, _quality, _backlog_kpi):
        rows = part()
        for row in rows:
            print(f"  {row['metric']}: {row['value']} {row['unit']}")
        results.extend(rows)
    write_result(
        "hitl",
        title="HITL: bulk decide, auto-assist throughput and quality, the backlog KPI",
        results=results,
        notes=(
            "Bulk decide: `review_items_bulk_decide` with 1,000 ids of one reviewer's team (scoping, per-id "
            "checks, per-system and row locks, guarded UPDATE, 1,000 Decision rows, 1,000 chained audit entries "
            "by COPY), median of 7 rounds, each on fresh pending rows; baseline a bare UPDATE of 1,000 other "
            "rows in the same run. Assist: `review_items_assist` in chunks of 1,000 over 10,000 seeded pending "
            "items with a trained model (features incl. history GROUP BYs, rules, model, COPY of results, one "
            "UPDATE … FROM), one process; baseline reads the same rows and bulk-inserts the same number of "
            "result rows without scoring. Quality: `seed_backlog` histories of 3,000 human decisions per seed; "
            "the newest 20 % held out (`assist_eval`). KPI: `seed_backlog --pending 546` then "
            "`triage_backlog --enable-policy 'Routine low/medium alert triage' --clear-low-risk`."
        ),
    )
