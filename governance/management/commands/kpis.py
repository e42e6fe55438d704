import json

from django.core.management.base import BaseCommand

from governance.management.text_tables import text_table
from governance.services.kpis import kpi_report
from governance.templatetags.vigil_format import duration_text

STATUS_MARK = {"met": "✔ met", "not_met": "✘ not met", "not_measured": "— not measured"}
CAPABILITY_MARK = {"enforced": "✔", "not_enforced": "✘", "not_measured": "—"}


def render_kpi_table(report: dict) -> str:
    """The scorecard as a plain-text table (also used by the demo)."""
    rows = [("KPI", "Baseline", "Target", "Now", "Status")]
    rows += [(k["label"], k["baseline"], k["target"], k["display"], STATUS_MARK[k["status"]]) for k in report["kpis"]]
    lines = text_table(rows)
    caps = report["capabilities"]
    lines.append("")
    lines.append(f"Governance capabilities: {caps['enforced']}/{caps['total']} enforced")
    for item in caps["items"]:
        lines.append(f"  {CAPABILITY_MARK[item['status']]} {item['number']:>2}. {item['name']}: {item['evidence']}")
    if report.get("response_times"):
        lines += ["", "Incident response, last 30 days (MTTA / MTTR, p50 and p95)"]
        rows = [("Severity", "MTTA p50", "MTTA p95", "MTTR p50", "MTTR p95", "Acknowledged", "Resolved")]
        rows += [
            (
                r["severity"],
                *(duration_text(r[k]) for k in ("mtta_p50", "mtta_p95", "mttr_p50", "mttr_p95")),
                r["acknowledged"],
                r["resolved"],
            )  # fmt: skip
            for r in report["response_times"]
        ]
        lines += text_table(rows)
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Print the KPI scorecard (the plan's success criteria) computed from data."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, **options):
        report = kpi_report()
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False))
        else:
            self.stdout.write(render_kpi_table(report))
