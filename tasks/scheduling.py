"""Keeping django-celery-beat's tables in step with ``tasks.schedules``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tasks.schedules import PREFIX, SCHEDULES, ScheduleSpec


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    disabled_orphans: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
            f"{len(self.disabled_orphans)} orphaned disabled"
        )


def _interval(seconds: int) -> IntervalSchedule:
    schedule, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
    return schedule


def _owned_fields(spec: ScheduleSpec) -> dict:
    return {
        "task": spec.task,
        "queue": spec.queue,
        "expire_seconds": spec.expires_seconds,
        "description": spec.description,
        "kwargs": json.dumps({}),
    }


@transaction.atomic
def schedules_sync(*, reset: bool = False, specs: tuple[ScheduleSpec, ...] = SCHEDULES) -> SyncReport:
    """Upsert every declared periodic task by name; idempotent.

    New entries get the declared interval and enabled flag. Existing entries keep the interval and
    enabled flag operators set in the admin, unless ``reset``. Entries named ``vigil:*`` that are no
    longer declared are disabled (not deleted, so their history stays).
    """
    report = SyncReport()
    declared = {spec.periodic_task_name for spec in specs}
    for spec in specs:
        task = PeriodicTask.objects.select_for_update().filter(name=spec.periodic_task_name).first()
        owned = _owned_fields(spec)
        if task is None:
            PeriodicTask.objects.create(
                name=spec.periodic_task_name, interval=_interval(spec.every_seconds), enabled=spec.enabled, **owned
            )
            report.created.append(spec.periodic_task_name)
            continue
        changed = [name for name, value in owned.items() if getattr(task, name) != value]
        for name in changed:
            setattr(task, name, owned[name])
        if reset:
            interval = _interval(spec.every_seconds)
            other_schedules = (task.crontab_id, task.solar_id, task.clocked_id)
            if (
                task.interval_id != interval.pk
                or any(pk is not None for pk in other_schedules)
                or task.enabled != spec.enabled
            ):
                # django-celery-beat refuses an entry with two kinds of schedule: clear every other kind
                task.interval, task.crontab, task.solar, task.clocked = interval, None, None, None
                task.enabled = spec.enabled
                changed.append("interval")
        if changed:
            task.save()
            report.updated.append(spec.periodic_task_name)
        else:
            report.unchanged.append(spec.periodic_task_name)
    orphans = PeriodicTask.objects.filter(name__startswith=PREFIX, enabled=True).exclude(name__in=declared)
    for task in orphans:
        task.enabled = False
        task.save(update_fields=["enabled"])
        report.disabled_orphans.append(task.name)
    return report
