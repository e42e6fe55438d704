"""The simulation controller: the generator's events fed through the real pipeline at a set rate, then
measured against the planted scenarios' ground truth.

A simulation is driven by *steps* (``oversight.simulation_step``, or :func:`run_simulation_inline`):
each step claims the row, rebuilds the deterministic plan from what the row stores, ingests the next
batches whose time has come, commits after each batch (so ``GET`` shows live progress and a stop
request is seen between batches) and says how long to wait before the next step. Nothing lives in
memory between steps except a per-process cache of the plan, which any worker can rebuild exactly:
correctness never depends on which worker runs a step.

States: ``pending`` → ``running`` → (all events sent, all batches processed) ``finished``;
``running`` → ``stopping`` (a stop request) → ``stopped`` by the next step; ``pending`` → ``stopped``
directly; any exception in a step → ``failed``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from governance.choices import AuditAction
from governance.models import Team, User
from governance.services.audit import audit_record
from oversight import generator
from oversight.metrics import simulation_report
from oversight.models import ACTIVE_SIMULATION_STATUSES, IngestBatch, Simulation, SimulationStatus
from oversight.services.ingest import ingest_events

logger = logging.getLogger(__name__)

MAX_TOTAL = 1_000_000
MAX_BATCH_SIZE = 5_000
MAX_RATE_PER_S = 50_000.0
MIN_RATE_PER_S = 1.0
MAX_ACTIVE_SIMULATIONS = 2
BACKDATED_RATE_PER_S = 1.0  # without a rate: a history at 1 event/s of event time, ending now, sent at once
FLUSH_INTERVAL_S = 0.25  # real time: send a partial batch once its oldest event has waited this long
MIN_DELAY_S = 0.05
PROCESSING_POLL_S = 0.5  # all sent: how often to look whether every batch has been processed
PROCESSING_WAIT = timedelta(seconds=120)  # …and how long before finishing anyway
FINAL_STATUSES = frozenset({SimulationStatus.STOPPED, SimulationStatus.FINISHED, SimulationStatus.FAILED})
STEP_ACTOR = "system:simulation"
_START_LOCK_ID = 0x5157_0001  # PostgreSQL advisory lock serializing simulation starts


class SimulationConflict(Exception):
    """The request conflicts with the simulations' state (too many active, already final)."""


