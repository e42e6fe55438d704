"""Infrastructure tasks: the canary used to prove a worker pipeline end to end."""

from tasks.base import vigil_task
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


@vigil_task(name="tasks.purge_function_failures")
def purge_function_failures() -> int:
    """Delete recent-failure rows past their retention (``tasks.services.function_failures_purge``)."""
    return function_failures_purge()
