"""The Celery application.

Queues (routing lives in ``settings.CELERY_TASK_ROUTES``, by task-name prefix):

* ``events``    — ``oversight.*``: batch processing, outbox sweeps. Latency-sensitive (MTTD).
* ``assist``    — ``hitl.*``: auto-assist and auto-approval.
* ``lifecycle`` — ``incidents.*``: SLA timers, escalation, auto-close.
* ``predict``   — ``governance.predict*``: predictive governance, CPU-heavy and slow.
* ``default``   — everything else (audit verification, metrics housekeeping, canaries).

Every task of the project is declared with :func:`tasks.base.vigil_task`, which records function
metrics and applies the project's defaults.
"""

import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("vigil")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _use_project_log_format(logger, *args, **kwargs):
    """Worker logs use the same formatter as the web process (JSON in production)."""
    from django.conf import settings

    if settings.LOG_FORMAT == "json":
        from config.logging import JsonFormatter

        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())
