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
        task="governance.audit_verify",
        every_seconds=3600,
        description="Walk the hash-chained audit log and record the result; a break is logged and audited.",
        expires_seconds=3000,
    ),
)

PREFIX = "vigil:"
