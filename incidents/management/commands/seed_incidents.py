"""``manage.py seed_incidents --open 218``: the plan's open-incident backlog on the demo estate."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from incidents.services.seed import incidents_seed


class Command(BaseCommand):
    help = (
        "Seed open incidents (a few critical, some high, many medium/low/info; stale ones, follow-ups, RCAs "
        "on some serious ones); re-running creates only what is missing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--open", type=int, default=218, help="Open incidents in the plan (default 218).")
        parser.add_argument("--seed", type=int, default=42, help="The same seed plans the same incidents.")

    def handle(self, *args, **options):
        if options["open"] < 0:
            raise CommandError("--open must not be negative")
        report = incidents_seed(count=options["open"], seed=options["seed"])
        severities = ", ".join(f"{n} {s}" for s, n in sorted(report.by_severity.items())) or "none"
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(report.by_status.items())) or "none"
        self.stdout.write(f"open incidents created: {report.created} ({severities})")
        self.stdout.write(f"by status: {statuses}")
        self.stdout.write(
            f"stale low/info (no activity for over a week): {report.stale}, {report.follow_ups} with an open "
            f"follow-up; complete RCA on {report.rca_complete} high/critical"
        )
        if report.admin_password:
            self.stdout.write(f"demo estate created; admin login: demo-admin / {report.admin_password} (shown once)")
