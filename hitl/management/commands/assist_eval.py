"""``manage.py assist_eval``: how well the auto-assist model agrees with people, and how honest its
confidence is — measured on the newest human decisions, held out from training."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from governance.management.text_tables import text_table
from hitl.services.assist import AssistEvaluationUnavailable, assist_evaluate


class Command(BaseCommand):
    help = "Report held-out agreement, expected calibration error (ECE) and a reliability table for auto-assist."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, **options):
        try:
            report = assist_evaluate()
        except AssistEvaluationUnavailable as exc:
            raise CommandError(f"cannot evaluate auto-assist: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2, sort_keys=True))
            return
        rules = f"{report.rules_agreement:.1%}" if report.rules_agreement is not None else "n/a"
        lines = [
            f"auto-assist evaluation ({report.n_train} decisions to learn from, {report.n_holdout} newest held out)",
            f"agreement with people: {report.agreement:.1%}   (rules alone: {rules})",
            f"expected calibration error (ECE): {report.ece:.4f}   temperature {report.temperature:g}",
            "",
            "reliability (top suggestion confidence vs how often people agreed):",
            *text_table(
                [
                    ("confidence", "items", "mean confidence", "agreement"),
                    *(
                        (f"{low:.1f}–{high:.1f}", count, f"{mean:.3f}", f"{accuracy:.3f}")
                        for low, high, count, mean, accuracy in report.reliability
                    ),
                ]
            ),
            "",
            "per decision (held out):",
            *text_table(
                [
                    ("decision", "people", "suggested", "agreed"),
                    *(
                        (name, counts["human"], counts["suggested"], counts["agreed"])
                        for name, counts in report.per_class.items()
                    ),
                ]
            ),
        ]
        if report.active_model_version is not None:
            lines.append(f"\nactive model: v{report.active_model_version}")
        self.stdout.write("\n".join(lines))
