from django.core.management.base import BaseCommand

from governance.services.audit import audit_chain_verify_and_record
from governance.services.demo_seed import demo_seed
from tasks import metrics
from tasks.tasks import canary


class Command(BaseCommand):
    help = "Seed teams, AI systems, assessments and evaluations; exercise the workers; verify the audit chain."

    def handle(self, *args, **options):
        report = demo_seed()
        created = ", ".join(f"{n} {what}" for what, n in report.created.items()) or "nothing new (already seeded)"
        self.stdout.write(f"seeded: {created}")
        if report.admin_password:
            self.stdout.write(
                f"admin login: {report.admin_username} / {report.admin_password}  (shown once; change it in the admin)"
            )
        # A round trip through the task machinery, so function metrics have something to show.
        canary.delay()
        flushed = metrics.flush()
        self.stdout.write(f"function metrics: {flushed} window row(s) flushed")
        self.stdout.write(audit_chain_verify_and_record().describe())
