import json

from django.core.management.base import BaseCommand

from governance.services.predictive import backtest_run
from governance.services.predictive.bench_result import write_backtest_result

TARGETS = {"auc": 0.85, "lead": 6.0}


class Command(BaseCommand):
    help = (
        "Walk-forward backtest of predictive governance on a synthetic history with labelled onsets (rolled "
        "back: nothing is left in the database). Prints AUC, Brier, precision at the alert threshold and mean "
        "lead time per prediction type; writes bench/results/predict_backtest.json and docs/benchmarks.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--systems", type=int, default=60)
        parser.add_argument("--days", type=int, default=14)
        parser.add_argument("--step-hours", type=int, default=1)
        parser.add_argument("--no-write", action="store_true", help="Print only; write no result files.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, **options):
        report = backtest_run(seed=options["seed"], systems=options["systems"], days=options["days"],
                              step_hours=options["step_hours"])  # fmt: skip
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(
                f"backtest seed {report.seed}: {report.systems} systems × {report.days} days, step "
                f"{report.step_hours} h, horizon {report.timeframe_hours} h; {report.rows_written.get('events')} "
                f"events; {report.train_samples} training / {report.holdout_samples} held-out samples; "
                f"{report.duration_seconds:.1f} s"
            )
            for prediction_type, r in report.by_type.items():
                m = r.metrics
                self.stdout.write(
                    f"  {prediction_type:<22} AUC {m['auc']}  Brier {m['brier']}  precision@{m['threshold']} "
                    f"{m['precision_at_threshold']}  recall {m['recall_at_threshold']}  mean lead "
                    f"{m['mean_lead_time_hours']} h ({m['onsets_detected']}/{m['onsets']} onsets)"
                )
        if not options["no_write"]:
            path = write_backtest_result(report)
            self.stdout.write(f"written {path}")
