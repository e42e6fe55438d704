from django.core.management.base import BaseCommand

from governance.services.demo_seed import demo_estate_systems
from governance.services.predictive.history import estate_history_seed

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
        systems, _ = demo_estate_systems(actor=DEMO_ACTOR)
        report = estate_history_seed(
            systems=systems, days=options["days"], seed=options["seed"], ahead_hours=options["ahead_hours"]
        )
        if not report.systems:
            self.stdout.write("the demo estate already has its history")
            return
        counts = ", ".join(f"{n} {name}" for name, n in report.counts.items())
        self.stdout.write(f"history for {report.systems} demo systems over {options['days']} days: {counts}")
