"""Bypass detector ``unusual_pattern``: each caller's last hour against its own history, which the rate
limiter's cleanup folds into ``caller_activity``."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib import admin
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import registry
from governance.choices import AuditAction, Role
from governance.models import AuditLog, CallerActivity, RateLimit
from governance.services.bypass import AUTH_FAILURE_GROUP, BYPASS_CONFIG_KEY, IDENTITY_GROUP
from governance.services.bypass.baselines import bypass_scan_unusual_patterns, caller_activity_between
from governance.services.ratelimit import rate_limit_for, rate_limit_hit, rate_limits_cleanup
from incidents.models import Incident
from oversight.models import EventRaw

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
# The caller's usual week: Monday 2 to Friday 6 March 2026, 09:00–17:59 UTC, 40 requests an hour.
WEEKDAYS = [datetime(2026, 3, day, tzinfo=UTC) for day in range(2, 7)]
WORKING_HOURS = range(9, 18)
USUAL_PER_HOUR = 40
MONDAY_10 = datetime(2026, 3, 9, 10, tzinfo=UTC)  # the next Monday, 10:00: a usual hour
MONDAY_03 = datetime(2026, 3, 9, 3, tzinfo=UTC)  # the next Monday, 03:00: an hour it never works


def requests(key: str, hour: datetime, n: int, group: str = "default") -> None:
    """``n`` requests of ``key`` to ``group`` spread evenly over ``hour``, counted by the limiter itself."""
    limit, window_seconds = rate_limit_for(None, group)
    for i in range(n):
        moment = hour + timedelta(seconds=i * 3600 / n)
        rate_limit_hit(key=key, group=group, limit=limit, window_seconds=window_seconds, now=moment)


def counted(key: str, hour: datetime, n: int, group: str = "default") -> None:
    """The counter rows ``requests`` would leave (one per window, same window starts, counts and expiry),
    written in one bulk INSERT: weeks of history in milliseconds."""
    _limit, window_seconds = rate_limit_for(None, group)
    per_window = Counter(int(i * 3600 / n) // window_seconds for i in range(n))
    RateLimit.objects.bulk_create(
        RateLimit(key=key, bucket=group, count=count, window_start=hour + timedelta(seconds=w * window_seconds),
                  expires_at=hour + timedelta(seconds=(w + 2) * window_seconds))
        for w, count in per_window.items()
    )  # fmt: skip


def usual_week(key: str, *, per_hour: int = USUAL_PER_HOUR) -> None:
    for day in WEEKDAYS:
        for hour in WORKING_HOURS:
            counted(key, day + timedelta(hours=hour), per_hour)


def scan_after(hour: datetime) -> int:
    """The scan as the minute beat runs it during the hour after ``hour`` (which it then judges)."""
    return bypass_scan_unusual_patterns(now=hour + HOUR + timedelta(minutes=1, seconds=7))


def total_requests() -> int:
    live = RateLimit.objects.exclude(bucket__in=[AUTH_FAILURE_GROUP, IDENTITY_GROUP])
    return sum(live.values_list("count", flat=True)) + sum(CallerActivity.objects.values_list("requests", flat=True))


def set_detector(admin_user, **values) -> None:
    value = registry.get(BYPASS_CONFIG_KEY)
    value["unusual_pattern"].update(values)
    registry.set(BYPASS_CONFIG_KEY, value, user=admin_user, reason="test")


@pytest.fixture
def caller(make_user, team):
    """A service-like account (``user:<uuid>``) that reads the system inventory."""
    return make_user(Role.VIEWER, teams=[team], username="inventory-sync")


@pytest.fixture
def key(caller):
    usual_week(f"user:{caller.pk}")
    return f"user:{caller.pk}"


# --- the detections ------------------------------------------------------------------------------------
@pytest.mark.parametrize("folded", ["nothing", "history", "everything"])
def test_a_burst_far_above_the_callers_usual_volume_is_a_volume_detection_and_a_security_incident(
    key, folded, django_capture_on_commit_callbacks
):
    if folded == "history":
        assert rate_limits_cleanup(now=MONDAY_10) > 0
    requests(key, MONDAY_10, 600)  # the usual hour is 40; the threshold ≈ 82
    if folded == "everything":  # the judged hour's windows too, all but its last minutes
        rate_limits_cleanup(now=MONDAY_10 + HOUR + timedelta(minutes=1))
        assert CallerActivity.objects.filter(key=key, hour=MONDAY_10).exists()

    with django_capture_on_commit_callbacks(execute=True):
        assert scan_after(MONDAY_10) == 1

    event = EventRaw.objects.get(signal="bypass_unusual_pattern")
    assert (event.category, event.severity, event.value) == ("security", "high", 1.0)
    assert event.attributes["source"] == key
    details = event.attributes["details"]
    assert details["reasons"] == ["volume"]
    assert details["caller"] == key and details["requests"] == 600 and details["groups"] == []
    assert details["hour"] == MONDAY_10.isoformat()
    # Baseline: the 7 days before Monday 10:00, from the first hour seen (Monday 2 March 10:00): 168 hours,
    # 44 of them working hours of 40 requests.
    assert details["baseline"]["hours"] == 168 and details["baseline"]["days_active"] == 5
    assert details["baseline"]["mean"] == round(44 * 40 / 168, 2)
    entry = AuditLog.objects.get(action=AuditAction.BYPASS_DETECTED)
    assert entry.data["detector"] == "unusual_pattern" and entry.data["source"] == key
    incident = Incident.objects.get(system=event.system)
    assert (incident.team.slug, incident.severity) == ("security", "high")


def test_a_caller_switching_to_an_endpoint_group_it_never_used_is_an_endpoint_mix_detection(key):
    requests(key, MONDAY_10, 10)
    requests(key, MONDAY_10, 60, group="eval")  # 60 of 70 requests: 86 %, and below the volume floor

    assert scan_after(MONDAY_10) == 1

    details = EventRaw.objects.get().attributes["details"]
    assert details["reasons"] == ["endpoint_mix"]
    assert details["groups"] == ["eval"] and details["requests"] == 70


def test_a_few_requests_to_a_new_group_are_not_an_endpoint_mix(key):
    requests(key, MONDAY_10, 40)
    requests(key, MONDAY_10, 5, group="gateway")  # below the 20 that count, though 11 % of the hour
    requests(key, MONDAY_10 + HOUR, 40)
    requests(key, MONDAY_10 + HOUR, 15, group="cicd_gate")  # 27 % of the hour, below 20 requests

    assert scan_after(MONDAY_10) == 0
    assert scan_after(MONDAY_10 + HOUR) == 0
    assert not EventRaw.objects.exists()


def test_activity_at_an_hour_the_caller_never_works_is_an_hours_detection(key):
    requests(key, MONDAY_03, 25)

    assert scan_after(MONDAY_03) == 1

    details = EventRaw.objects.get().attributes["details"]
    assert details["reasons"] == ["hours"] and details["requests"] == 25
    assert details["baseline"]["days_active"] == 5


def test_one_detection_lists_every_reason(key):
    requests(key, MONDAY_03, 150, group="gateway")

    assert scan_after(MONDAY_03) == 1

    event = EventRaw.objects.get()
    assert event.attributes["details"]["reasons"] == ["volume", "endpoint_mix", "hours"]
    assert event.attributes["details"]["groups"] == ["gateway"]
    assert "gateway" in event.attributes["summary"] and "03:00 UTC" in event.attributes["summary"]


def test_real_api_requests_at_an_unusual_hour_are_detected(caller, client_for):
    """The API's counters use the database clock: the history is laid around the real current hour."""
    seconds_left = 3600 - timezone.now().timestamp() % 3600
    if seconds_left < 20:  # all 25 requests must land in one hour
        time.sleep(seconds_left + 0.5)
    current = timezone.now().replace(minute=0, second=0, microsecond=0)
    key = f"user:{caller.pk}"
    for day in range(1, 6):  # five days, eight hours a day, none of them at the current hour of day
        for offset in range(2, 10):
            counted(key, current - timedelta(days=day) + offset * HOUR, USUAL_PER_HOUR)
    client = client_for(caller)

    assert [client.get("/api/v1/systems").status_code for _ in range(25)] == [200] * 25

    live = RateLimit.objects.filter(key=key, window_start__gte=current).values_list("count", flat=True)
    assert sum(live) == 25  # counted by the API's own limiter, in the current hour
    assert scan_after(current) == 1
    details = EventRaw.objects.get().attributes["details"]
    assert details["reasons"] == ["hours"] and details["requests"] == 25


