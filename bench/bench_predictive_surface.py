"""Predictive-governance surface benchmark: server time of the admin home page (with its "Predicted risk"
block and predicted-vs-actual panel), an AI system's page, ``GET /api/v1/predictions?latest=true`` and
``GET /api/v1/predictions/quality``, over 14 days of 15-minute predictions for 100 AI systems × 3 types
(403,200 rows, bulk insert, the older ones matured), plus the badge query alone.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from datetime import timedelta

from django.db import connection
from django.test import Client
from django.utils import timezone

from bench.harness import write_result

SYSTEMS = 100
DAYS = 14
PASSES_PER_DAY = 96  # every 15 minutes
ROUNDS = 7
TARGET_MS = 300


def _seed(now) -> int:
    from governance.choices import EntityType, PredictionOutcome, PredictionType, PredictorSource
    from governance.models import AISystem, PredictiveGovernance, PredictorModel, Team

    rng = random.Random(9)
    team = Team.objects.create(name="Bench predictive", slug=f"bench-predictive-{uuid.uuid4().hex[:6]}")
    systems = AISystem.objects.bulk_create(
        [
            AISystem(name=f"bench-predict-{n:03d}", entity_type=EntityType.MODEL, team=team, risk_class="limited")
            for n in range(SYSTEMS)
        ]
    )
    models = {
        kind: PredictorModel.objects.create(
            prediction_type=kind,
            version=1,
            source=PredictorSource.SYNTHETIC,
            trained_at=now,
            metrics={"auc": 0.9, "brier": 0.12, "precision_at_threshold": 0.7},
            is_active=True,
        )
        for kind in PredictionType.values
    }
    first = now - timedelta(days=DAYS)
    passes = DAYS * PASSES_PER_DAY
    total = 0
    for step in range(passes):
        as_of = first + timedelta(minutes=15 * step)
        matured = as_of < now - timedelta(hours=24)
        rows = []
        for system in systems:
            for kind in PredictionType.values:
                score = rng.random() ** 2
                above = score >= 0.5
                occurred = rng.random() < (0.7 if above else 0.1)
                rows.append(
                    PredictiveGovernance(
                        id=uuid.uuid4(),
                        system=system,
                        entity_type=EntityType.MODEL,
                        prediction_type=kind,
                        risk_score=score,
                        confidence=0.6 + 0.3 * rng.random(),
                        predicted_timeframe_hours=24,
                        factors=[
                            {
                                "feature": "psi_slope_6h",
                                "label": "PSI trend over 6 h",
                                "value": 0.04,
                                "contribution": 1.2,
                            },
                            {"feature": "psi_last", "label": "Latest PSI", "value": 0.18, "contribution": 0.7},
                            {"feature": "acc_delta", "label": "Accuracy change", "value": -0.03, "contribution": 0.3},
                        ],
                        as_of=as_of,
                        model=models[kind],
                        threshold=0.5,
                        above_threshold=above,
                        outcome=(PredictionOutcome.OCCURRED if occurred else PredictionOutcome.NOT_OCCURRED)
                        if matured
                        else PredictionOutcome.PENDING,
                    )
                )
        PredictiveGovernance.objects.bulk_create(rows, batch_size=5000)
        total += len(rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE predictive_governance")
    return total


def _median_ms(func) -> float:
    func()  # warm
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        func()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def run() -> None:
    from django.contrib.auth.models import Group

    from governance.choices import Role
    from governance.models import AISystem, User
    from governance.selectors_predictive import predicted_versus_actual, prediction_badges
    from governance.services.kpis import kpi_report

    now = timezone.now()
    started = time.perf_counter()
    rows = _seed(now)
    seed_s = time.perf_counter() - started
    admin = User.objects.create_user(username=f"bench-admin-{uuid.uuid4().hex[:6]}", password="x" * 20)
    admin.groups.add(Group.objects.get(name=Role.ADMIN))
    client = Client()
    client.force_login(admin)
    system = AISystem.objects.filter(name__startswith="bench-predict-").order_by("name").first()

    def get(url):
        def call():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            return response

        return call

    home = _median_ms(get("/admin/"))
    system_page = _median_ms(get(f"/admin/governance/aisystem/{system.pk}/change/"))
    latest = _median_ms(get("/api/v1/predictions?latest=true&page_size=500"))
    quality = _median_ms(get("/api/v1/predictions/quality"))
    scorecard = _median_ms(kpi_report)
    badges = _median_ms(lambda: prediction_badges(user=admin))
    panel = _median_ms(lambda: predicted_versus_actual(user=admin))
    badge_count = len(prediction_badges(user=admin))
    results = [
        {"metric": "predictions seeded", "value": rows, "unit": "rows"},
        {"metric": "seed time", "value": round(seed_s, 1), "unit": "s"},
        {"metric": "badges shown (latest per system and type, above threshold)", "value": badge_count, "unit": ""},
        {"metric": "admin home page (KPI scorecard + predicted risk + predicted vs actual), p50", "value": home,
         "unit": "ms"},
        {"metric": "of which the KPI scorecard (kpi_report), p50", "value": scorecard, "unit": "ms"},
        {"metric": "AI system page with its predictions, p50", "value": system_page, "unit": "ms",
         "target": f"< {TARGET_MS}", "ok": system_page < TARGET_MS},
        {"metric": "GET /api/v1/predictions?latest=true (300 rows), p50", "value": latest, "unit": "ms",
         "target": f"< {TARGET_MS}", "ok": latest < TARGET_MS},
        {"metric": "GET /api/v1/predictions/quality, p50", "value": quality, "unit": "ms",
         "target": f"< {TARGET_MS}", "ok": quality < TARGET_MS},
        {"metric": "of which the badges (latest per system and type), p50", "value": badges, "unit": "ms"},
        {"metric": "of which predicted vs actual (last 7 days, 201,600 rows), p50", "value": panel, "unit": "ms"},
    ]  # fmt: skip
    write_result(
        "predictive_surface",
        title="Predictive governance surface (badges, predicted vs actual, predictions API)",
        results=results,
        notes=(
            f"{SYSTEMS} AI systems × 3 prediction types × {PASSES_PER_DAY} passes/day × {DAYS} days; the admin "
            f"sees every team. Median of {ROUNDS} requests through the Django test client (server time, no "
            "network). Shared 2-core machine: see the load average when comparing runs."
        ),
    )
    for row in results:
        print(f"  {row['metric']}: {row['value']} {row['unit']}")
