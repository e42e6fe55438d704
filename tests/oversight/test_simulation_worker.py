"""Simulations driven by a real Celery worker (PostgreSQL + Redis): the step task re-enqueues itself
through the broker until the run is final, and a stop request ends the chain within a batch."""

from __future__ import annotations

import pytest

from oversight.models import Simulation, SimulationStatus
from oversight.services.simulation import FINAL_STATUSES, simulation_start, simulation_stop
from tests.e2e.conftest import private_worker, routed_to, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.xdist_group("worker")]


@pytest.fixture
def events_worker(transactional_db):
    """A worker on a private queue; what it sends itself (the next step, batch processing) goes there too."""
    with private_worker(concurrency=2) as worker:
        yield worker


def final(simulation: Simulation) -> Simulation | None:
    simulation.refresh_from_db()
    return simulation if simulation.status in FINAL_STATUSES else None


def test_a_worker_runs_a_real_time_simulation_to_finished(events_worker):
    with routed_to(events_worker.queue):
        simulation = simulation_start(total=1500, batch_size=250, rate_per_s=1000.0, seed=3)

    wait_for(lambda: final(simulation), timeout=90, message=f"not final:\n{events_worker.log()}")

    assert simulation.status == SimulationStatus.FINISHED, simulation.error
    assert simulation.counters["generated"] == simulation.counters["processed"] == 1500
    assert simulation.report["quality"]["precision"] >= 0.95
    assert simulation.report["quality"]["recall"] >= 0.98
    assert simulation.report["notes"] == []


def test_a_stop_request_ends_a_running_simulation_on_the_worker(events_worker, admin_user):
    with routed_to(events_worker.queue):
        simulation = simulation_start(total=20_000, batch_size=100, rate_per_s=200.0, seed=4)
        wait_for(
            lambda: Simulation.objects.get(pk=simulation.pk).cursor >= 200,
            timeout=60,
            message=f"the simulation did not progress:\n{events_worker.log()}",
        )
        simulation_stop(simulation=simulation, actor=admin_user)

    wait_for(lambda: final(simulation), timeout=30, message=f"not stopped:\n{events_worker.log()}")

    assert simulation.status == SimulationStatus.STOPPED
    assert 200 <= simulation.cursor < 20_000
    assert simulation.report["counters"]["ingested"] == simulation.cursor
    assert not simulation.systems.filter(is_active=True).exists()
