"""The function dashboard: figures from a known dataset, range and sort selectors, staff only."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.dashboard import function_dashboard
from tasks.metrics import BUCKET_KEYS, WindowAggregate
from tasks.models import FunctionHourSummary, FunctionKind, FunctionMetric
from tasks.services import function_metrics_upsert
from tests.factories import UserFactory

NOW = datetime(2026, 3, 14, 12, 10, 30, tzinfo=UTC)
DASHBOARD = "admin:tasks_functionmetric_dashboard"


def window(name: str, at: datetime, *, calls: int, errors: int = 0, cold: int = 0, histogram=None, kind="task"):
    """One flushed window, written as the recorder's flush writes it (so its hour summary moves too)."""
    histogram = histogram or {"10": calls}
    function_metrics_upsert(
        aggregates=[
            WindowAggregate(
                name,
                kind,
                at,
                60,
                invocations=calls,
                errors=errors,
                total_latency_ms=calls * 10.0,
                max_latency_ms=100.0,
                cold_starts=cold,
                errors_by_type=Counter({"Boom": errors} if errors else {}),
                buckets=[histogram.get(key, 0) for key in BUCKET_KEYS],
            )
        ]
    )


@pytest.fixture
def dataset(db):
    """Two functions in the last hour; one more run eight days ago (out of every range)."""
    # tasks.slow: two windows in the 12:05 minute bucket and one at 12:10; p95 from the merged histogram.
    window("tasks.slow", datetime(2026, 3, 14, 12, 5, tzinfo=UTC), calls=10, errors=5, cold=1,
           histogram={"100": 9, "250": 1})  # fmt: skip
    window("tasks.slow", datetime(2026, 3, 14, 12, 10, tzinfo=UTC), calls=10, histogram={"1000": 10})
    window("GET /api/v1/fast", datetime(2026, 3, 14, 12, 9, tzinfo=UTC), calls=40, errors=1, cold=2,
           histogram={"1": 40}, kind=FunctionKind.ENDPOINT)  # fmt: skip
    window("tasks.ancient", NOW - timedelta(days=8), calls=1000)


def by_name(dashboard) -> dict:
    return {function["name"]: function for function in dashboard["functions"]}


def test_totals_error_rate_and_cold_start_share_per_function(dataset):
    functions = by_name(function_dashboard(range_key="1h", now=NOW))

    assert set(functions) == {"tasks.slow", "GET /api/v1/fast"}
    slow = functions["tasks.slow"]
    assert (slow["invocations"], slow["errors"], slow["cold_starts"]) == (20, 5, 1)
    assert slow["error_rate"] == pytest.approx(0.25)
    assert slow["cold_start_rate"] == pytest.approx(0.05)
    assert functions["GET /api/v1/fast"]["cold_start_rate"] == pytest.approx(0.05)


def test_p95_per_bucket_comes_from_that_buckets_histogram(dataset):
    dashboard = function_dashboard(range_key="1h", now=NOW)
    slow = by_name(dashboard)["tasks.slow"]
    starts = dashboard["bucket_starts"]

    assert len(starts) == 60 and starts[-1] == datetime(2026, 3, 14, 12, 10, tzinfo=UTC)
    at_1205 = slow["buckets"][starts.index(datetime(2026, 3, 14, 12, 5, tzinfo=UTC))]
    at_1210 = slow["buckets"][-1]
    # 9 calls ≤ 100 ms and 1 in (100, 250]: rank 9.5 falls halfway into the 250 bucket.
    assert at_1205["p95_ms"] == pytest.approx(175.0)
    assert (at_1205["invocations"], at_1205["errors"], at_1205["error_rate"]) == (10, 5, 0.5)
    # 10 calls in (500, 1000]: rank 9.5 of 10 → 500 + 500 × 0.95.
    assert at_1210["p95_ms"] == pytest.approx(975.0)
    assert slow["buckets"][0] == {"invocations": 0, "errors": 0, "error_rate": None, "p95_ms": None}


