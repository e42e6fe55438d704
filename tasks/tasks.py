"""Infrastructure tasks: the canary used to prove a worker pipeline end to end, function-metrics retention and
self-monitoring."""

import dataclasses

from tasks.base import vigil_task
from tasks.retention import function_metrics_rollup as rollup_function_metrics
from tasks.services import function_failures_purge


class CanaryFailure(RuntimeError):
    """Raised on purpose by the canary in ``fail`` mode, to prove failures are counted and alerted."""


@vigil_task(name="tasks.canary")
def canary(mode: str = "ok") -> str:
    """A no-op round trip through broker and worker (``manage.py worker_canary``).

    ``mode="fail"`` raises :class:`CanaryFailure` so operators can check that errors show up by type
    in function metrics and in their alerting. Idempotent and side-effect free.
    """
    if mode == "fail":
        raise CanaryFailure("canary asked to fail")
    if mode != "ok":
        raise ValueError(f"unknown canary mode {mode!r}")
    return "ok"


@vigil_task(name="tasks.function_metrics_rollup")
def function_metrics_rollup() -> dict[str, int]:
    """Roll raw function-metric windows past their retention into hourly rows; expire old hourly rows."""
    return dataclasses.asdict(rollup_function_metrics())


@vigil_task(name="tasks.self_monitor")
def self_monitor() -> dict[str, int]:
    """Queue health → ``data_quality`` events of ``vigil-operations`` (see :mod:`tasks.self_monitoring`).
    Idempotent per minute."""
    from tasks.self_monitoring import self_monitor_run

    report = self_monitor_run()
    return {"sent": report.sent, "skipped": report.skipped}


@vigil_task(name="tasks.purge_function_failures")
def purge_function_failures() -> int:
    """Delete recent-failure rows past their retention (``tasks.services.function_failures_purge``)."""
    return function_failures_purge()
