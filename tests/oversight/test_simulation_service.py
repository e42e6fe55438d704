"""The simulation controller: start, steps in real time and as a backdated history, waiting for
processing, stop, failure, duplicate steps, the task."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from config import registry
from governance.models import AISystem, AuditLog
from oversight.models import IngestBatch, ScenarioLabel, Simulation, SimulationStatus
from oversight.services import simulation as service
from oversight.services.simulation import (
    SimulationConflict,
    run_simulation_inline,
    run_step_task,
    simulation_plan,
    simulation_start,
    simulation_step,
    simulation_stop,
)

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) + timedelta(days=1)


@pytest.fixture
def enqueued(monkeypatch):
    """Steps the service enqueues (after commit) are recorded, not run."""
    sent: list[tuple[str, float | None]] = []
    monkeypatch.setattr(
        service, "enqueue_simulation_step", lambda pk, countdown=None: sent.append((str(pk), countdown))
    )
    return sent


@pytest.fixture
def unprocessed_batches(monkeypatch):
    """Ingested batches are not enqueued for processing (a pipeline with no worker)."""
    monkeypatch.setattr("oversight.services.ingest._enqueue_processing", lambda batch_id: None)


def start(**overrides) -> Simulation:
    params = {"total": 300, "batch_size": 100, "rate_per_s": None, "seed": 7, **overrides}
    return simulation_start(**params)


@pytest.fixture
def step(django_capture_on_commit_callbacks):
    """One step with no time budget (one batch or one decision); what it enqueues on commit — batch
    processing, with eager Celery — runs when it returns, as after a real commit."""

    def run(simulation: Simulation) -> float | None:
        with django_capture_on_commit_callbacks(execute=True):
            return simulation_step(simulation_id=simulation.pk, budget_seconds=0)

    return run


@pytest.fixture
def steps_until_final(step):
    def run(simulation: Simulation, *, limit: int = 100) -> list[float | None]:
        delays = []
        for _ in range(limit):
            delay = step(simulation)
            delays.append(delay)
            if delay is None:
                return delays
        pytest.fail(f"simulation not final after {limit} steps: {delays[-5:]}")

    return run


def actions(simulation: Simulation) -> list[str]:
    return list(AuditLog.objects.filter(object_id=str(simulation.pk)).order_by("seq").values_list("action", flat=True))


# --- start ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"total": 0}, "total"),
        ({"total": 1_000_001}, "total"),
        ({"total": 10.5}, "total"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 5_001}, "batch_size"),
        ({"rate_per_s": 0.5}, "rate_per_s"),
        ({"rate_per_s": 50_001}, "rate_per_s"),
        ({"rate_per_s": float("nan")}, "rate_per_s"),
        ({"seed": "seven"}, "seed"),
        ({"mix": {"data_quality": 0.5}}, "mix"),
        ({"mix": {"weather": 1.0}}, "mix.weather"),
    ],
)
def test_start_refuses_bad_parameters_naming_the_field_and_writes_nothing(enqueued, overrides, field):
    with pytest.raises(ValidationError) as caught:
        start(**overrides)

    assert field in caught.value.message_dict
    assert not Simulation.objects.exists()
    assert not AISystem.objects.exists()
    assert enqueued == []


def test_start_creates_a_pending_simulation_with_its_fleet_labels_and_plan(
    enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        simulation = start(total=1000, rate_per_s=500.0, mix={"data_quality": 0.6, "fairness": 0.4})

    simulation.refresh_from_db()
    assert simulation.status == SimulationStatus.PENDING
    assert simulation.cursor == 0
    plan = simulation_plan(simulation)
    assert simulation.systems.count() == len(plan.fleet)
    assert all(
        name.startswith(f"sim-{simulation.id.hex[:8]}-") for name in simulation.systems.values_list("name", flat=True)
    )
    labels = ScenarioLabel.objects.filter(simulation=simulation)
    assert sorted(labels.values_list("scenario_id", flat=True)) == sorted(s.scenario_id for s in plan.scenarios)
    assert simulation.report["plan"]["realtime"] is True
    assert plan.start == simulation.started_at  # real time: the timeline starts now
    assert actions(simulation) == ["simulation.started"]
    assert enqueued == [(str(simulation.pk), None)]


def test_a_simulation_without_a_rate_plans_a_backdated_history_ending_now(enqueued):
    simulation = start(total=500)

    plan = simulation_plan(simulation)
    assert plan.rate_per_s == 1.0
    assert plan.end == simulation.started_at
    assert plan.start == simulation.started_at - timedelta(seconds=499)


def test_a_third_active_simulation_is_refused_naming_the_active_ones(enqueued):
    first, second = start(), start(seed=8)

    with pytest.raises(SimulationConflict) as caught:
        start(seed=9)

    assert str(first.pk) in str(caught.value) and str(second.pk) in str(caught.value)
    assert Simulation.objects.count() == 2


def test_a_finished_simulation_no_longer_counts_as_active(enqueued):
    first = start()
    start(seed=8)
    Simulation.objects.filter(pk=first.pk).update(status=SimulationStatus.FINISHED)

    assert start(seed=9).status == SimulationStatus.PENDING


def test_steps_rebuild_the_very_plan_the_labels_were_stored_from_even_after_config_changes(enqueued, admin_user):
    simulation = start(total=3000)
    psi = registry.get("oversight.thresholds.data_quality")
    registry.set(
        "oversight.thresholds.data_quality",
        {**psi, "psi": {**psi["psi"], "warning": psi["psi"]["warning"] / 2}},
        user=admin_user,
        reason="test",
    )
    service._cached_plan.cache_clear()  # as on another worker

    plan = simulation_plan(Simulation.objects.get(pk=simulation.pk))

    labels = {
        label.scenario_id: (label.system.name, label.category, label.expected_rule, label.onset_at)
        for label in ScenarioLabel.objects.filter(simulation=simulation).select_related("system")
    }
    assert {s.scenario_id: (s.system, s.category, s.expected_rule, s.onset_at) for s in plan.scenarios} == labels
    first_event = {}
    for event in plan.events():
        if event.scenario_id and event.scenario_id not in first_event:
            first_event[event.scenario_id] = event
    for scenario in plan.scenarios:
        if scenario.kind != "heartbeat_loss":  # its onset is a silence, not an event
            event = first_event[scenario.scenario_id]
            assert (event.occurred_at, event.system, event.category) == (
                scenario.onset_at,
                scenario.system,
                scenario.category,
            )


# --- steps: a backdated history -------------------------------------------------------------------
def test_a_backdated_simulation_runs_to_finished_with_a_measured_report(enqueued, steps_until_final):
    simulation = start(total=300, batch_size=100)

    delays = steps_until_final(simulation)

    simulation.refresh_from_db()
    assert simulation.status == SimulationStatus.FINISHED
    assert delays[:3] == [0.0, 0.0, 0.0]  # one batch per step (no budget), nothing to wait for
    assert simulation.cursor == 300
    assert IngestBatch.objects.filter(simulation=simulation).count() == 3
    assert simulation.counters["generated"] == simulation.counters["ingested"] == 300
    assert simulation.counters["processed"] == 300
    assert (
        simulation.report["quality"]["scenarios"]
        == ScenarioLabel.objects.filter(simulation=simulation).exclude(expected_rule="").count()
    )
    assert simulation.finished_at is not None
    assert not simulation.systems.filter(is_active=True).exists()  # the fleet is deactivated
    assert actions(simulation) == ["simulation.started", "simulation.finished"]


def test_a_step_sends_batches_until_its_budget_is_used(enqueued, unprocessed_batches):
    simulation = start(total=300, batch_size=100)

    delay = simulation_step(simulation_id=simulation.pk, budget_seconds=60)

    simulation.refresh_from_db()
    assert simulation.cursor == 300  # three batches in one step
    assert delay == service.PROCESSING_POLL_S  # now waiting for processing
    assert IngestBatch.objects.filter(simulation=simulation).count() == 3


def test_a_final_simulation_step_does_nothing(enqueued):
    simulation = start()
    Simulation.objects.filter(pk=simulation.pk).update(status=SimulationStatus.STOPPED)

    assert simulation_step(simulation_id=simulation.pk) is None
    assert not IngestBatch.objects.exists()


# --- steps: real time -----------------------------------------------------------------------------
def test_a_real_time_step_sends_only_events_whose_time_has_come_in_full_batches(enqueued, step):
    with time_machine.travel(T0, tick=False):
        simulation = start(total=400, batch_size=100, rate_per_s=100.0)

        wait = step(simulation)

        assert wait == pytest.approx(0.25)  # one event due: wait for the flush interval
        assert Simulation.objects.get(pk=simulation.pk).cursor == 0

    with time_machine.travel(T0 + timedelta(seconds=1.5), tick=False):
        assert step(simulation) == 0.0  # a full batch went
        assert step(simulation) == 0.0  # 51 due, the oldest waited 0.5 s: flushed
        wait = step(simulation)

    simulation.refresh_from_db()
    assert simulation.cursor == 151  # events 0…150 occurred by T0 + 1.5 s
    assert wait == pytest.approx(0.26)  # event 151 occurs at +1.51 s, then waits the flush interval
    assert simulation.status == SimulationStatus.RUNNING
    latest = simulation_plan(simulation).time_of(simulation.cursor - 1)
    assert latest <= T0 + timedelta(seconds=1.5)  # never an event from the future


def test_a_real_time_simulation_finishes_once_its_last_event_is_due(enqueued, steps_until_final):
    with time_machine.travel(T0, tick=False):
        simulation = start(total=200, batch_size=100, rate_per_s=100.0)
    with time_machine.travel(T0 + timedelta(seconds=3), tick=False):
        steps_until_final(simulation)

    simulation.refresh_from_db()
    assert simulation.status == SimulationStatus.FINISHED
    assert simulation.counters["generated"] == 200


# --- waiting for processing -----------------------------------------------------------------------
def test_all_sent_waits_for_processing_then_finishes_anyway_after_two_minutes(enqueued, unprocessed_batches, step):
    with time_machine.travel(T0, tick=False):
        simulation = start(total=200, batch_size=100)
        assert step(simulation) == 0.0
        assert step(simulation) == 0.0

        assert step(simulation) == service.PROCESSING_POLL_S

    with time_machine.travel(T0 + timedelta(seconds=121), tick=False):
        assert step(simulation) is None

    simulation.refresh_from_db()
    assert simulation.status == SimulationStatus.FINISHED
    assert simulation.counters["processed"] == 0
    assert "2 batch(es) were still unprocessed" in simulation.report["notes"][0]


# --- stop -----------------------------------------------------------------------------------------
def test_stop_takes_effect_at_the_next_batch(enqueued, admin_user, step, django_capture_on_commit_callbacks):
    simulation = start(total=300, batch_size=100)
    step(simulation)  # one batch sent

    with django_capture_on_commit_callbacks(execute=True):
        simulation_stop(simulation=simulation, actor=admin_user)
    assert Simulation.objects.get(pk=simulation.pk).status == SimulationStatus.STOPPING

    assert simulation_step(simulation_id=simulation.pk) is None
    simulation.refresh_from_db()
    assert simulation.status == SimulationStatus.STOPPED
    assert simulation.cursor == 100  # nothing sent after the request
    assert simulation.report["counters"]["ingested"] == 100
    assert not simulation.systems.filter(is_active=True).exists()
    assert actions(simulation) == ["simulation.started", "simulation.stopped"]
    assert enqueued[-1] == (str(simulation.pk), None)  # a step to finalize it, even if its chain was lost


def test_stopping_a_pending_simulation_stops_it_at_once(enqueued, admin_user):
    simulation = start()

    stopped = simulation_stop(simulation=simulation, actor=admin_user)

    assert stopped.status == SimulationStatus.STOPPED
    assert stopped.finished_at is not None
    assert not stopped.systems.filter(is_active=True).exists()
    assert simulation_step(simulation_id=simulation.pk) is None
    assert not IngestBatch.objects.exists()


def test_stopping_a_final_simulation_is_a_conflict_and_audits_nothing(enqueued, admin_user):
    simulation = start()
    Simulation.objects.filter(pk=simulation.pk).update(status=SimulationStatus.FINISHED)

    with pytest.raises(SimulationConflict, match="already finished"):
        simulation_stop(simulation=simulation, actor=admin_user)

    assert actions(simulation) == ["simulation.started"]


def test_stopping_twice_is_harmless(enqueued, admin_user, step):
    simulation = start()
    step(simulation)
    simulation_stop(simulation=simulation, actor=admin_user)

    again = simulation_stop(simulation=simulation, actor=admin_user)

    assert again.status == SimulationStatus.STOPPING
    assert actions(simulation).count("simulation.stopped") == 1


# --- failure --------------------------------------------------------------------------------------
def test_an_exception_in_a_step_fails_the_simulation_with_the_error(enqueued, monkeypatch):
    simulation = start()

    def broken(**kwargs):
        raise RuntimeError("broker on fire")

    monkeypatch.setattr(service, "ingest_events", broken)

    assert simulation_step(simulation_id=simulation.pk) is None

    simulation.refresh_from_db()
    assert simulation.status == SimulationStatus.FAILED
    assert simulation.error == "RuntimeError: broker on fire"
    assert simulation.cursor == 0  # the failed batch was rolled back
    assert not simulation.systems.filter(is_active=True).exists()
    failed = AuditLog.objects.get(object_id=str(simulation.pk), action="simulation.failed")
    assert failed.data["status"] == "failed"


# --- driving --------------------------------------------------------------------------------------
def test_run_inline_drives_to_a_final_state_sleeping_the_delays_and_reporting_progress(enqueued, unprocessed_batches):
    simulation = start(total=300, batch_size=100)
    seen = []

    with time_machine.travel(T0, tick=False) as clock:
        final = run_simulation_inline(
            simulation, on_progress=lambda s: seen.append(s.cursor), budget_seconds=0, sleep=clock.shift
        )

    assert final.status == SimulationStatus.FINISHED
    assert seen[:4] == [100, 200, 300, 300]
    assert "3 batch(es) were still unprocessed" in final.report["notes"][0]


def test_the_task_reenqueues_itself_with_the_returned_delay(monkeypatch):
    sent = []
    monkeypatch.setattr(service, "enqueue_simulation_step", lambda pk, countdown=None: sent.append(countdown))
    monkeypatch.setattr(service, "simulation_step", lambda **kwargs: 0.4)

    assert run_step_task("some-id", eager=False) == 0.4
    assert sent == [0.4]


def test_the_task_stops_reenqueueing_once_the_simulation_is_final(monkeypatch):
    sent = []
    monkeypatch.setattr(service, "enqueue_simulation_step", lambda pk, countdown=None: sent.append(countdown))
    monkeypatch.setattr(service, "simulation_step", lambda **kwargs: None)

    assert run_step_task("some-id", eager=False) is None
    assert sent == []


@pytest.mark.django_db(transaction=True)
def test_eager_celery_runs_a_started_simulation_to_the_end_on_commit():
    simulation = start(total=200, batch_size=100)

    simulation.refresh_from_db()
    assert simulation.status == SimulationStatus.FINISHED
    assert simulation.counters["processed"] == 200


# --- concurrency (PostgreSQL: SKIP LOCKED) ---------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_concurrent_duplicate_step_finds_the_row_claimed_and_does_nothing(enqueued):
    simulation = start(total=300, batch_size=100)
    claimed, release, outcome = threading.Event(), threading.Event(), {}

    def other_worker():
        try:
            with transaction.atomic():
                Simulation.objects.select_for_update().get(pk=simulation.pk)
                claimed.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=other_worker)
    holder.start()
    try:
        assert claimed.wait(10)
        outcome["delay"] = simulation_step(simulation_id=simulation.pk)
    finally:
        release.set()
        holder.join(10)

    assert outcome["delay"] is None
    simulation.refresh_from_db()
    assert simulation.cursor == 0
    assert simulation.status == SimulationStatus.PENDING
    assert not IngestBatch.objects.exists()