def test_the_7_day_range_merges_windows_into_six_hour_buckets(dataset):
    dashboard = function_dashboard(range_key="7d", now=NOW)
    slow = by_name(dashboard)["tasks.slow"]

    assert len(dashboard["bucket_starts"]) == 28
    assert dashboard["bucket_starts"][-1] == datetime(2026, 3, 14, 12, tzinfo=UTC)
    merged = slow["buckets"][-1]
    assert merged["invocations"] == 20
    # 9 ≤ 100 ms, 1 ≤ 250, 10 ≤ 1000: rank 19 of 20 → 500 + 500 × (19 − 10) / 10.
    assert merged["p95_ms"] == pytest.approx(950.0)
    assert "tasks.ancient" not in by_name(dashboard)


def test_the_24_hour_range_has_one_bucket_per_hour(dataset):
    dashboard = function_dashboard(range_key="24h", now=NOW)
    slow = by_name(dashboard)["tasks.slow"]

    assert len(dashboard["bucket_starts"]) == 24
    assert dashboard["bucket_starts"][-1] == datetime(2026, 3, 14, 12, tzinfo=UTC)
    assert (slow["buckets"][-1]["invocations"], slow["buckets"][-1]["errors"]) == (20, 5)
    assert slow["buckets"][-1]["p95_ms"] == pytest.approx(950.0)


def test_the_24_hour_and_7_day_ranges_read_hour_summaries_not_windows(dataset, django_assert_num_queries):
    FunctionMetric.objects.all().delete()  # the summaries alone must carry the figures

    functions = by_name(function_dashboard(range_key="7d", now=NOW))

    assert functions["tasks.slow"]["invocations"] == 20
    assert function_dashboard(range_key="1h", now=NOW)["functions"] == []
    with django_assert_num_queries(1):
        function_dashboard(range_key="24h", now=NOW)


def _comparable(functions: list[dict]) -> list[dict]:
    """The figures with float sums rounded: summing per hour first may change the last bits of a sum."""
    return [{**function, "avg_latency_ms": round(function["avg_latency_ms"], 6)} for function in functions]


minute_windows = st.lists(
    st.tuples(
        st.sampled_from(["tasks.a", "tasks.b", "GET /api/v1/c"]),
        st.integers(min_value=0, max_value=7 * 24 * 60 + 120),  # minutes before NOW, some out of range
        st.integers(min_value=1, max_value=50),
        st.integers(min_value=0, max_value=3),
        st.integers(min_value=0, max_value=1),
        st.sampled_from([{"1": 1}, {"25": 2, "250": 1}, {"10000": 1, "+Inf": 1}, {"5": 3}]),
    ),
    min_size=1,
    max_size=40,
)


@pytest.mark.django_db
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows=minute_windows)
def test_every_figure_from_the_hour_summaries_equals_the_figure_summed_from_the_windows(windows):
    FunctionMetric.objects.all().delete()
    FunctionHourSummary.objects.all().delete()
    minute = NOW.replace(second=0)
    for name, minutes_ago, calls, errors, cold, histogram in windows:
        scaled = {key: count * calls for key, count in histogram.items()}
        window(name, minute - timedelta(minutes=minutes_ago), calls=sum(scaled.values()),
               errors=min(errors, calls), cold=cold, histogram=scaled)  # fmt: skip

    for range_key in ("24h", "7d"):
        for sort in ("volume", "p95", "error_rate"):
            from_summaries = function_dashboard(range_key=range_key, sort=sort, now=NOW)
            from_windows = function_dashboard(range_key=range_key, sort=sort, now=NOW, source=FunctionMetric)
            assert _comparable(from_summaries["functions"]) == _comparable(from_windows["functions"])


def test_sorting_by_volume_error_rate_and_p95(dataset):
    order = {
        sort: [function["name"] for function in function_dashboard(range_key="1h", sort=sort, now=NOW)["functions"]]
        for sort in ("volume", "error_rate", "p95")
    }

    assert order["volume"] == ["GET /api/v1/fast", "tasks.slow"]
    assert order["error_rate"] == ["tasks.slow", "GET /api/v1/fast"]
    assert order["p95"] == ["tasks.slow", "GET /api/v1/fast"]


