"""``manage.py simulate`` end to end (eager Celery: processing runs on each commit), and the quality
guard: a fixed simulation must keep precision ≥ 0.95 and recall ≥ 0.98 — and the check must fail
when detection gets worse."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from oversight.metrics import quality_gate_failures
from oversight.models import DetectionRule, ScenarioLabel, Simulation, SimulationStatus
from oversight.services.simulation import MAX_ACTIVE_SIMULATIONS

# Real commits: the ingest service enqueues processing on commit, and the steps wait for it.
pytestmark = pytest.mark.django_db(transaction=True)

GUARD = ("--count", "3000", "--seed", "7", "--rate", "0", "--batch-size", "500", "--no-progress")


def simulate(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("simulate", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_simulate_runs_a_real_time_simulation_end_to_end_and_prints_json():
    out, _ = simulate("--count", "600", "--rate", "2000", "--batch-size", "200", "--no-progress", "--json")

    report = json.loads(out)
    simulation = Simulation.objects.get(pk=report["id"])
    assert report["status"] == simulation.status == SimulationStatus.FINISHED
    assert report["counters"]["generated"] == report["counters"]["ingested"] == report["counters"]["processed"] == 600
    labelled = ScenarioLabel.objects.filter(simulation=simulation).exclude(expected_rule="").count()
    assert report["quality"]["scenarios"] == labelled > 0
    assert report["quality"]["detected"] == labelled
    assert report["counters"]["alerts"] == report["quality"]["alerts"] > 0
    assert report["mttd_seconds"]["all"]["count"] == report["detection_latency_seconds"]["all"]["count"] == labelled
    assert report["throughput"]["batches"] == 3
    assert not simulation.systems.filter(is_active=True).exists()


def test_simulate_prints_the_report_tables_by_default():
    out, _ = simulate("--count", "300", "--rate", "0", "--no-progress")

    assert "Time to detect (seconds)" in out
    assert "Detection quality" in out
    assert any(line.startswith("overall") for line in out.splitlines())
    assert "Throughput:" in out


def test_the_quality_guard_holds_for_a_fixed_simulation():
    out, err = simulate(*GUARD, "--json", "--check")

    report = json.loads(out)
    assert report["quality"]["precision"] >= 0.95
    assert report["quality"]["recall"] >= 0.98
    assert "quality check passed" in err


def test_the_quality_guard_fails_when_a_rule_stops_detecting():
    DetectionRule.objects.filter(name="rate:data_quality").update(enabled=False)

    with pytest.raises(CommandError, match=r"quality check failed: recall \d+\.\d+% < 98\.00% \(missed: sim:"):
        simulate(*GUARD, "--check")

    report = Simulation.objects.get().report
    assert report["quality"]["recall"] < 0.98
    assert report["quality"]["by_category"]["data_quality"]["recall"] < 1.0
    assert any(failure.startswith("recall") for failure in quality_gate_failures(report))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--count", "0"), "total: must be between 1 and 1,000,000"),
        (("--count", "10", "--batch-size", "9000"), "batch_size"),
        (("--count", "10", "--mix", "{nope"), "--mix is not valid JSON"),
        (("--count", "10", "--mix", '{"fairness": 0.5}'), "shares must sum to 1"),
    ],
)
def test_bad_arguments_fail_with_a_clear_message(args, message):
    with pytest.raises(CommandError, match=message):
        simulate(*args, "--no-progress")

    assert not Simulation.objects.exists()


def test_simulate_refuses_to_start_a_third_active_simulation():
    Simulation.objects.bulk_create(
        [Simulation(total=10, status=SimulationStatus.RUNNING) for _ in range(MAX_ACTIVE_SIMULATIONS)]
    )

    with pytest.raises(CommandError, match="At most 2 simulations"):
        simulate("--count", "10", "--no-progress")


def test_async_mode_lets_the_task_run_it_and_watches():
    out, _ = simulate("--count", "200", "--rate", "0", "--async", "--no-progress", "--json")

    assert json.loads(out)["status"] == "finished"
