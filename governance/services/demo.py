"""The golden demo's orchestrator: start a run of a scenario, play its steps in order, prove what happened.

``demo_run_start`` creates the run (one active at a time, audited); ``demo_run_execute`` plays it: the
KPI scorecard before, then each step of the scenario (``governance.services.demo_steps``) with its
timing, counters and expected outcome, persisted after every step so the admin page and the API follow
live; the first expectation that does not hold (or a step that raises) stops the run with a message
naming the step, the counter, what was expected and what was found. The scorecard after, the slice of
the audit chain the run wrote (first/last seq) and the ``demo.run_finished`` entry close it.

A run is reproducible from its seed: every generator the steps call plans from the seed, so the same
scenario and seed on a fresh database give the same counters (timings are kept apart, in ``measured``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.choices import ACTIVE_DEMO_RUN_STATUSES, AuditAction, DemoCategory, DemoRunStatus
from governance.models import AuditLog, DemoRun, DemoScenario, User
from governance.services.audit import audit_record
from governance.services.demo_steps import STEPS, DemoContext, DemoStep, StepOutput
from governance.services.errors import InvalidFields

logger = logging.getLogger(__name__)

ACTOR = "system:demo"
# A run still "running" with no progress for this long died with its process; a new start fails it.
STALE_RUN_AFTER = timedelta(minutes=20)
# The scenario each mode plays when none is named.
DEFAULT_SCENARIOS = {
    DemoCategory.INVESTOR: "investor-pitch",
    DemoCategory.AUDIT: "audit-walkthrough",
    DemoCategory.TRAINING: "training-tour",
}
OPERATORS = {
    "eq": lambda actual, bound: actual == bound,
    "gte": lambda actual, bound: actual is not None and actual >= bound,
    "gt": lambda actual, bound: actual is not None and actual > bound,
    "lte": lambda actual, bound: actual is not None and actual <= bound,
    "lt": lambda actual, bound: actual is not None and actual < bound,
    "in": lambda actual, bound: actual in bound,
}
OPERATOR_TEXT = {"eq": "=", "gte": "≥", "gt": ">", "lte": "≤", "lt": "<", "in": "one of"}


class DemoRunConflict(Exception):
    """Another demo run is active (pending or running)."""


class DemoRunInvalid(InvalidFields):
    """An unknown scenario or mode, a disabled scenario, a bad seed."""


# --- scenarios ----------------------------------------------------------------------------------------
def scenario_problems(*, steps: Any, expected_outcomes: Any) -> dict[str, list[str]]:
    """What is wrong with a scenario's ``steps``/``expected_outcomes`` (empty when it can run): unknown
    step keys, malformed entries, bounds with unknown operators."""
    errors: dict[str, list[str]] = {}
    if not isinstance(steps, list) or not steps:
        return {"steps": ["a non-empty list of {key, params} entries"]}
    keys = []
    for index, entry in enumerate(steps):
        key = entry.get("key") if isinstance(entry, dict) else None
        if key not in STEPS:
            errors[f"steps.{index}.key"] = [f"unknown step {key!r}; known: {', '.join(sorted(STEPS))}"]
        elif not isinstance(entry.get("params", {}), dict):
            errors[f"steps.{index}.params"] = ["must be an object"]
        keys.append(key)
    if not isinstance(expected_outcomes, dict):
        return {**errors, "expected_outcomes": ["an object: {step key: {counter: {op: value}}}"]}
    for key, bounds in expected_outcomes.items():
        if key not in keys:
            errors[f"expected_outcomes.{key}"] = ["names a step the scenario does not run"]
            continue
        for counter, bound in (bounds or {}).items() if isinstance(bounds, dict) else [(None, None)]:
            if not isinstance(bound, dict) or not bound or set(bound) - set(OPERATORS):
                errors[f"expected_outcomes.{key}.{counter}"] = [
                    f"bounds are {{op: value}} with op in {sorted(OPERATORS)}"
                ]
    return errors


def scenario_resolve(*, scenario: Any = None, mode: str | None = None) -> DemoScenario:
    """The scenario named by id or name, else the default scenario of ``mode`` (DemoRunInvalid otherwise)."""
    from governance.selectors import is_uuid

    if scenario not in (None, ""):
        ref = str(scenario)
        found = DemoScenario.objects.filter(pk=ref).first() if is_uuid(ref) else None
        found = found or DemoScenario.objects.filter(scenario_name=ref).first()
        if found is None:
            raise DemoRunInvalid({"scenario": [f"no demo scenario {ref!r}"]})
        return found
    if mode not in DEFAULT_SCENARIOS:
        raise DemoRunInvalid({"mode": [f"one of {', '.join(DEFAULT_SCENARIOS)} (or name a scenario)"]})
    found = DemoScenario.objects.filter(scenario_name=DEFAULT_SCENARIOS[mode]).first()
    if found is None:
        raise DemoRunInvalid({"mode": [f"the {mode} scenario {DEFAULT_SCENARIOS[mode]!r} is not installed (migrate)"]})
    return found


# --- start --------------------------------------------------------------------------------------------
def _fail_stale_runs(now) -> None:
    for run in DemoRun.objects.filter(status__in=ACTIVE_DEMO_RUN_STATUSES, updated_at__lt=now - STALE_RUN_AFTER):
        _finish(run, status=DemoRunStatus.FAILED, error="abandoned: no progress for 20 minutes (its process died)")


def demo_run_start(*, scenario: DemoScenario, seed: int = 42, user: User | None = None) -> DemoRun:
    """Create a pending run of ``scenario`` (its category is the run's mode) and audit
    ``demo.run_started``; its entry's seq opens the run's audit slice.

    Raises ``DemoRunInvalid`` for a disabled or malformed scenario or a seed outside 64 bits, and
    ``DemoRunConflict`` while another run is pending or running (a unique partial index backs the check,
    so two concurrent starts cannot both succeed). A run left running by a dead process for 20 minutes
    is failed first."""
    if not scenario.enabled:
        raise DemoRunInvalid({"scenario": [f"scenario {scenario.scenario_name!r} is disabled"]})
    problems = scenario_problems(steps=scenario.steps, expected_outcomes=scenario.expected_outcomes)
    if problems:
        raise DemoRunInvalid(problems)
    if not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
        raise DemoRunInvalid({"seed": ["an integer that fits in 64 bits"]})
    now = timezone.now()
    _fail_stale_runs(now)
    try:
        with transaction.atomic():
            active = DemoRun.objects.filter(active=True).first()
            if active is not None:
                raise DemoRunConflict(f"demo run {active.pk} ({active.scenario}) is {active.status}; one run at a time")
            run = DemoRun.objects.create(
                scenario=scenario,
                mode=scenario.category,
                seed=seed,
                started_by=user,
                steps_total=len(scenario.steps),
                step_results=[_pending_result(entry) for entry in scenario.steps],
            )
            entry = audit_record(
                action=AuditAction.DEMO_RUN_STARTED,
                actor=user or ACTOR,
                target=run,
                data={"scenario": scenario.scenario_name, "mode": run.mode, "seed": seed},
            )
            run.audit_seq_first = entry.seq
            run.save(update_fields=["audit_seq_first", "updated_at"])
    except IntegrityError as exc:  # the partial unique index: a concurrent start won
        raise DemoRunConflict("another demo run started at the same moment; one run at a time") from exc
    return run


def _pending_result(entry: dict[str, Any]) -> dict[str, Any]:
    step = STEPS[entry["key"]]
    return {
        "key": step.key,
        "title": step.title,
        "status": "pending",
        "started_at": None,
        "duration_ms": None,
        "outcome": None,
        "counters": {},
        "measured": {},
        "message": "",
    }


# --- execute ------------------------------------------------------------------------------------------
def outcome_check(expected: dict[str, dict[str, Any]], counters: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether every bound in ``expected`` ({counter: {op: value}}) holds for ``counters``, and one
    line per bound that does not ("recall = 0.8, expected ≥ 0.9"). A bound written ``"@name"`` is the
    step's counter ``name`` (``{"pending_after": {"lt": "@pending_before"}}``)."""
    failures = []
    for counter, bounds in expected.items():
        actual = counters.get(counter)
        for op, bound in bounds.items():
            if isinstance(bound, str) and bound.startswith("@"):  # another counter of the same step
                bound = counters.get(bound[1:])
            try:
                held = OPERATORS[op](actual, bound)
            except TypeError:
                held = False
            if not held:
                failures.append(f"{counter} = {actual!r}, expected {OPERATOR_TEXT[op]} {bound!r}")
    return not failures, failures


EventCallback = Callable[[str, DemoRun, int], None]  # ("step_started"|"step_finished", run, index)


def demo_run_execute(*, run_id: Any, on_event: EventCallback | None = None) -> DemoRun:
    """Play a pending run to the end (see the module docstring). Idempotent: a run that is not pending
    (already played, or being played by another worker) is returned untouched. Never raises for a step
    failure: the run ends ``failed`` with the message; ``on_event`` lets the terminal draw progress."""
    claimed = DemoRun.objects.filter(pk=run_id, status=DemoRunStatus.PENDING).update(
        status=DemoRunStatus.RUNNING, started_at=timezone.now(), updated_at=timezone.now()
    )
    run = DemoRun.objects.select_related("scenario").get(pk=run_id)
    if not claimed:
        return run

    run.kpis_before = demo_scorecard()
    run.save(update_fields=["kpis_before", "updated_at"])
    ctx = DemoContext(run=run, seed=run.seed, started_at=run.started_at)
    expected_all = run.scenario.expected_outcomes or {}
    error = ""
    for index, entry in enumerate(run.scenario.steps):
        step = STEPS[entry["key"]]
        result = run.step_results[index]
        result.update(status="running", started_at=timezone.now().isoformat())
        run.current_step = step.key
        run.save(update_fields=["current_step", "step_results", "updated_at"])
        if on_event:
            on_event("step_started", run, index)
        error = _play(step, entry.get("params") or {}, expected_all.get(step.key) or {}, ctx, result)
        run.counters[step.key] = result["counters"]
        run.save(update_fields=["step_results", "counters", "updated_at"])
        if on_event:
            on_event("step_finished", run, index)
        if error:
            break
    for result in run.step_results:
        if result["status"] == "pending" and error:
            result["status"] = "skipped"
    run.kpis_after = ctx.state.get("kpi_report") or demo_scorecard()
    return _finish(run, status=DemoRunStatus.FAILED if error else DemoRunStatus.SUCCEEDED, error=error)


def _play(step: DemoStep, params: dict, expected: dict, ctx: DemoContext, result: dict) -> str:
    """Run one step into ``result``; the error message that stops the run, or ""."""
    started = time.perf_counter()
    try:
        output = step.run(ctx, params)
    except Exception as exc:
        logger.exception("demo step failed", extra={"step": step.key, "demo_run": str(ctx.run.pk)})
        output = StepOutput(message=f"{type(exc).__name__}: {exc}")
        result.update(
            status="failed",
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            message=output.message,
            outcome={"expected": expected, "actual": {}, "held": False},
        )
        return f"step '{step.key}' ({step.title}) raised {type(exc).__name__}: {exc}"
    held, failures = outcome_check(expected, output.counters)
    result.update(
        status="succeeded" if held else "failed",
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        counters=_jsonable(output.counters),
        measured=_jsonable(output.measured),
        message=output.message,
        outcome={
            "expected": expected,
            "actual": {counter: output.counters.get(counter) for counter in expected},
            "held": held,
            "failures": failures,
        },
    )
    if held:
        return ""
    return f"step '{step.key}' ({step.title}): expected outcome not met: {'; '.join(failures)}"


def _jsonable(value: Any) -> Any:
    """Counters as JSON (jsonb keeps them; audit data must be canonical)."""
    from governance.services.audit import _normalize

    return _normalize(value)


def _finish(run: DemoRun, *, status: str, error: str = "") -> DemoRun:
    """Final state, the ``demo.run_finished`` entry (closing the run's audit slice) and ``active`` off."""
    with transaction.atomic():
        passed = sum(1 for result in run.step_results if result["status"] == "succeeded")
        entry = audit_record(
            action=AuditAction.DEMO_RUN_FINISHED,
            actor=run.started_by or ACTOR,
            target=run,
            data={
                "scenario": run.scenario.scenario_name,
                "mode": run.mode,
                "seed": run.seed,
                "status": status,
                "steps_succeeded": passed,
                "steps_total": run.steps_total,
                "error": error,
            },
        )
        run.status = status
        run.error = error
        run.active = False
        run.finished_at = timezone.now()
        run.current_step = ""
        run.audit_seq_last = entry.seq
        run.save()
    return run


# --- reading ------------------------------------------------------------------------------------------
def narration(run: DemoRun, index: int) -> dict[str, str]:
    """What / technically / why for step ``index`` of the run, and what comes next."""
    steps = run.scenario.steps
    step = STEPS[steps[index]["key"]]
    upcoming = STEPS[steps[index + 1]["key"]] if index + 1 < len(steps) else None
    return {
        **asdict(step.narration),
        "next": f"{upcoming.title}: {upcoming.narration.what}"
        if upcoming
        else "The scorecard after, and the evidence.",
    }


def demo_run_representation(run: DemoRun) -> dict[str, Any]:
    """The API and live-page shape of a run: status, steps (with narration), counters, KPIs."""
    current = next(
        (index for index, result in enumerate(run.step_results) if result["status"] == "running"),
        None,
    )
    steps = []
    for index, result in enumerate(run.step_results):
        steps.append({**result, "narration": narration(run, index)})
    return {
        "id": str(run.pk),
        "scenario": run.scenario.scenario_name,
        "mode": run.mode,
        "seed": run.seed,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "current_step": run.current_step or None,
        "current_index": current,
        "steps_total": run.steps_total,
        "steps_done": sum(1 for result in run.step_results if result["status"] in ("succeeded", "failed")),
        "steps": steps,
        "counters": run.counters,
        "kpis_before": run.kpis_before,
        "kpis_after": run.kpis_after,
        "audit_seq_first": run.audit_seq_first,
        "audit_seq_last": run.audit_seq_last,
        "evidence_sha256": run.evidence_sha256 or None,
        "error": run.error,
    }


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def audit_slice(run: DemoRun):
    """The audit rows of the run's slice, in seq order (empty until it started)."""
    if run.audit_seq_first is None:
        return AuditLog.objects.none()
    last = (
        run.audit_seq_last
        if run.audit_seq_last is not None
        else AuditLog.objects.order_by("-seq").values_list("seq", flat=True).first()
    )
    return AuditLog.objects.filter(seq__gte=run.audit_seq_first, seq__lte=last).order_by("seq")


def demo_scorecard() -> dict:
    """The KPI scorecard, after writing this process's buffered function metrics: the observability figures
    then count what the run itself did, not only what an earlier periodic flush happened to write."""
    from governance.services.kpis import kpi_report
    from tasks import metrics

    metrics.flush()
    return kpi_report()
