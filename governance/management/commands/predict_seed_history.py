from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from governance.services.demo_seed import demo_estate_systems
from governance.services.predictive.history import history_generate

DEMO_ACTOR = "system:predict_seed_history"


class Command(BaseCommand):
    help = (
        "Demo only: give the demo estate's AI systems DAYS of synthetic telemetry, evaluation runs and "
        "incident history with planted precursors (COMMITTED), ending now with some risks still unfolding, so "
        "the prediction pass has history to work on. Skips systems that already have events that old."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=8)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument(
            "--ahead-hours", type=int, default=20,
            help="Scenarios are planned up to this many hours past now and written only up to now.",
        )  # fmt: skip

    def handle(self, *args, **options):
        from oversight.selectors import event_history_start

        now = timezone.now()
        systems, _ = demo_estate_systems(actor=DEMO_ACTOR)
        starts = event_history_start(system_ids=[s.pk for s in systems], until=now)
        oldest = now - timedelta(days=options["days"]) + timedelta(hours=options["ahead_hours"] + 1)
        todo = [s for s in systems if s.pk not in starts or starts[s.pk] > oldest]
        if not todo:
            self.stdout.write("the demo estate already has its history")
            return
        with transaction.atomic():
            history = history_generate(
                seed=options["seed"], system_count=len(todo), days=options["days"], systems=todo,
                end=now + timedelta(hours=options["ahead_hours"]), cutoff=now,
            )  # fmt: skip
        counts = ", ".join(f"{n} {name}" for name, n in history.counts.items())
        self.stdout.write(f"history for {len(todo)} demo systems over {options['days']} days: {counts}")
