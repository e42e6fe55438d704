"""``manage.py demo --mode investor|audit|training``: play the golden demo in this process, narrated.

Rich terminal output: a progress bar over the scenario's steps, each step's narration (what happens,
what the platform does, why it matters) and result, then the KPI table before → after. Exit status 1
when a step's expected outcome does not hold (the message names the step and the counter). With
``--evidence PATH`` (always in audit mode) the run's evidence package is written and its path and
SHA-256 printed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from governance.choices import DemoCategory, DemoRunStatus
from governance.models import DemoRun
from governance.services.demo import (
    DemoRunConflict,
    DemoRunInvalid,
    demo_run_execute,
    demo_run_start,
    narration,
    scenario_resolve,
)
from governance.services.demo_evidence import DEFAULT_EVIDENCE_DIR, evidence_export

STATUS_STYLE = {"met": "green", "not_met": "red", "not_measured": "yellow"}
STATUS_TEXT = {"met": "✔ met", "not_met": "✘ not met", "not_measured": "— not measured"}
MODES = [DemoCategory.INVESTOR, DemoCategory.AUDIT, DemoCategory.TRAINING]


class Command(BaseCommand):
    help = "Play the golden demo (investor, audit or training scenario) with narration and a KPI table."

    def add_arguments(self, parser):
        parser.add_argument("--mode", choices=MODES, default=DemoCategory.INVESTOR)
        parser.add_argument("--scenario", help="Play this scenario (name or id) instead of the mode's default.")
        parser.add_argument("--seed", type=int, default=42, help="The same seed replays the same story.")
        parser.add_argument(
            "--evidence",
            metavar="PATH",
            help=f"Write the evidence package here (a .zip, or a directory). Audit mode: {DEFAULT_EVIDENCE_DIR}/.",
        )
        parser.add_argument("--quiet", action="store_true", help="No narration, only results and the KPI table.")

    def handle(self, *args, **options):
        console = Console(file=self.stdout._out, no_color=options["no_color"], highlight=False)
        if not console.is_terminal:
            console.width = 110  # a log file or CI: wide enough for the KPI table on one line per row
        # Eager tasks log one line each at INFO; the narration says what they do. A filter, because a
        # later logging reconfiguration re-enables disabled loggers.
        logging.getLogger("celery.app.trace").addFilter(_quiet)
        try:
            scenario = scenario_resolve(scenario=options["scenario"], mode=options["mode"])
            run = demo_run_start(scenario=scenario, seed=options["seed"], user=None)
        except DemoRunInvalid as exc:
            raise CommandError(str(exc)) from exc
        except DemoRunConflict as exc:
            raise CommandError(str(exc)) from exc
        console.rule(f"[bold]Vigil golden demo · {scenario.scenario_name}[/] · mode {run.mode} · seed {run.seed}")
        console.print(scenario.description, style="dim")
        progress = Progress(
            TextColumn("[bold blue]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        task = progress.add_task("starting", total=run.steps_total)

        def on_event(kind: str, current: DemoRun, index: int) -> None:
            result = current.step_results[index]
            if kind == "step_started":
                progress.update(task, description=f"{index + 1}/{current.steps_total} {result['title']}")
                if not options["quiet"]:
                    text = narration(current, index)
                    progress.console.print(
                        Panel(
                            f"[bold]What[/]  {text['what']}\n[bold]How[/]   {text['technically']}\n"
                            f"[bold]Why[/]   {text['why']}",
                            title=f"Step {index + 1}/{current.steps_total} · {result['title']}",
                            title_align="left",
                            border_style="blue",
                        )
                    )
                return
            progress.advance(task)
            ok = result["status"] == "succeeded"
            mark = "[green]✔[/]" if ok else "[red]✘[/]"
            seconds = (result["duration_ms"] or 0) / 1000
            progress.console.print(f"{mark} {result['title']} [dim]({seconds:.1f} s)[/] — {result['message']}")
            for failure in (result.get("outcome") or {}).get("failures", []):
                progress.console.print(f"   [red]expected outcome not met:[/] {failure}")
            if not options["quiet"] and ok and index + 1 < current.steps_total:
                progress.console.print(f"   [dim]Next: {narration(current, index)['next']}[/]")

        with progress:
            run = demo_run_execute(run_id=run.pk, on_event=on_event)
        console.print(kpi_table(run))
        if run.mode == DemoCategory.AUDIT or options["evidence"]:
            target = Path(options["evidence"]) if options["evidence"] else Path(DEFAULT_EVIDENCE_DIR)
            package = evidence_export(run=run, destination=target, actor="cli:demo")
            console.print(f"Evidence package: [bold]{package.path}[/] (sha256 {package.sha256})")
            console.print(f"Verify it with:  python manage.py verify_evidence {package.path}")
        took = (run.finished_at - run.started_at).total_seconds() if run.started_at and run.finished_at else 0
        if run.status != DemoRunStatus.SUCCEEDED:
            console.print(f"[red bold]Demo run {run.pk} failed[/] after {took:.1f} s: {run.error}")
            raise CommandError(run.error or "the demo run failed")
        console.print(f"[green bold]Demo run {run.pk} succeeded[/] in {took:.1f} s ({run.steps_total} steps).")
        console.print(
            "Next: 'make serve', then open the run in the admin (Governance › Demo runs) to replay it step by step."
        )


def _quiet(record: logging.LogRecord) -> bool:
    return record.levelno > logging.INFO


def kpi_table(run: DemoRun) -> Table:
    """The plan's KPI table: baseline, before the run, after it (and the run's own proof when it has one)."""
    before = {row["code"]: row for row in (run.kpis_before or {}).get("kpis", [])}
    proof = {row["code"]: row for row in (run.counters.get("kpi_proof") and _proof(run)) or []}
    table = Table(title="The plan's KPIs: before → after this run", title_justify="left")
    for column in ("KPI", "Baseline (plan)", "Target", "Before", "After", "Status"):
        table.add_column(column)
    for row in (run.kpis_after or {}).get("kpis", []):
        shown = proof.get(row["code"], row)
        status = shown["status"]
        after = shown["display"] + (" (this run)" if shown.get("scope") == "this run" else "")
        baseline = row["baseline"] + (f" (run: {shown['baseline']})" if shown["baseline"] != row["baseline"] else "")
        table.add_row(
            row["label"],
            baseline,
            shown["target"],
            before.get(row["code"], {}).get("display", "–"),
            after,
            f"[{STATUS_STYLE.get(status, 'white')}]{STATUS_TEXT.get(status, status)}[/]",
        )
    return table


def _proof(run: DemoRun) -> list[dict]:
    for result in run.step_results:
        if result["key"] == "kpi_proof":
            return result.get("measured", {}).get("proof", [])
    return []
