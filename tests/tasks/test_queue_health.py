"""Queue health (tasks.health): queue depths, outbox lag, beat lateness; their /metrics gauges, the
/api/v1/metrics/queues endpoint, and self-monitoring into the oversight pipeline (tasks.self_monitor)."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
import redis
from django.apps import apps as django_apps
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from config import registry
from config.keys import SELF_MONITORING_SIGNALS
from config.models import PlatformConfig
from config.seeding import add_self_monitoring_signals
from governance.services.bypass.core import PLATFORM_SYSTEM_NAME as BYPASS_SYSTEM_NAME
from incidents.models import Incident
from oversight.models import Alert, EventRaw, IngestBatch
from tasks.health import queue_health
from tasks.schedules import SCHEDULES
from tasks.self_monitoring import (
    OPERATIONS_SYSTEM_NAME,
    OPERATIONS_TEAM_SLUG,
    operations_system_ensure,
    self_monitor_event_id,
    self_monitor_run,
)
from tasks.tasks import self_monitor
from tests.conftest import bearer_client
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db

PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: "<queue><sep><priority>" for priorities above 0


@pytest.fixture(autouse=True)
def _beat_entries_just_synced():
    """Beat entries as right after ``sync_schedules``: none sent yet, none overdue (a reused test database
    would otherwise carry the creation time of an earlier run)."""
    PeriodicTask.objects.filter(name__startswith="vigil:").update(last_run_at=None, date_changed=timezone.now())


@pytest.fixture
def broker_queue(settings):
    """A queue name of this test alone in the Redis test database, with Celery health read from Redis."""
    settings.CELERY_TASK_ALWAYS_EAGER = False  # Celery reads it too: a test sending tasks switches it back
    client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    name = f"test-qhealth-{uuid.uuid4().hex[:8]}"
    yield client, name
    client.delete(name, *(f"{name}{PRIORITY_SEP}{step}" for step in (3, 6, 9)))


def stale_batch(minutes: int) -> IngestBatch:
    return IngestBatch.objects.create(received_at=timezone.now() - timedelta(minutes=minutes), accepted=1)


def beat_entry(task: str) -> PeriodicTask:
    return PeriodicTask.objects.select_related("interval").get(name=f"vigil:{task}")


def beat_of(health, task: str):
    return next(entry for entry in health.beat if entry.task == task)


# --- queue_health --------------------------------------------------------------------------------


def test_eager_celery_reports_no_depths_and_says_so():
    health = queue_health()

    assert health.broker == "eager"
    assert {q.queue for q in health.queues} == {"events", "assist", "lifecycle", "predict", "default"}
    assert all(q.depth is None for q in health.queues)
    assert health.deepest_queue is None


def test_outbox_age_is_the_oldest_unprocessed_batch():
    now = timezone.now()
    assert queue_health(now=now).outbox_oldest_batch_age_seconds == 0
    stale_batch(minutes=5)
    oldest = stale_batch(minutes=12)
    IngestBatch.objects.create(received_at=now - timedelta(hours=3), processed_at=now)  # processed: ignored

    health = queue_health(now=now)

    assert health.oldest_unprocessed_batch_at == oldest.received_at
    assert health.outbox_oldest_batch_age_seconds == pytest.approx(12 * 60, abs=1)


def test_a_periodic_task_is_late_after_three_intervals_without_a_run():
    now = timezone.now()
    PeriodicTask.objects.filter(name="vigil:oversight.sweep_outbox").update(last_run_at=now - timedelta(seconds=170))
    PeriodicTask.objects.filter(name="vigil:incidents.lifecycle_tick").update(last_run_at=now - timedelta(seconds=400))
    # Never sent, and its entry last changed 10 minutes ago: beat would have sent it by now.
    PeriodicTask.objects.filter(name="vigil:hitl.assist_pending").update(
        last_run_at=None, date_changed=now - timedelta(minutes=10)
    )
    PeriodicTask.objects.filter(name="vigil:governance.bypass_scan").update(enabled=False)

    health = queue_health(now=now)

    on_time = beat_of(health, "oversight.sweep_outbox")
    assert (on_time.late, on_time.last_run_age_seconds, on_time.interval_seconds) == (False, 170, 60)
    stopped = beat_of(health, "incidents.lifecycle_tick")
    assert (stopped.late, stopped.overdue_seconds) == (True, 340)
    never = beat_of(health, "hitl.assist_pending")
    assert (never.late, never.last_run_at, never.overdue_seconds) == (True, None, 540)
    assert "governance.bypass_scan" not in {entry.task for entry in health.beat}  # disabled: not expected to run
    assert health.worst_late_task == never
    assert {entry.task for entry in health.beat} | {"governance.bypass_scan"} == {s.task for s in SCHEDULES}


def test_fresh_schedules_are_not_late():
    assert not any(entry.late for entry in queue_health().beat)


@pytest.mark.redis
def test_redis_depth_counts_every_priority_list_in_one_round_trip(broker_queue, django_assert_num_queries):
    client, name = broker_queue
    client.lpush(name, *[b"{}"] * 4)
    client.lpush(f"{name}{PRIORITY_SEP}6", *[b"{}"] * 3)

    with django_assert_num_queries(2):  # oldest batch + periodic tasks, whatever the number of queues
        health = queue_health(queues=[name, "default"])

    assert health.broker == "redis"
    depths = {q.queue: q.depth for q in health.queues}
    assert depths[name] == 7
    assert health.deepest_queue.queue == name


@pytest.mark.redis
def test_an_unreachable_broker_leaves_depths_unknown(settings, monkeypatch):
    from kombu import Connection

    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    unreachable = Connection("redis://127.0.0.1:1/0").Pool(limit=1)
    monkeypatch.setattr(type(app), "pool", property(lambda self: unreachable))

    health = queue_health()

    assert health.broker.startswith("error: ")
    assert all(q.depth is None for q in health.queues)


# --- /metrics and the API ------------------------------------------------------------------------


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def test_metrics_exposes_outbox_age_and_beat_gauges(client):
    stale_batch(minutes=3)
    PeriodicTask.objects.filter(name="vigil:incidents.lifecycle_tick").update(
        last_run_at=timezone.now() - timedelta(seconds=600)
    )

    samples = scrape(client)

    assert [s.value for s in samples["vigil_queue_health_up"]] == [1]
    assert samples["vigil_outbox_oldest_batch_age_seconds"][0].value == pytest.approx(180, abs=5)
    late = {s.labels["task"]: s.value for s in samples["vigil_beat_task_late"]}
    assert late["incidents.lifecycle_tick"] == 1 and late["oversight.sweep_outbox"] == 0
    ages = {s.labels["task"]: s.value for s in samples["vigil_beat_last_run_age_seconds"]}
    assert ages["incidents.lifecycle_tick"] == pytest.approx(600, abs=5)
    assert "oversight.sweep_outbox" not in ages  # never sent: no sample
    assert "vigil_queue_depth" not in samples  # eager: no depth to report


def test_metrics_in_multiprocess_mode_still_has_the_queue_gauges(client, monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # gunicorn/prefork: per-process files
    stale_batch(minutes=1)

    samples = scrape(client)

    assert samples["vigil_outbox_oldest_batch_age_seconds"][0].value == pytest.approx(60, abs=5)
    assert len(samples["vigil_beat_task_late"]) == len(SCHEDULES)


@pytest.mark.redis
def test_metrics_exposes_queue_depth_from_redis(client, broker_queue, settings):
    redis_client, name = broker_queue
    settings.CELERY_ROUTE_ALL_TO_QUEUE = name  # a one-queue deployment's queue is measured too
    redis_client.lpush(name, *[b"{}"] * 5)

    samples = scrape(client)

    depths = {s.labels["queue"]: s.value for s in samples["vigil_queue_depth"]}
    assert depths[name] == 5
    assert {"events", "assist", "lifecycle", "predict", "default"} <= set(depths)


def test_metrics_reports_health_down_without_failing_the_scrape(client, monkeypatch):
    from tasks import collectors

    def broken(**kwargs):
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(collectors, "queue_health", broken)

    samples = scrape(client)

    assert [s.value for s in samples["vigil_queue_health_up"]] == [0]
    assert "vigil_outbox_oldest_batch_age_seconds" not in samples


def test_queue_health_api_returns_the_same_figures(viewer):
    stale_batch(minutes=2)

    response = bearer_client(viewer).get("/api/v1/metrics/queues")

    assert response.status_code == 200
    body = response.json()
    assert body["broker"] == "eager"
    assert {q["queue"] for q in body["queues"]} == {"events", "assist", "lifecycle", "predict", "default"}
    assert body["outbox_oldest_batch_age_seconds"] == pytest.approx(120, abs=5)
    assert {entry["task"] for entry in body["beat"]} == {s.task for s in SCHEDULES}
    assert set(body["beat"][0]) == {
        "task",
        "periodic_task",
        "interval_seconds",
        "last_run_at",
        "last_run_age_seconds",
        "late",
        "overdue_seconds",
    }


def test_queue_health_api_requires_authentication():
    assert APIClient().get("/api/v1/metrics/queues").status_code == 401


def test_queue_health_api_refuses_a_caller_without_a_role(make_user):
    assert bearer_client(make_user()).get("/api/v1/metrics/queues").status_code == 403


# --- Self-monitoring -----------------------------------------------------------------------------


def platform_alerts(signal: str):
    return Alert.objects.filter(system__name=OPERATIONS_SYSTEM_NAME, signal=signal)


def test_self_monitor_is_scheduled_every_minute_on_the_default_queue():
    spec = next(s for s in SCHEDULES if s.task == "tasks.self_monitor")
    assert (spec.every_seconds, spec.queue, spec.expires_seconds) == (60, "default", 55)
    assert beat_entry("tasks.self_monitor").enabled


def test_healthy_platform_sends_readings_but_raises_no_alert(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert self_monitor() == {"sent": 2, "skipped": 0}  # eager: no queue_depth reading

    events = EventRaw.objects.filter(system__name=OPERATIONS_SYSTEM_NAME)
    assert {(e.category, e.signal, e.value) for e in events} == {
        ("data_quality", "outbox_lag_seconds", 0.0),
        ("data_quality", "beat_lag_seconds", 0.0),
    }
    assert not Alert.objects.filter(system__name=OPERATIONS_SYSTEM_NAME).exists()
    assert not IngestBatch.objects.filter(processed_at__isnull=True).exists()


@pytest.mark.postgres
def test_a_stuck_outbox_becomes_an_alert_on_the_platform(django_capture_on_commit_callbacks):
    stale_batch(minutes=20)  # critical is 600 s

    with django_capture_on_commit_callbacks(execute=True):
        report = self_monitor_run()

    assert report.sent == 2
    event = EventRaw.objects.get(system__name=OPERATIONS_SYSTEM_NAME, signal="outbox_lag_seconds")
    assert event.value == pytest.approx(1200, abs=5)
    assert event.severity == "high"
    alert = platform_alerts("outbox_lag_seconds").get()
    assert alert.category == "data_quality"
    assert not platform_alerts("beat_lag_seconds").exists()
    incident = Incident.objects.get(source_alert=alert)  # a critical breach is an incident of its own
    assert (incident.system.name, incident.team.slug, incident.severity) == (
        OPERATIONS_SYSTEM_NAME,
        OPERATIONS_TEAM_SLUG,
        "high",
    )
    assert Alert.objects.filter(system__name=OPERATIONS_SYSTEM_NAME).count() == 1


@pytest.mark.postgres
def test_beat_stopping_becomes_an_alert_naming_the_task(django_capture_on_commit_callbacks):
    PeriodicTask.objects.filter(name="vigil:oversight.check_heartbeats").update(
        last_run_at=timezone.now() - timedelta(hours=1)
    )

    with django_capture_on_commit_callbacks(execute=True):
        self_monitor_run()

    event = EventRaw.objects.get(system__name=OPERATIONS_SYSTEM_NAME, signal="beat_lag_seconds")
    assert event.attributes["task"] == "oversight.check_heartbeats"
    assert event.value == pytest.approx(3540, abs=5)  # an hour since the last run, due after a minute
    assert platform_alerts("beat_lag_seconds").exists()


@pytest.mark.postgres
@pytest.mark.redis
def test_a_stuck_queue_becomes_an_alert_naming_the_queue(broker_queue, settings, django_capture_on_commit_callbacks):
    redis_client, name = broker_queue
    settings.CELERY_ROUTE_ALL_TO_QUEUE = name
    pipe = redis_client.pipeline(transaction=False)
    for _ in range(11):
        pipe.lpush(name, *[b"{}"] * 1000)  # 11,000 waiting messages; critical is 10,000
    pipe.execute()

    with django_capture_on_commit_callbacks(execute=True):
        assert self_monitor_run().sent == 3
        # Celery reads the same setting: process the batch in this process, not through the test broker.
        settings.CELERY_TASK_ALWAYS_EAGER = True

    event = EventRaw.objects.get(system__name=OPERATIONS_SYSTEM_NAME, signal="queue_depth")
    assert event.value == 11000
    assert event.attributes["queue"] == name
    assert event.attributes["depths"]["default"] == 0
    assert platform_alerts("queue_depth").exists()


def test_self_monitoring_belongs_to_platform_operations_not_to_security(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        self_monitor_run()

    system = operations_system_ensure()
    assert (system.name, system.team.slug, system.team.name) == (
        OPERATIONS_SYSTEM_NAME,
        OPERATIONS_TEAM_SLUG,
        "Platform operations",
    )
    assert not EventRaw.objects.filter(system__name=BYPASS_SYSTEM_NAME).exists()
    assert operations_system_ensure().pk == system.pk  # idempotent


@pytest.mark.postgres
def test_an_operator_in_platform_operations_sees_a_self_monitoring_alert_and_security_does_not(
    make_user, django_capture_on_commit_callbacks
):
    stale_batch(minutes=20)
    with django_capture_on_commit_callbacks(execute=True):
        self_monitor_run()
    alert = platform_alerts("outbox_lag_seconds").get()
    operator = make_user("viewer", teams=[operations_system_ensure().team])
    security = make_user("security", teams=[TeamFactory(slug="security", name="Security")])

    assert bearer_client(operator).get(f"/api/v1/alerts/{alert.pk}").status_code == 200
    assert bearer_client(security).get(f"/api/v1/alerts/{alert.pk}").status_code == 404


def test_a_rerun_in_the_same_minute_stores_nothing_twice(django_capture_on_commit_callbacks):
    now = timezone.now().replace(second=5)
    with django_capture_on_commit_callbacks(execute=True):
        first = self_monitor_run(now=now)
        second = self_monitor_run(now=now + timedelta(seconds=30))
        next_minute = self_monitor_run(now=now + timedelta(seconds=60))

    assert (first.sent, second.sent, second.skipped, next_minute.sent) == (2, 0, 2, 2)
    assert EventRaw.objects.filter(system__name=OPERATIONS_SYSTEM_NAME).count() == 4
    assert IngestBatch.objects.count() == 2  # the rerun created no batch
    assert EventRaw.objects.filter(event_id=self_monitor_event_id(signal="beat_lag_seconds", now=now)).exists()


def test_upgrade_adds_the_self_monitoring_signals_to_tuned_data_quality_thresholds():
    assert set(SELF_MONITORING_SIGNALS) <= set(registry.get("oversight.thresholds.data_quality"))
    row = PlatformConfig.objects.get(key="oversight.thresholds.data_quality")
    tuned = {"psi": {"direction": "above", "warning": 0.2, "critical": 0.4, "unit": "score"}}
    PlatformConfig.objects.filter(pk=row.pk).update(value=tuned)

    add_self_monitoring_signals(django_apps, None)

    row.refresh_from_db()
    assert row.value["psi"]["warning"] == 0.2  # the operator's tuning is kept
    assert row.value["queue_depth"]["critical"] == 10000
    assert set(SELF_MONITORING_SIGNALS) <= set(row.value)
    assert row.history.filter(version=row.version, reason__contains="self-monitoring").exists()
    version = row.version
    add_self_monitoring_signals(django_apps, None)  # nothing missing: no new version
    row.refresh_from_db()
    assert row.version == version
