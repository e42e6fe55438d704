"""``manage.py lifecycle_tick``: run the incident lifecycle engine once and print what it did."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from incidents.services.tick import lifecycle_tick


class Command(BaseCommand):
    help = (
        "Run one lifecycle tick now (escalations, follow-ups, auto-close, regulatory warnings, notification "
        "delivery) — what the beat task incidents.lifecycle_tick does every minute."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the report as one JSON object.")
        parser.add_argument(
            "--no-deliver",
            action="store_true",
            help="Leave pending notifications for the workers' next tick instead of enqueueing them now.",
        )

    def handle(self, *args, **options):
        report = lifecycle_tick(enqueue_delivery=not options["no_deliver"])
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
            return
        for key, value in report.as_dict().items():
            self.stdout.write(f"{key.replace('_', ' ')}: {value}")