def test_unknown_range_or_sort_is_refused(db):
    with pytest.raises(ValueError, match="unknown range"):
        function_dashboard(range_key="2w")
    with pytest.raises(ValueError, match="unknown sort"):
        function_dashboard(range_key="1h", sort="name")


# --- The admin page ------------------------------------------------------------------------------


@pytest.fixture
def recent(db):
    now = timezone.now().replace(second=0, microsecond=0)
    window("tasks.recent", now, calls=8, errors=2, histogram={"25": 8})


def test_the_page_draws_the_charts_and_links_each_function_to_its_failures(admin_client, recent):
    response = admin_client.get(reverse(DASHBOARD))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-range="24h"' in html and '<strong data-range="24h">' in html
    assert html.count('class="heatmap-cell"') == 1
    assert html.count('class="error-bar"') == 1
    assert "<polyline" in html
    assert "25.0%" in html  # error rate
    failures = reverse("admin:tasks_functionfailure_changelist") + "?function_name=tasks.recent"
    assert failures in html
    assert "?range=24h&amp;sort=p95" in html


def test_function_names_are_escaped_in_the_drawn_charts(admin_client, db):
    now = timezone.now().replace(second=0, microsecond=0)
    window("GET /x/<script>alert(1)</script>", now, calls=4, errors=1)

    html = admin_client.get(reverse(DASHBOARD), {"range": "1h"}).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "GET /x/&lt;script&gt;alert(1)&lt;/script&gt; · " in html  # the heatmap cell's title
    assert html.count('class="heatmap-cell"') == 1
    assert html.count('class="error-bar"') == 1


def test_the_range_selector_changes_the_buckets(admin_client, recent):
    response = admin_client.get(reverse(DASHBOARD), {"range": "1h", "sort": "error_rate"})

    assert response.context["dashboard"]["range"].key == "1h"
    assert response.context["dashboard"]["sort"] == "error_rate"
    assert len(response.context["dashboard"]["bucket_starts"]) == 60


def test_an_unknown_range_falls_back_to_24_hours(admin_client, recent):
    response = admin_client.get(reverse(DASHBOARD), {"range": "forever", "sort": "nonsense"})

    assert response.status_code == 200
    assert response.context["dashboard"]["range"].key == "24h"


@pytest.mark.parametrize("roles", [[], ["ingest"]], ids=["no role", "service account"])
def test_anonymous_users_and_non_operators_are_sent_to_the_login_page(client, db, roles):
    assert client.get(reverse(DASHBOARD)).status_code == 302
    client.force_login(UserFactory(is_staff=True, roles=roles))

    response = client.get(reverse(DASHBOARD))

    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_a_viewer_operator_may_see_the_dashboard(client, db):
    client.force_login(UserFactory(roles=["viewer"]))

    assert client.get(reverse(DASHBOARD)).status_code == 200


def test_the_changelist_and_admin_index_link_to_the_dashboard(admin_client, db):
    url = reverse(DASHBOARD)

    assert url in admin_client.get(reverse("admin:tasks_functionmetric_changelist")).content.decode()
    assert url in admin_client.get(reverse("admin:index")).content.decode()


def test_the_page_shows_queue_health(admin_client, db):
    from django_celery_beat.models import PeriodicTask

    PeriodicTask.objects.filter(name__startswith="vigil:").update(last_run_at=timezone.now())

    page = admin_client.get(reverse(DASHBOARD)).content.decode()

    assert 'id="queue-health"' in page
    for queue in ("events", "assist", "lifecycle", "predict", "default"):
        assert f'data-queue="{queue}"' in page
    assert 'data-task="governance.bypass_scan"' in page and 'data-task="tasks.self_monitor"' in page
    assert "Oldest unprocessed event batch: none waiting" in page
    assert "Periodic tasks: all on time" in page