def test_a_usual_hour_is_not_a_detection(key):
    requests(key, MONDAY_10, USUAL_PER_HOUR)

    assert scan_after(MONDAY_10) == 0
    assert not EventRaw.objects.exists()


def test_a_steady_caller_is_not_flagged_for_a_few_extra_requests(make_user):
    """σ of a perfectly flat history is 0: the √mean floor keeps +10 % from being an anomaly."""
    key = f"user:{make_user().pk}"
    start = MONDAY_10 - timedelta(days=2)
    for n in range(48):
        counted(key, start + n * HOUR, 120)
    requests(key, MONDAY_10, 132)

    assert scan_after(MONDAY_10) == 0
    requests(key, MONDAY_10 + HOUR, 200)  # 120 + 4 × √120 ≈ 164: 200 is beyond
    assert scan_after(MONDAY_10 + HOUR) == 1
    baseline = EventRaw.objects.get().attributes["details"]["baseline"]
    assert baseline["mean"] == round((48 * 120 + 132) / 49, 2) and baseline["std"] < 2


def test_a_caller_with_too_little_history_has_no_baseline(make_user):
    key = f"user:{make_user().pk}"
    for n in range(1, 13):  # twelve hours of history: below the 24 needed
        counted(key, MONDAY_10 - n * HOUR, 5)
    requests(key, MONDAY_10, 600)

    assert scan_after(MONDAY_10) == 0
    assert not EventRaw.objects.exists()


