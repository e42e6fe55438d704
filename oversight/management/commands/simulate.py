"""``manage.py simulate``: run a simulation end to end and print its measured report.

Drives the steps in this process by default (with eager Celery, processing runs on each commit); with
``--async`` the workers run it and this command only watches. ``--check`` turns the report into a
quality gate (exit 1 when precision, recall or the MTTD p95 miss their marks).
"""

from __future__ import annotations

import json
import sys
import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from governance.management.text_tables import text_table
from oversight.metrics import QUALITY_GATE, quality_gate_failures, simulation_progress
from oversight.models import Simulation
from oversight.services.simulation import (
    FINAL_STATUSES,
    SimulationConflict,
    run_simulation_inline,
    simulation_start,
    simulation_step,
    simulation_stop,
)

ACTOR = "cli:simulate"
POLL_SECONDS = 0.5
COUNTER_KEYS = ("generated", "ingested", "processed", "alerts", "incidents", "reviews")
PROGRESS_QUERY_INTERVAL = 0.5  # seconds between the two count queries behind the progress bar


class Command(BaseCommand):
    help = "Run a simulation (synthetic events with planted scenarios) through the pipeline and report on it."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=10_000, help="Events to generate (default 10,000).")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument(
            "--rate",
            type=float,
            default=1000.0,
            help="Events per second in real time (default 1000); 0: a backdated history sent as fast as possible.",
        )
        parser.add_argument("--batch-size", type=int, default=500, help="Events per ingested batch (default 500).")
        parser.add_argument("--mix", help='Category shares as JSON, e.g. \'{"data_quality": 0.5, "fairness": 0.5}\'.')
        parser.add_argument("--async", action="store_true", dest="run_async", help="Let the workers run it; watch.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--check",
            action="store_true",
            help=(
                f"Exit 1 if precision < {QUALITY_GATE['min_precision']}, recall < {QUALITY_GATE['min_recall']} "
                f"or the MTTD p95 (scenario onset → alert) > {QUALITY_GATE['max_mttd_p95_seconds']:g} s."
            ),
        )

    def handle(self, *args, **options):
        simulation = self._start(options)
        bar = tqdm(
            total=simulation.total,
            unit="ev",
            desc=f"simulation {simulation.id.hex[:8]}",
            file=sys.stderr,
            disable=options["no_progress"],
            dynamic_ncols=True,
        )
        watcher = _ProgressWatcher(bar)
        try:
            if options["run_async"]:
                simulation = self._watch(simulation, watcher)
            else:
                simulation = run_simulation_inline(simulation, on_progress=watcher)
        except KeyboardInterrupt:
            simulation = self._interrupt(simulation)
        finally:
            watcher.update(simulation, force=True)
            bar.close()
        report = simulation.report
        if options["json"]:
            self.stdout.write(json.dumps(_report_document(simulation), indent=2, ensure_ascii=False))
        else:
            self.stdout.write(render_report(simulation))
        if simulation.status != "finished":
            raise CommandError(f"simulation ended {simulation.status}: {simulation.error or 'see the report'}")
        if options["check"]:
            failures = quality_gate_failures(report)
            if failures:
                raise CommandError("quality check failed: " + "; ".join(failures))
            self.stderr.write("quality check passed")

    def _start(self, options) -> Simulation:
        mix = None
        if options["mix"]:
            try:
                mix = json.loads(options["mix"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--mix is not valid JSON: {exc}") from exc
        try:
            return simulation_start(
                total=options["count"],
                batch_size=options["batch_size"],
                rate_per_s=options["rate"] or None,
                seed=options["seed"],
                mix=mix,
                actor=ACTOR,
                enqueue=options["run_async"],
            )
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
            raise CommandError(f"invalid simulation parameters: {problems}") from exc
        except SimulationConflict as exc:
            raise CommandError(str(exc)) from exc

    def _watch(self, simulation: Simulation, watcher) -> Simulation:
        while simulation.status not in FINAL_STATUSES:
            time.sleep(POLL_SECONDS)
            simulation.refresh_from_db()
            watcher(simulation)
        return simulation

    def _interrupt(self, simulation: Simulation) -> Simulation:
        """Ctrl-C: ask the simulation to stop and, when driving it here, let one step finalize it."""
        self.stderr.write("interrupted: stopping the simulation")
        simulation.refresh_from_db()
        if simulation.status not in FINAL_STATUSES:
            simulation_stop(simulation=simulation, actor=ACTOR)
            simulation_step(simulation_id=simulation.pk)
        simulation.refresh_from_db()
        return simulation


class _ProgressWatcher:
    """Moves the bar to the simulation's cursor; the processed/alert counts are refreshed at most every
    ``PROGRESS_QUERY_INTERVAL`` seconds (two count queries)."""

    def __init__(self, bar: tqdm):
        self.bar = bar
        self.last_query = 0.0

    def __call__(self, simulation: Simulation) -> None:
        self.update(simulation)

    def update(self, simulation: Simulation, *, force: bool = False) -> None:
        if self.bar.disable:
            return
        self.bar.update(simulation.cursor - self.bar.n)
        now = time.monotonic()
        if force or now - self.last_query >= PROGRESS_QUERY_INTERVAL:
            self.last_query = now
            progress = simulation_progress(simulation)
            self.bar.set_postfix(
                status=simulation.status, processed=progress["processed"], alerts=progress["alerts"], refresh=False
            )


def _report_document(simulation: Simulation) -> dict:
    return {
        "id": str(simulation.id),
        "status": simulation.status,
        "total": simulation.total,
        "batch_size": simulation.batch_size,
        "rate_per_s": simulation.rate_per_s,
        "seed": simulation.seed,
        "mix": simulation.mix or None,
        "started_at": simulation.started_at.isoformat() if simulation.started_at else None,
        "finished_at": simulation.finished_at.isoformat() if simulation.finished_at else None,
        "error": simulation.error,
        **{key: value for key, value in simulation.report.items() if key != "plan"},
    }


def _pct(value) -> str:
    return "–" if value is None else f"{value:.2%}"


def _secs(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def render_report(simulation: Simulation) -> str:
    """The final report as plain-text tables: counts, MTTD, quality overall and per category, throughput."""
    report = simulation.report
    rate = f"{simulation.rate_per_s:g} ev/s" if simulation.rate_per_s else "as fast as possible (backdated)"
    lines = [
        f"Simulation {simulation.id} · {simulation.status} · seed {simulation.seed} · {simulation.total:,} events · "
        f"{rate} · batches of {simulation.batch_size}",
        "",
    ]
    counters = report.get("counters", {})
    lines += text_table(
        [tuple(key.capitalize() for key in COUNTER_KEYS), tuple(f"{counters.get(key, 0):,}" for key in COUNTER_KEYS)]
    )
    lines.append("")
    mttd = report.get("mttd_seconds", {})
    latency = report.get("detection_latency_seconds", {})
    lines.append("Time to detect (seconds): MTTD from the onset; latency from the evidence being complete")
    lines += text_table(
        [("Severity", "MTTD p50", "MTTD p95", "Latency p50", "Latency p95", "Detections")]
        + [
            (
                severity,
                _secs(f["p50"]),
                _secs(f["p95"]),
                _secs(latency.get(severity, {}).get("p50")),
                _secs(latency.get(severity, {}).get("p95")),
                f["count"],
            )
            for severity, f in mttd.items()
        ]
    )
    lines.append("")
    quality = report.get("quality", {})
    lines.append("Detection quality")
    rows = [("Category", "Precision", "Recall", "F1", "Alerts", "True", "Scenarios", "Detected")]
    for name, figures in [*quality.get("by_category", {}).items(), ("overall", quality)]:
        rows.append(
            (
                name,
                _pct(figures.get("precision")),
                _pct(figures.get("recall")),
                _pct(figures.get("f1")),
                figures.get("alerts", 0),
                figures.get("true_alerts", 0),
                figures.get("scenarios", 0),
                figures.get("detected", 0),
            )
        )
    lines += text_table(rows)
    if quality.get("missed"):
        lines.append(f"missed scenarios: {', '.join(quality['missed'])}")
    if quality.get("false_alerts"):
        lines.append(f"false alerts: {', '.join(quality['false_alerts'])}")
    throughput = report.get("throughput", {})
    lines += [
        "",
        "Throughput: "
        f"{throughput.get('events_per_second_ingested') or '–'} events/s ingested, "
        f"{throughput.get('events_per_second_processed') or '–'} events/s processed, "
        f"{throughput.get('batches', 0)} batches "
        f"(processing p95 {throughput.get('batch_processing_ms_p95') or '–'} ms), "
        f"{throughput.get('duration_seconds') or '–'} s in all",
    ]
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
