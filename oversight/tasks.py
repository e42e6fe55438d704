"""Thin Celery tasks of the event pipeline: each takes ids and calls a service."""

from __future__ import annotations

from oversight.services import alerts, processing
from tasks.base import vigil_task


@vigil_task(name="oversight.process_batch")
def process_batch(batch_id: str) -> dict:
    """Evaluate one ingested batch (idempotent: a processed batch is skipped)."""
    return processing.process_batch(batch_id=batch_id).as_dict()


@vigil_task(name="oversight.sweep_outbox")
def sweep_outbox() -> int:
    """Re-enqueue batches left unprocessed for longer than the outbox grace period."""
    return processing.sweep_outbox()


@vigil_task(name="oversight.resolve_stale_alerts")
def resolve_stale_alerts() -> int:
    """Resolve open alerts with no new breach for the configured quiet period."""
    return alerts.resolve_stale_alerts()


@vigil_task(name="oversight.check_heartbeats")
def check_heartbeats() -> int:
    """Fire absence alerts for active systems whose heartbeat went silent (wall-clock check)."""
    return processing.check_heartbeats()


@vigil_task(name="oversight.simulation_step", bind=True)
def simulation_step(self, simulation_id: str) -> float | None:
    """One chunk of a simulation; re-enqueues itself after the delay the service returns (a duplicate
    delivery finds the row locked and ends). Eager mode drives the whole run in-process."""
    from oversight.services.simulation import run_step_task

    return run_step_task(simulation_id, eager=bool(self.request.is_eager))