def test_a_caller_never_seen_before_has_no_baseline():
    requests("ip:198.51.100.23", MONDAY_03, 600)

    assert scan_after(MONDAY_03) == 0


def test_an_hour_is_judged_once(key, django_assert_num_queries):
    counted(key, MONDAY_10, 2000)
    assert scan_after(MONDAY_10) == 1

    with django_assert_num_queries(0):  # remembered in the cache: no query at all
        assert scan_after(MONDAY_10) == 0
    cache.clear()
    assert scan_after(MONDAY_10) == 0  # judged again, but the detection is already recorded
    assert EventRaw.objects.count() == 1
    assert AuditLog.objects.filter(action=AuditAction.BYPASS_DETECTED).count() == 1


def test_the_current_hour_is_not_judged_before_it_is_complete(key):
    counted(key, MONDAY_10, 2000)

    assert bypass_scan_unusual_patterns(now=MONDAY_10 + timedelta(minutes=59)) == 0
    assert scan_after(MONDAY_10) == 1


def test_a_switched_off_detector_reports_nothing(key, admin_user):
    set_detector(admin_user, enabled=False)
    counted(key, MONDAY_10, 2000)

    assert scan_after(MONDAY_10) == 0
    assert not EventRaw.objects.exists()


def test_the_sensitivity_comes_from_config(key, admin_user):
    set_detector(admin_user, min_requests=50)
    requests(key, MONDAY_10, 90)  # 90 > 10.5 + 4 × 17.8 ≈ 81: a burst once 50 requests count

    assert scan_after(MONDAY_10) == 1
    assert EventRaw.objects.get().attributes["details"]["reasons"] == ["volume"]


def test_the_detectors_counters_are_not_requests(key):
    for _ in range(30):
        rate_limit_hit(key=key, group=AUTH_FAILURE_GROUP, limit=10**9, window_seconds=3600, now=MONDAY_03)

    assert scan_after(MONDAY_03) == 0
    assert caller_activity_between(start=MONDAY_03, end=MONDAY_03 + HOUR) == []


