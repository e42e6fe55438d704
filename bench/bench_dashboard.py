"""Function dashboard benchmark: server time of the admin page for 7 days × 50 functions of minute windows.

Seeds ``function_metrics`` with one row per function per minute for 7 days (504,000 rows, realistic
histograms and a few errors) through the flush's upsert, which also keeps the hour summaries
(``function_metrics_hourly``, 8,400 rows) the 24-hour and 7-day ranges read, then times the whole admin view (``GET
/admin/tasks/functionmetric/dashboard/?range=7d`` through the Django test client: query, merge,
SVG geometry and template) and, separately, the service ``function_dashboard`` alone.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from datetime import timedelta

from django.db import connection
from django.test import Client
from django.utils import timezone

from bench.harness import write_result

FUNCTIONS = 50
DAYS = 7
TARGET_MS = 300
ROUNDS = 7


def _seed(now) -> int:
    """Minute windows for every function, written through the flush's own upsert, so the hour summaries
    hold exactly what a week of flushes would have left in them."""
    from tasks.metrics import BUCKET_KEYS, WindowAggregate
    from tasks.models import FunctionHourSummary, FunctionKind, FunctionMetric
    from tasks.services import function_metrics_upsert

    FunctionMetric.objects.all().delete()
    FunctionHourSummary.objects.all().delete()
    first = (now - timedelta(days=DAYS)).replace(second=0, microsecond=0)
    minutes = DAYS * 24 * 60
    total = 0
    for function in range(FUNCTIONS):
        name = f"bench.function_{function:02d}"
        kind = FunctionKind.TASK if function % 2 else FunctionKind.ENDPOINT
        aggregates = []
        for minute in range(minutes):
            calls = 5 + (function + minute) % 20
            errors = 1 if (minute + function) % 97 == 0 else 0
            histogram = {"5": calls // 2, "25": calls - calls // 2 - 1, "250": 1}
            aggregates.append(
                WindowAggregate(
                    name,
                    kind,
                    first + timedelta(minutes=minute),
                    60,
                    invocations=calls,
                    errors=errors,
                    total_latency_ms=calls * 12.5,
                    max_latency_ms=240.0,
                    cold_starts=1 if minute % 720 == 0 else 0,
                    errors_by_type=Counter({"RuntimeError": errors} if errors else {}),
                    buckets=[histogram.get(key, 0) for key in BUCKET_KEYS],
                )
            )
        total += function_metrics_upsert(aggregates=aggregates, chunk_size=1000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE function_metrics")
        cursor.execute("ANALYZE function_metrics_hourly")
    return total


def _time_ms(func) -> list[float]:
    func()  # warm-up (imports, template compilation, plans)
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        func()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def run() -> None:
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    from tasks.dashboard import function_dashboard
    from tasks.models import FunctionMetric

    now = timezone.now()
    seeded = _seed(now)
    user_model = get_user_model()
    admin = user_model.objects.filter(username="bench-dashboard").first() or user_model.objects.create_superuser(
        "bench-dashboard", "bench-dashboard@example.com", "x" * 20
    )
    client = Client()
    client.force_login(admin)
    url = reverse("admin:tasks_functionmetric_dashboard")

    def render():
        response = client.get(url, {"range": "7d"})
        assert response.status_code == 200, response.status_code
        assert response.content.count(b'class="heatmap-cell"') == FUNCTIONS * 28

    view_ms = _time_ms(render)
    service_ms = _time_ms(lambda: function_dashboard(range_key="7d"))
    day_ms = _time_ms(lambda: client.get(url, {"range": "24h"}))
    hour_ms = _time_ms(lambda: client.get(url, {"range": "1h"}))
    fixed = timezone.now()
    for range_key in ("24h", "7d"):  # the summaries give exactly the figures summing the windows gives
        summarised = function_dashboard(range_key=range_key, now=fixed)["functions"]
        assert summarised == function_dashboard(range_key=range_key, now=fixed, source=FunctionMetric)["functions"]
    windows_ms = _time_ms(lambda: function_dashboard(range_key="7d", source=FunctionMetric))
    view_p50 = statistics.median(view_ms)
    results = [
        {
            "metric": f"dashboard page, 7 d × {FUNCTIONS} functions ({seeded:,} minute windows), median",
            "value": view_p50,
            "unit": "ms",
            "target": f"≤ {TARGET_MS} ms",
            "ok": view_p50 <= TARGET_MS,
        },
        {"metric": "dashboard page, 7 d, slowest round", "value": max(view_ms), "unit": "ms"},
        {"metric": "function_dashboard service alone, 7 d, median", "value": statistics.median(service_ms),
         "unit": "ms"},
        {"metric": "dashboard page, 24 h, median", "value": statistics.median(day_ms), "unit": "ms"},
        {"metric": "dashboard page, 1 h (minute windows), median", "value": statistics.median(hour_ms), "unit": "ms"},
        {"metric": "function_dashboard, 7 d summed from the minute windows instead (before), median",
         "value": statistics.median(windows_ms), "unit": "ms"},
    ]  # fmt: skip
    path = write_result(
        "dashboard",
        title="Function dashboard render time",
        results=results,
        notes=(
            f"Server time of the whole admin view through the Django test client (query, merge, SVG, template); "
            f"{ROUNDS} rounds after a warm-up. 24 h and 7 d read the hour summaries the flush keeps "
            "(function_metrics_hourly), 1 h reads the minute windows; the run checks that the 24 h and 7 d figures "
            "equal those summed from the minute windows."
        ),
    )
    for row in results:
        print(f"  {row['metric']}: {row['value']:.1f} {row['unit']}")
    print(f"  written to {path}")
