"""The project's one task decorator and base class.

Every Celery task of Vigil is declared with :func:`vigil_task`, which

* requires an explicit, stable ``name`` (django-celery-beat stores task names as strings, so moving a
  module must not orphan a schedule);
* wraps the function so every execution (worker or eager) is recorded into function metrics (count,
  latency histogram, errors by exception type, cold starts) without touching the database;
* applies the project defaults from ``config.settings`` (acks late, reject on worker loss, JSON, time
  limits); a task may tighten them.

Tasks stay thin: they take ids and call a service.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from celery import Task, current_task, shared_task
from celery.exceptions import Ignore, Reject, Retry

from tasks import metrics
from tasks.models import FunctionKind

# Control-flow exceptions Celery uses on purpose; they are not failures of the function.
_CONTROL_FLOW = (Retry, Ignore, Reject)


class VigilTask(Task):
    """Base class of every Vigil task.

    The instrumentation wraps the task's *function* (see :func:`vigil_task`) rather than overriding
    ``__call__``: Celery's tracer calls ``run`` directly when ``__call__`` is not overridden, and that
    fast path is worth keeping (a custom ``__call__`` costs more than the measurement itself).
    """


def instrument(func: Callable[..., Any], *, name: str) -> Callable[..., Any]:
    """Wrap ``func`` so each call is recorded into function metrics under ``name``."""

    record = metrics.recorder.record  # bound once: the recorder is a per-process singleton reset in place
    kind = FunctionKind.TASK.value
    clock = time.perf_counter

    @functools.wraps(func)
    def instrumented(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            result = func(*args, **kwargs)
        except _CONTROL_FLOW:
            record(name=name, kind=kind, latency_ms=(clock() - started) * 1000)
            raise
        except BaseException as exc:
            record(
                name=name,
                kind=kind,
                latency_ms=(clock() - started) * 1000,
                error_type=type(exc).__name__,
                error_message=metrics.failure_message(exc),
                task_id=_current_task_id(),
            )
            raise
        record(name=name, kind=kind, latency_ms=(clock() - started) * 1000)
        return result

    instrumented.__vigil_instrumented__ = True
    return instrumented


def _current_task_id() -> str:
    """The id of the Celery task being executed ("" when the function is called directly)."""
    request = getattr(current_task, "request", None)
    return str(getattr(request, "id", None) or "")


def is_instrumented(task: Task) -> bool:
    return isinstance(task, VigilTask) and getattr(task.run, "__vigil_instrumented__", False)


def vigil_task(*, name: str, **options: Any) -> Callable[[Callable[..., Any]], VigilTask]:
    """Declare a Celery task of the project: ``@vigil_task(name="incidents.lifecycle_tick")``."""
    if "." not in name:
        raise ValueError(f"task name {name!r} must be '<app>.<task>'")

    def decorator(func: Callable[..., Any]) -> VigilTask:
        return shared_task(base=VigilTask, name=name, **options)(instrument(func, name=name))

    return decorator