def test_the_scan_is_set_based_whatever_the_number_of_callers(make_user, django_assert_max_num_queries):
    """Cost of one scan: the config snapshot's version check, the judged hour's activity, the candidates'
    baselines — three queries for 1 caller or 12 (no detection here; each detection adds its emit)."""
    keys = [f"user:{make_user().pk}" for _ in range(12)]
    for key in keys:
        for n in range(1, 31):
            counted(key, MONDAY_10 - n * HOUR, 3)
            counted(key, MONDAY_10 - n * HOUR, 1, group="gateway")
        counted(key, MONDAY_10, 30)
    rate_limits_cleanup(now=MONDAY_10 - HOUR)  # part of the history folded, part still live
    registry.get(BYPASS_CONFIG_KEY)  # a warm process: the config snapshot is loaded, only its version checked

    with django_assert_max_num_queries(3):
        assert scan_after(MONDAY_10) == 0
    assert not EventRaw.objects.exists()


# --- the fold --------------------------------------------------------------------------------------------
def test_cleanup_folds_expired_counters_into_hourly_history():
    requests("user:a", MONDAY_10, 30)
    requests("user:a", MONDAY_10 + HOUR, 12, group="gateway")
    requests("ip:192.0.2.1", MONDAY_10, 7)
    for _ in range(4):
        rate_limit_hit(key="ip:192.0.2.1", group=AUTH_FAILURE_GROUP, limit=10**9, window_seconds=3600, now=MONDAY_10)
    requests("user:a", MONDAY_10 + 3 * HOUR, 2)  # still live at the cutoff
    rows_before = RateLimit.objects.count()

    deleted = rate_limits_cleanup(now=MONDAY_10 + 3 * HOUR)

    assert deleted == rows_before - 2  # every expired counter row, the failed-authentication one included
    assert set(CallerActivity.objects.values_list("key", "bucket", "hour", "requests")) == {
        ("user:a", "default", MONDAY_10, 30),
        ("user:a", "gateway", MONDAY_10 + HOUR, 12),
        ("ip:192.0.2.1", "default", MONDAY_10, 7),
    }  # the failed-authentication counter is deleted, never folded
    assert list(RateLimit.objects.values_list("key", "count")) == [("user:a", 1), ("user:a", 1)]


def test_folding_the_same_hour_in_several_runs_adds_up():
    requests("user:a", MONDAY_10, 60)
    rate_limits_cleanup(now=MONDAY_10 + timedelta(minutes=30))
    partly = CallerActivity.objects.get().requests

    assert 0 < partly < 60
    assert rate_limits_cleanup(now=MONDAY_10 + timedelta(minutes=30)) == 0  # twice: nothing more
    assert CallerActivity.objects.get().requests == partly
    rate_limits_cleanup(now=MONDAY_10 + 2 * HOUR)
    assert CallerActivity.objects.get().requests == 60
    assert not RateLimit.objects.exists()


def test_chunked_cleanup_keeps_the_deleted_count_and_the_totals():
    for n in range(7):
        requests(f"user:{n}", MONDAY_10, 3)

    assert rate_limits_cleanup(now=MONDAY_10 + 2 * HOUR, chunk_size=4) == 21
    assert CallerActivity.objects.count() == 7 and total_requests() == 21


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    windows=st.lists(
        st.tuples(
            st.sampled_from(["user:a", "user:b", "ip:192.0.2.7"]),
            st.sampled_from(["default", "gateway", "eval", AUTH_FAILURE_GROUP]),
            st.integers(min_value=0, max_value=6 * 3600),  # seconds after Monday 10:00
            st.integers(min_value=1, max_value=4),
        ),
        max_size=25,
    ),
    cutoffs=st.lists(st.integers(min_value=0, max_value=8 * 3600), min_size=1, max_size=3),
    chunk_size=st.integers(min_value=1, max_value=6),
)
def test_the_fold_keeps_every_request_exactly_once(windows, cutoffs, chunk_size):
    RateLimit.objects.all().delete()  # examples share the test's transaction
    CallerActivity.objects.all().delete()
    for key, group, offset, n in windows:
        for _ in range(n):
            rate_limit_hit(
                key=key, group=group, limit=100, window_seconds=60, now=MONDAY_10 + timedelta(seconds=offset)
            )
    before = total_requests()
    per_hour_before = caller_activity_between(start=MONDAY_10, end=MONDAY_10 + 7 * HOUR)

    for cutoff in sorted(cutoffs):
        expired = RateLimit.objects.filter(expires_at__lt=MONDAY_10 + timedelta(seconds=cutoff)).count()
        assert rate_limits_cleanup(now=MONDAY_10 + timedelta(seconds=cutoff), chunk_size=chunk_size) == expired

    assert total_requests() == before
    after = caller_activity_between(start=MONDAY_10, end=MONDAY_10 + 7 * HOUR)
    assert _per_key_bucket_hour(after) == _per_key_bucket_hour(per_hour_before)


