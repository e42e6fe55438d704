from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from governance.choices import PredictionType, PredictorSource
from governance.services.predictive import (
    predictions_evaluate_outcomes,
    predictions_run,
    predictors_train,
)


def _as_of(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = parse_datetime(value)
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"--as-of must be an ISO 8601 date-time with a time zone, got {value!r}")
    return parsed


class Command(BaseCommand):
    help = (
        "Predictive governance on demand: (optionally) train new predictor versions, then run the prediction "
        "pass and evaluate matured outcomes; prints the summary, including systems with insufficient data."
    )

    def add_arguments(self, parser):
        parser.add_argument("--as-of", help="Predict as of this ISO 8601 time (default now; truncated to 15 min).")
        parser.add_argument("--train", action="store_true", help="Train new predictor versions first.")
        parser.add_argument("--source", choices=PredictorSource.values, default=PredictorSource.SYNTHETIC,
                            help="Training data: synthetic history with known onsets, or this installation's "
                                 "labelled outcomes (needs retrain_min_labelled).")  # fmt: skip
        parser.add_argument("--seed", type=int, default=42, help="Seed of the synthetic history.")

    def handle(self, *args, **options):
        as_of = _as_of(options["as_of"])
        if options["train"]:
            for record in predictors_train(source=options["source"], seed=options["seed"]):
                m = record.metrics
                self.stdout.write(
                    f"trained {record.prediction_type} v{record.version} ({record.source}): AUC {m.get('auc')}, "
                    f"Brier {m.get('brier')}, precision@threshold {m.get('precision_at_threshold')}, mean lead "
                    f"time {m.get('mean_lead_time_hours')} h{' — active' if record.is_active else ''}"
                )
        result = predictions_run(as_of=as_of)
        if not result.enabled:
            self.stdout.write("predictive governance is disabled (config governance.predictive.enabled)")
            return
        self.stdout.write(
            f"predictions as of {result.as_of.isoformat()}: {result.predicted} new, "
            f"{result.already_predicted} already there, in {result.duration_seconds:.2f} s"
        )
        for prediction_type in PredictionType.values:
            self.stdout.write(f"  {prediction_type}: {result.above_threshold.get(prediction_type, 0)} above threshold")
        if result.insufficient_data:
            self.stdout.write(f"insufficient data ({len(result.insufficient_data)} systems, no prediction):")
            for item in result.insufficient_data:
                self.stdout.write(f"  {item['system']}: {item['reason']}")
        outcomes = predictions_evaluate_outcomes()
        self.stdout.write(f"outcomes evaluated: {sum(outcomes.values())}")
