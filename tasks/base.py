"""The project's one task decorator and base class.

Every Celery task of Vigil is declared with :func:`vigil_task`, which

* requires an explicit, stable ``name`` (django-celery-beat stores task names as strings, so moving a
  module must not orphan a schedule);
* uses :class:`VigilTask`, which records the call into function metrics (count, latency histogram,
  errors by exception type, cold starts) without touching the database on the call path;
* applies the project defaults from ``config.settings`` (acks late, reject on worker loss, JSON, time
  limits); a task may tighten them.

Tasks stay thin: they take ids and call a service.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Ignore, Reject, Retry

from tasks import metrics
from tasks.models import FunctionKind

# Control-flow exceptions Celery uses on purpose; they are not failures of the function.
_CONTROL_FLOW = (Retry, Ignore, Reject)


class VigilTask(Task):
    """Base class of every Vigil task: instruments each execution (worker or eager)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        error_type = None
        try:
            return super().__call__(*args, **kwargs)
        except _CONTROL_FLOW:
            raise
        except BaseException as exc:
            error_type = type(exc).__name__
            raise
        finally:
            metrics.record(
                name=self.name,
                kind=FunctionKind.TASK,
                latency_ms=(time.perf_counter() - started) * 1000,
                error_type=error_type,
            )


def vigil_task(*, name: str, **options: Any) -> Callable[[Callable[..., Any]], VigilTask]:
    """Declare a Celery task of the project: ``@vigil_task(name="incidents.lifecycle_tick")``."""
    if "." not in name:
        raise ValueError(f"task name {name!r} must be '<app>.<task>'")
    return shared_task(base=VigilTask, name=name, **options)