def _per_key_bucket_hour(rows) -> dict:
    totals: dict = {}
    for key, bucket, hour, n in rows:
        totals[key, bucket, hour] = totals.get((key, bucket, hour), 0) + n
    return totals


def test_history_older_than_the_baseline_is_pruned_by_the_cleanup():
    requests("user:a", MONDAY_10, 5)
    requests("user:a", MONDAY_10 + timedelta(days=1), 5)
    rate_limits_cleanup(now=MONDAY_10 + timedelta(days=1, hours=2))
    assert CallerActivity.objects.count() == 2

    rate_limits_cleanup(now=MONDAY_10 + timedelta(days=8, hours=1))  # retention: 7 + 1 days

    assert list(CallerActivity.objects.values_list("hour", flat=True)) == [MONDAY_10 + timedelta(days=1)]


@pytest.mark.postgres
def test_on_postgresql_each_chunk_is_one_statement_that_deletes_and_folds():
    for n in range(5):
        requests(f"user:{n}", MONDAY_10, 2)

    with CaptureQueriesContext(connection) as queries:
        assert rate_limits_cleanup(now=MONDAY_10 + 2 * HOUR, chunk_size=4) == 10
    touching = [q["sql"] for q in queries.captured_queries if "rate_limits" in q["sql"]]

    assert len(touching) == 3  # 4 + 4 + 2 rows: three chunks, one statement each
    assert all("DELETE FROM rate_limits" in sql and "INSERT INTO caller_activity" in sql for sql in touching)
    assert not RateLimit.objects.exists() and total_requests() == 10


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_cleanups_on_postgresql_never_fold_a_row_twice():
    keys = [f"user:{uuid.uuid4()}" for _ in range(40)]
    for key in keys:
        requests(key, MONDAY_10, 6)  # 6 one-minute windows each: 240 rows, 240 requests
    barrier = threading.Barrier(2)
    results: list[int] = []

    def cleanup() -> None:
        try:
            barrier.wait()
            results.append(rate_limits_cleanup(now=MONDAY_10 + 2 * HOUR, chunk_size=7))
        finally:
            connection.close()

    workers = [threading.Thread(target=cleanup) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert sum(results) == 240
    assert not RateLimit.objects.exists()
    assert sum(CallerActivity.objects.values_list("requests", flat=True)) == 240
    assert set(CallerActivity.objects.values_list("requests", flat=True)) == {6}


# --- admin -----------------------------------------------------------------------------------------------
def test_the_history_admin_is_read_only_and_searchable(client, django_user_model):
    requests("user:searched", MONDAY_10, 3)
    requests("user:other", MONDAY_10, 4, group="gateway")
    rate_limits_cleanup(now=MONDAY_10 + 2 * HOUR)
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x" * 20))
    url = reverse("admin:governance_calleractivity_changelist")

    assert b"user:searched" in client.get(url, {"q": "searched"}).content
    assert b"user:other" not in client.get(url, {"q": "searched"}).content
    assert b"user:searched" not in client.get(url, {"bucket": "gateway"}).content
    assert client.get(url, {"hour__year": "2026", "hour__month": "3"}).status_code == 200
    row = CallerActivity.objects.first()
    assert client.get(reverse("admin:governance_calleractivity_change", args=[row.pk])).status_code == 200
    model_admin = admin.site._registry[CallerActivity]
    assert not model_admin.has_add_permission(None) and not model_admin.has_delete_permission(None)