# --- start ----------------------------------------------------------------------------------------
def simulation_params_errors(
    *, total: Any, batch_size: Any, rate_per_s: Any, seed: Any, mix: Any
) -> dict[str, list[str]]:
    """Field errors of simulation parameters (empty when valid); shared by the API, admin and command."""
    errors: dict[str, list[str]] = {}

    def integer_in(name: str, value: Any, low: int, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            errors[name] = ["must be an integer"]
        elif not low <= value <= high:
            errors[name] = [f"must be between {low:,} and {high:,}"]

    integer_in("total", total, 1, MAX_TOTAL)
    integer_in("batch_size", batch_size, 1, MAX_BATCH_SIZE)
    if rate_per_s is not None:
        if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, int | float) or not math.isfinite(rate_per_s):
            errors["rate_per_s"] = ["must be a number, or null for as fast as possible"]
        elif not MIN_RATE_PER_S <= rate_per_s <= MAX_RATE_PER_S:
            errors["rate_per_s"] = [f"must be between {MIN_RATE_PER_S:g} and {MAX_RATE_PER_S:,.0f} events per second"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        errors["seed"] = ["must be an integer"]
    elif not -(2**63) <= seed < 2**63:
        errors["seed"] = ["must fit in 64 bits"]
    if mix:
        errors.update(generator.validate_mix(mix))
    return errors


def simulation_start(
    *,
    total: int,
    batch_size: int = 500,
    rate_per_s: float | None = 1000.0,
    seed: int = 42,
    mix: dict[str, float] | None = None,
    actor: Any = None,
    team: Team | None = None,
    enqueue: bool = True,
) -> Simulation:
    """Create a simulation, its synthetic fleet and its ground-truth labels, and start it.

    Guarantees:
    * Bad parameters → ``ValidationError`` naming the fields; nothing written.
    * At most ``MAX_ACTIVE_SIMULATIONS`` pending/running/stopping at once, else ``SimulationConflict``
      naming the active ones (starts are serialized, so two concurrent starts cannot both slip in).
    * One transaction: the row (``pending``), the fleet (``Simulation.systems``), the labels, the plan
      parameters in ``report["plan"]`` (start, effective rate, the thresholds and rule numbers the
      scenarios were shaped for — so every step rebuilds the identical plan even if config changes
      meanwhile) and the ``simulation.started`` audit entry.
    * With a rate, events run in real time from now; without one, a backdated history at 1 event/s
      of event time ending now is sent as fast as possible.
    * ``enqueue`` (default): ``oversight.simulation_step`` is sent after commit. ``manage.py simulate``
      passes False and drives the steps itself.
    """
    errors = simulation_params_errors(total=total, batch_size=batch_size, rate_per_s=rate_per_s, seed=seed, mix=mix)
    if errors:
        raise ValidationError(errors)
    mix = dict(mix) if mix else {}
    rate_per_s = float(rate_per_s) if rate_per_s is not None else None
    with transaction.atomic():
        _serialize_starts()
        active = list(
            Simulation.objects.filter(status__in=ACTIVE_SIMULATION_STATUSES)
            .order_by("created_at")
            .values_list("id", "status")
        )
        if len(active) >= MAX_ACTIVE_SIMULATIONS:
            running = ", ".join(f"{pk} ({status})" for pk, status in active)
            raise SimulationConflict(
                f"At most {MAX_ACTIVE_SIMULATIONS} simulations may be active at once; active now: {running}. "
                "Stop one or wait for it to finish."
            )
        now = timezone.now()
        simulation = Simulation.objects.create(
            status=SimulationStatus.PENDING,
            total=total,
            batch_size=batch_size,
            rate_per_s=rate_per_s,
            seed=seed,
            mix=mix,
            started_at=now,
            created_by=actor if isinstance(actor, User) else None,
            team=team,
        )
        realtime = rate_per_s is not None
        effective_rate = rate_per_s if realtime else BACKDATED_RATE_PER_S
        plan_start = now if realtime else now - timedelta(seconds=(total - 1) / effective_rate)
        plan = generator.plan_events(
            count=total,
            seed=seed,
            start=plan_start,
            rate_per_s=effective_rate,
            mix=mix or None,
            namespace=f"sim:{simulation.id.hex}",
            fleet_prefix=f"sim-{simulation.id.hex[:8]}",
        )
        systems = generator.ensure_fleet(plan, team=team)
        simulation.systems.set(list(systems.values()))
        labels = generator.store_labels(plan, systems=systems, simulation=simulation)
        simulation.report = {
            "plan": {
                "start": plan_start.isoformat(),
                "rate_per_s": effective_rate,
                "realtime": realtime,
                "thresholds": _ordered_pairs(plan.thresholds),
                "rule_settings": asdict(plan.rules),
            }
        }
        simulation.save(update_fields=["report", "updated_at"])
        audit_record(
            action=AuditAction.SIMULATION_STARTED,
            actor=actor,
            target=simulation,
            data={
                "total": total,
                "batch_size": batch_size,
                "rate_per_s": rate_per_s,
                "seed": seed,
                "mix": mix,
                "systems": len(systems),
                "scenarios": labels,
            },
        )
        if enqueue:
            transaction.on_commit(lambda: enqueue_simulation_step(simulation.id))
    return simulation


def _serialize_starts() -> None:
    """Hold a transaction-scoped lock so the active-simulation count cannot change under us.

    SQLite: write transactions are IMMEDIATE (settings), so they are serialized already."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_START_LOCK_ID])


def enqueue_simulation_step(simulation_id: UUID | str, *, countdown: float | None = None) -> None:
    from oversight.tasks import simulation_step  # the task module imports the engine; keep this light

    simulation_step.apply_async(args=[str(simulation_id)], countdown=countdown)


# --- the plan, rebuilt at every step --------------------------------------------------------------
def _ordered_pairs(thresholds: dict[str, dict[str, Any]]) -> list:
    """Thresholds as ``[[category, [[signal, spec], …]], …]``: the planner walks signals in mapping
    order, and a JSON object stored in PostgreSQL (jsonb) does not keep its key order — lists do."""
    return [
        [category, [[signal, spec] for signal, spec in signals.items()]] for category, signals in thresholds.items()
    ]


def simulation_plan(simulation: Simulation) -> generator.EventPlan:
    """The simulation's event plan, rebuilt from the row alone (identical on every worker)."""
    params = simulation.report["plan"]
    return _cached_plan(
        json.dumps(
            {
                "count": simulation.total,
                "seed": simulation.seed,
                "start": params["start"],
                "rate_per_s": params["rate_per_s"],
                "mix": simulation.mix or None,
                "namespace": f"sim:{simulation.id.hex}",
                "fleet_prefix": f"sim-{simulation.id.hex[:8]}",
                "thresholds": params["thresholds"],
                "rule_settings": params["rule_settings"],
            },
            sort_keys=True,
        )
    )


@lru_cache(maxsize=4)
def _cached_plan(key: str) -> generator.EventPlan:
    # Keyed by every input of the (deterministic) plan: a hit is exactly what a rebuild would give.
    # (``sort_keys`` reorders only objects whose order does not matter; the thresholds are pairs.)
    # Planning a million events takes about a second; the cache spares that on every step.
    params = json.loads(key)
    params["start"] = parse_datetime(params["start"])
    params["thresholds"] = {category: dict(signals) for category, signals in params["thresholds"]}
    return generator.plan_events(**params)


# --- steps ----------------------------------------------------------------------------------------
def simulation_step(*, simulation_id: UUID | str, budget_seconds: float = 2.0) -> float | None:
    """Do one chunk of a simulation's work; return the delay before the next step, or None when the
    simulation reached a final state (or another step holds it).

    Guarantees:
    * Claims the row with ``SELECT … FOR UPDATE SKIP LOCKED`` for each batch: a concurrent duplicate
      step finds it locked and does nothing (returns None, so its chain ends).
    * ``stopping`` → ``stopped`` at the next claim, i.e. within one batch of the request.
    * Sends, in batches of ≤ ``batch_size``, the events whose time has come (real time: a full batch,
      or a partial one whose oldest event waited ``FLUSH_INTERVAL_S``), each batch ingested with
      ``simulation=`` and committed with the advanced ``cursor`` and counters; stops when
      ``budget_seconds`` are used (returns 0: continue at once).
    * All sent: waits (short delays) until every batch of the simulation is processed, at most
      ``PROCESSING_WAIT``, then finishes: report, counters, ``finished_at``, fleet deactivated,
      ``simulation.finished`` audited.
    * Any exception → ``failed`` with the error (audited), fleet deactivated.
    """
    started = time.monotonic()
    try:
        while True:
            delay = _advance(simulation_id)
            if delay is not None and delay <= 0 and time.monotonic() - started < budget_seconds:
                continue
            return delay
    except Exception as exc:
        logger.exception("simulation step failed", extra={"simulation_id": str(simulation_id)})
        simulation_fail(simulation_id=simulation_id, error=f"{type(exc).__name__}: {exc}")
        return None


def _advance(simulation_id: UUID | str) -> float | None:
    """One claim: at most one batch sent, or one state decision. 0 means "more to do now"."""
    with transaction.atomic():
        simulation = (
            Simulation.objects.select_for_update(skip_locked=True)
            .filter(pk=simulation_id, status__in=ACTIVE_SIMULATION_STATUSES)
            .first()
        )
        if simulation is None:
            return None
        if simulation.status == SimulationStatus.STOPPING:
            _finalize(simulation, status=SimulationStatus.STOPPED)
            return None
        if simulation.status == SimulationStatus.PENDING:
            simulation.status = SimulationStatus.RUNNING
            simulation.save(update_fields=["status", "updated_at"])
        if simulation.cursor >= simulation.total:
            return _await_processing(simulation)
        plan = simulation_plan(simulation)
        now = timezone.now()
        wait = _wait_before_next_batch(simulation, plan, now)
        if wait > 0:
            return wait
        stop = min(simulation.cursor + simulation.batch_size, _due_count(simulation, plan, now))
        items = [event.as_payload() for event in plan.events(simulation.cursor, stop)]
        result = ingest_events(items=items, submitted_by=None, simulation=simulation, now=now)
        counters = dict(simulation.counters)
        counters["generated"] = counters.get("generated", 0) + len(items)
        counters["ingested"] = counters.get("ingested", 0) + result.accepted
        simulation.counters = counters
        simulation.cursor = stop
        if stop >= simulation.total:
            simulation.report = {**simulation.report, "all_sent_at": now.isoformat()}
        simulation.save(update_fields=["counters", "cursor", "report", "updated_at"])
        return 0.0


def _due_count(simulation: Simulation, plan: generator.EventPlan, now: datetime) -> int:
    """How many events (from index 0) have an event time at or before ``now``."""
    if not simulation.report["plan"]["realtime"]:
        return simulation.total
    elapsed = (now - plan.start).total_seconds()
    if elapsed < 0:
        return 0
    return min(simulation.total, math.floor(elapsed * plan.rate_per_s) + 1)


def _wait_before_next_batch(simulation: Simulation, plan: generator.EventPlan, now: datetime) -> float:
    """Seconds until the next batch should be sent (≤ 0: now). Real time only; a history is sent at once."""
    if not simulation.report["plan"]["realtime"]:
        return 0.0
    cursor = simulation.cursor
    full = min(simulation.batch_size, simulation.total - cursor)
    if _due_count(simulation, plan, now) - cursor >= full:
        return 0.0
    until_full = (plan.time_of(cursor + full - 1) - now).total_seconds()
    until_flush = (plan.time_of(cursor) + timedelta(seconds=FLUSH_INTERVAL_S) - now).total_seconds()
    wait = min(until_full, until_flush)
    return 0.0 if wait <= 0 else max(wait, MIN_DELAY_S)


def _await_processing(simulation: Simulation) -> float | None:
    """All events sent: finish once every batch is processed, or after ``PROCESSING_WAIT``."""
    unprocessed = IngestBatch.objects.filter(simulation=simulation, processed_at__isnull=True).count()
    sent_at = parse_datetime(simulation.report.get("all_sent_at") or "") or simulation.updated_at
    if unprocessed and timezone.now() - sent_at < PROCESSING_WAIT:
        return PROCESSING_POLL_S
    notes = []
    if unprocessed:
        notes.append(
            f"{unprocessed} batch(es) were still unprocessed {PROCESSING_WAIT.total_seconds():.0f} s after "
            "the last one was sent; the report counts what was processed by then."
        )
    _finalize(simulation, status=SimulationStatus.FINISHED, notes=notes)
    return None


def _finalize(simulation: Simulation, *, status: str, notes: list[str] | None = None) -> None:
    """Final report and state, inside the caller's transaction (which holds the row)."""
    now = timezone.now()
    simulation.status = status
    simulation.finished_at = now
    report = simulation_report(simulation)
    simulation.counters = report["counters"]
    simulation.report = {
        **report,
        "plan": simulation.report.get("plan", {}),
        "all_sent_at": simulation.report.get("all_sent_at"),
        "notes": notes or [],
    }
    simulation.save(update_fields=["status", "finished_at", "counters", "report", "updated_at"])
    generator.deactivate_fleet(list(simulation.systems.all()))
    if status == SimulationStatus.FINISHED:
        quality = report["quality"]
        audit_record(
            action=AuditAction.SIMULATION_FINISHED,
            actor=STEP_ACTOR,
            target=simulation,
            data={
                "status": status,
                "counters": report["counters"],
                "precision": quality["precision"],
                "recall": quality["recall"],
                "f1": quality["f1"],
                "mttd_p95_seconds": report["mttd_seconds"]["all"]["p95"],
                "notes": notes or [],
            },
        )


def simulation_fail(*, simulation_id: UUID | str, error: str) -> bool:
    """Mark an active simulation failed with ``error`` (guarded: only from an active state), deactivate
    its fleet and audit it. Returns whether the row changed."""
    error = error[:2000]
    with transaction.atomic():
        now = timezone.now()
        changed = Simulation.objects.filter(pk=simulation_id, status__in=ACTIVE_SIMULATION_STATUSES).update(
            status=SimulationStatus.FAILED, error=error, finished_at=now, updated_at=now
        )
        if not changed:
            return False
        simulation = Simulation.objects.get(pk=simulation_id)
        generator.deactivate_fleet(list(simulation.systems.all()))
        audit_record(
            action=AuditAction.SIMULATION_FAILED,
            actor=STEP_ACTOR,
            target=simulation,
            data={"status": SimulationStatus.FAILED, "error": error, "counters": simulation.counters},
        )
    return True


# --- stop -----------------------------------------------------------------------------------------
def simulation_stop(*, simulation: Simulation, actor: Any) -> Simulation:
    """Ask a simulation to stop.

    Guarded updates: ``running`` → ``stopping`` (the next step, within one batch, makes it ``stopped``
    with a report of what ran); ``pending`` → ``stopped`` at once (its fleet deactivated). Audited
    ``simulation.stopped`` when a row changed. Already ``stopping``: nothing to do, returned as is.
    Already final: ``SimulationConflict``. A step is enqueued after commit so a stopping simulation is
    finalized even if its step chain was lost.
    """
    with transaction.atomic():
        now = timezone.now()
        pk = simulation.pk
        stopped = Simulation.objects.filter(pk=pk, status=SimulationStatus.PENDING).update(
            status=SimulationStatus.STOPPED, finished_at=now, updated_at=now
        )
        stopping = (
            0
            if stopped
            else Simulation.objects.filter(pk=pk, status=SimulationStatus.RUNNING).update(
                status=SimulationStatus.STOPPING, updated_at=now
            )
        )
        current = Simulation.objects.get(pk=pk)
        if not (stopped or stopping):
            if current.status == SimulationStatus.STOPPING:
                return current
            raise SimulationConflict(f"Simulation {pk} is already {current.status}; only an active one can stop.")
        audit_record(
            action=AuditAction.SIMULATION_STOPPED,
            actor=actor,
            target=current,
            data={"from": SimulationStatus.PENDING if stopped else SimulationStatus.RUNNING, "to": current.status},
        )
        if stopped:
            report = simulation_report(current)
            current.counters = report["counters"]
            current.report = {**report, "plan": current.report.get("plan", {}), "notes": ["stopped before it ran"]}
            current.save(update_fields=["counters", "report", "updated_at"])
            generator.deactivate_fleet(list(current.systems.all()))
        else:
            transaction.on_commit(lambda: enqueue_simulation_step(pk))
    return current


# --- driving in-process ---------------------------------------------------------------------------
def run_simulation_inline(
    simulation: Simulation,
    on_progress: Callable[[Simulation], None] | None = None,
    *,
    budget_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Simulation:
    """Drive a simulation to a final state in this process: step, call ``on_progress`` with the
    refreshed row, sleep the returned delay, repeat. Used by ``manage.py simulate`` and by the task
    in eager mode (where re-enqueueing would recurse). Returns the refreshed row."""
    while True:
        delay = simulation_step(simulation_id=simulation.pk, budget_seconds=budget_seconds)
        simulation.refresh_from_db()
        if on_progress is not None:
            on_progress(simulation)
        if delay is None or simulation.status in FINAL_STATUSES:
            return simulation
        if delay > 0:
            sleep(delay)


def run_step_task(simulation_id: str, *, eager: bool) -> float | None:
    """The body of ``oversight.simulation_step``: one step, then re-enqueue after its delay. Run
    eagerly (no broker), a re-enqueue would run inline and recurse, so the whole run is driven here."""
    if eager:
        simulation = Simulation.objects.filter(pk=simulation_id).first()
        if simulation is not None:
            run_simulation_inline(simulation)
        return None
    delay = simulation_step(simulation_id=simulation_id)
    if delay is not None:
        enqueue_simulation_step(simulation_id, countdown=delay or None)
    return delay
