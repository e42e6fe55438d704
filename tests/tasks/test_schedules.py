"""The beat schedule: declared in tasks/schedules.py, synced into django-celery-beat, tuned by operators."""

from __future__ import annotations

import io

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db.models.signals import post_migrate
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from governance.choices import AuditAction
from governance.models import AuditLog
from tasks.schedules import SCHEDULES, ScheduleSpec
from tasks.scheduling import schedules_sync

pytestmark = pytest.mark.django_db

AUDIT_VERIFY = "vigil:governance.audit_verify"


def audit_verify_entry() -> PeriodicTask:
    return PeriodicTask.objects.select_related("interval").get(name=AUDIT_VERIFY)


def every(seconds: int) -> IntervalSchedule:
    schedule, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
    return schedule


def sync_command(*args: str) -> str:
    out = io.StringIO()
    call_command("sync_schedules", *args, stdout=out)
    return out.getvalue()


def schedule_audits():
    return AuditLog.objects.filter(action=AuditAction.SCHEDULE_SYNCED)


# --- What migrate leaves behind ------------------------------------------------------------------


def test_every_declared_schedule_exists_after_migrations_with_its_declared_settings():
    spec = next(spec for spec in SCHEDULES if spec.task == "governance.audit_verify")

    entry = audit_verify_entry()

    assert entry.task == "governance.audit_verify"
    assert entry.interval.every == spec.every_seconds == 3600
    assert entry.interval.period == IntervalSchedule.SECONDS
    assert entry.crontab is None
    assert entry.enabled is True
    assert entry.queue == "default"
    assert entry.expire_seconds == spec.expires_seconds
    assert entry.description == spec.description
    assert set(PeriodicTask.objects.filter(name__startswith="vigil:").values_list("name", flat=True)) == {
        spec.periodic_task_name for spec in SCHEDULES
    }


def test_migrate_recreates_a_deleted_schedule():
    PeriodicTask.objects.filter(name=AUDIT_VERIFY).delete()
    tasks_app = apps.get_app_config("tasks")

    post_migrate.send(
        sender=tasks_app, app_config=tasks_app, verbosity=0, interactive=False, using="default", apps=apps, plan=[]
    )

    assert audit_verify_entry().interval.every == 3600


# --- schedules_sync ------------------------------------------------------------------------------


def test_sync_is_idempotent():
    report = schedules_sync()

    assert report.created == []
    assert report.updated == []
    assert report.disabled_orphans == []
    assert sorted(report.unchanged) == sorted(spec.periodic_task_name for spec in SCHEDULES)
    assert PeriodicTask.objects.filter(name=AUDIT_VERIFY).count() == 1


def test_sync_creates_a_newly_declared_schedule_as_declared():
    spec = ScheduleSpec(
        task="tests.probe_tick",
        every_seconds=120,
        description="A probe.",
        queue="events",
        expires_seconds=90,
        enabled=False,
    )

    report = schedules_sync(specs=(*SCHEDULES, spec))

    assert report.created == ["vigil:tests.probe_tick"]
    entry = PeriodicTask.objects.get(name="vigil:tests.probe_tick")
    assert (entry.task, entry.queue, entry.expire_seconds, entry.enabled) == ("tests.probe_tick", "events", 90, False)
    assert entry.interval.every == 120
    assert "vigil:tests.probe_tick" in schedules_sync(specs=(*SCHEDULES, spec)).unchanged


def test_an_operators_interval_and_enabled_flag_survive_a_sync():
    entry = audit_verify_entry()
    entry.interval = every(600)
    entry.enabled = False
    entry.save()

    report = schedules_sync()

    assert AUDIT_VERIFY in report.unchanged
    entry = audit_verify_entry()
    assert entry.interval.every == 600
    assert entry.enabled is False


