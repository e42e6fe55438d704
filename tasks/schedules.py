"""Every periodic task of Vigil, declared once. ``manage.py sync_schedules`` writes them into
django-celery-beat's tables (it also runs after ``migrate``), where operators tune them in the admin.

An entry is keyed by its PeriodicTask name (``vigil:<task name>``). Sync creates missing entries with
the interval below and keeps the task name, queue, expiry and description in step with this file;
the interval and the enabled flag belong to operators once the entry exists (``--reset`` restores
the declared ones).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleSpec:
    task: str
    every_seconds: int
    description: str
    queue: str = "default"
    # Drop a run that waited longer than this in the queue: the next tick does the same work.
    expires_seconds: int | None = None
    enabled: bool = True

    @property
    def periodic_task_name(self) -> str:
        return f"vigil:{self.task}"


SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec(
        task="oversight.sweep_outbox",
        every_seconds=60,
        description="Re-enqueue event batches left unprocessed for over a minute (lost task, dead worker).",
        queue="events",
        expires_seconds=55,
    ),
    ScheduleSpec(
        task="oversight.resolve_stale_alerts",
        every_seconds=60,
        description="Resolve open alerts with no new breach for the configured quiet period.",
        queue="events",
        expires_seconds=55,
    ),
    ScheduleSpec(
        task="oversight.check_heartbeats",
        every_seconds=60,
        description="Raise absence alerts for active systems whose heartbeats stopped arriving.",
        queue="events",
        expires_seconds=55,
    ),
    ScheduleSpec(
        task="hitl.assist_pending",
        every_seconds=60,
        description="Suggest decisions for new review items, then apply the auto-approval policies to them.",
        queue="assist",
        expires_seconds=55,
    ),
    ScheduleSpec(
        task="hitl.apply_auto_approval",
        every_seconds=60,
        description="Apply enabled and shadow auto-approval policies; disable policies below the agreement floor.",
        queue="assist",
        expires_seconds=55,
    ),
    ScheduleSpec(
        task="hitl.train_assist_model",
        every_seconds=86400,
        description="Retrain the auto-assist model on recent human decisions.",
        queue="assist",
        expires_seconds=3600,
    ),
    ScheduleSpec(
        task="incidents.lifecycle_tick",
        every_seconds=60,
        description="Escalate incidents past their SLA step, auto-close stale ones, follow-ups, regulatory warnings.",
        queue="lifecycle",
        expires_seconds=55,
    ),
    ScheduleSpec(
        task="incidents.audit_active_escalations",
        every_seconds=300,
        description="Escalate now any open incident whose next escalation step is overdue (missed tick, dead worker).",
        queue="lifecycle",
        expires_seconds=280,
    ),
    ScheduleSpec(
        task="governance.audit_verify",
        every_seconds=3600,
        description="Walk the hash-chained audit log and record the result; a break is logged and audited.",
        expires_seconds=3000,
    ),
    ScheduleSpec(
        task="governance.ratelimit_cleanup",
        every_seconds=900,
        description="Delete expired rate-limit counters (rate_limits rows two windows old) in chunks.",
        expires_seconds=840,
    ),
    ScheduleSpec(
        task="governance.bypass_scan",
        every_seconds=60,
        description="Bypass detection: the periodic detectors (governance.services.bypass) become security events.",
        expires_seconds=55,
    ),
    ScheduleSpec(
        task="governance.predict",
        every_seconds=900,
        description="Predictive governance: drift, compliance and incident risk of every active AI system for "
        "the current 15-minute slot; outcomes of matured predictions; retention purge.",
        queue="predict",
        expires_seconds=840,
    ),
    ScheduleSpec(
        task="governance.predict_retrain",
        every_seconds=86400,
        description="Retrain the predictors on this installation's labelled prediction outcomes (when enough).",
        queue="predict",
        expires_seconds=3600,
    ),
    ScheduleSpec(
        task="tasks.function_metrics_rollup",
        every_seconds=3600,
        description="Roll function-metric windows older than raw_days into hourly rows; delete hourly rows past "
        "hourly_days (config observability.retention).",
        expires_seconds=3000,
    ),
    ScheduleSpec(
        task="tasks.self_monitor",
        every_seconds=60,
        description="Self-monitoring: queue depth, outbox lag and late periodic tasks as events of vigil-platform.",
        expires_seconds=55,
    ),
    ScheduleSpec(
        task="tasks.purge_function_failures",
        every_seconds=3600,
        description="Delete recent-failure details (function_failures) older than 14 days.",
        expires_seconds=3000,
    ),
)

PREFIX = "vigil:"
