from django.core.management.base import BaseCommand

from governance.choices import AuditAction
from governance.services.audit import audit_record
from tasks.scheduling import schedules_sync


class Command(BaseCommand):
    help = "Write every periodic task of Vigil into django-celery-beat (idempotent; also runs after migrate)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Also restore the declared interval and enabled flag of existing entries.",
        )

    def handle(self, *args, reset: bool = False, **options):
        report = schedules_sync(reset=reset)
        if report.created or report.updated or report.disabled_orphans:
            audit_record(
                action=AuditAction.SCHEDULE_SYNCED,
                actor="system:sync_schedules",
                data={
                    "created": report.created,
                    "updated": report.updated,
                    "disabled_orphans": report.disabled_orphans,
                    "reset": reset,
                },
            )
        for name in report.created:
            self.stdout.write(f"created   {name}")
        for name in report.updated:
            self.stdout.write(f"updated   {name}")
        for name in report.disabled_orphans:
            self.stdout.write(f"disabled  {name} (no longer declared)")
        self.stdout.write(self.style.SUCCESS(f"beat schedule: {report.describe()}"))