def test_sync_restores_the_fields_the_code_owns_but_keeps_the_operators_interval():
    entry = audit_verify_entry()
    entry.interval = every(600)
    entry.queue = "events"
    entry.task = "governance.renamed"
    entry.save()

    report = schedules_sync()

    assert report.updated == [AUDIT_VERIFY]
    entry = audit_verify_entry()
    assert (entry.task, entry.queue) == ("governance.audit_verify", "default")
    assert entry.interval.every == 600


def test_reset_restores_the_declared_interval_and_enabled_flag():
    entry = audit_verify_entry()
    entry.interval = every(600)
    entry.enabled = False
    entry.save()

    report = schedules_sync(reset=True)

    assert report.updated == [AUDIT_VERIFY]
    entry = audit_verify_entry()
    assert entry.interval.every == 3600
    assert entry.enabled is True


def test_reset_replaces_an_operators_crontab_with_the_declared_interval():
    entry = audit_verify_entry()
    entry.interval = None
    entry.crontab = CrontabSchedule.objects.create(minute="5", hour="*")
    entry.save()

    schedules_sync()
    assert audit_verify_entry().crontab is not None  # without --reset the operator's choice stands

    schedules_sync(reset=True)
    entry = audit_verify_entry()
    assert entry.crontab is None
    assert entry.interval.every == 3600


def test_reset_of_an_untouched_schedule_changes_nothing():
    assert sorted(schedules_sync(reset=True).unchanged) == sorted(s.periodic_task_name for s in SCHEDULES)


def test_sync_disables_an_orphaned_vigil_schedule_and_leaves_others_alone():
    PeriodicTask.objects.create(name="vigil:old.task", task="old.task", interval=every(60), enabled=True)
    PeriodicTask.objects.create(name="nightly export", task="ops.export", interval=every(86400), enabled=True)

    report = schedules_sync()

    assert report.disabled_orphans == ["vigil:old.task"]
    assert PeriodicTask.objects.get(name="vigil:old.task").enabled is False
    assert PeriodicTask.objects.get(name="nightly export").enabled is True
    assert audit_verify_entry().enabled is True
    assert schedules_sync().disabled_orphans == []  # already disabled: nothing to report next time


# --- manage.py sync_schedules --------------------------------------------------------------------


def test_the_command_writes_no_audit_entry_when_nothing_changed():
    output = sync_command()

    assert f"0 created, 0 updated, {len(SCHEDULES)} unchanged, 0 orphaned disabled" in output
    assert not schedule_audits().exists()


def test_the_command_audits_what_it_created():
    PeriodicTask.objects.filter(name=AUDIT_VERIFY).delete()

    output = sync_command()

    assert f"created   {AUDIT_VERIFY}" in output
    audit = schedule_audits().get()
    assert audit.actor == "system:sync_schedules"
    assert audit.data == {"created": [AUDIT_VERIFY], "updated": [], "disabled_orphans": [], "reset": False}


def test_the_command_with_reset_restores_an_operators_change_and_audits_it():
    entry = audit_verify_entry()
    entry.interval = every(600)
    entry.enabled = False
    entry.save()

    output = sync_command("--reset")

    assert f"updated   {AUDIT_VERIFY}" in output
    entry = audit_verify_entry()
    assert (entry.interval.every, entry.enabled) == (3600, True)
    audit = schedule_audits().get()
    assert audit.data == {"created": [], "updated": [AUDIT_VERIFY], "disabled_orphans": [], "reset": True}


def test_the_command_audits_disabled_orphans():
    PeriodicTask.objects.create(name="vigil:old.task", task="old.task", interval=every(60), enabled=True)

    output = sync_command()

    assert "disabled  vigil:old.task (no longer declared)" in output
    assert schedule_audits().get().data["disabled_orphans"] == ["vigil:old.task"]


def test_reset_replaces_an_operators_solar_schedule_with_the_declared_interval():
    entry = audit_verify_entry()
    entry.interval = None
    entry.solar = SolarSchedule.objects.create(event="sunrise", latitude=52.52, longitude=13.40)
    entry.save()

    schedules_sync(reset=True)

    entry = audit_verify_entry()
    assert entry.solar is None
    assert entry.interval.every == 3600
