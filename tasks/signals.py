"""Signal handlers of the tasks app."""

import logging

from django.db import connections

logger = logging.getLogger(__name__)


def sync_schedules_after_migrate(sender, using="default", verbosity=1, **kwargs) -> None:
    """``migrate`` leaves the beat schedule in step with ``tasks.schedules`` (idempotent)."""
    from tasks.scheduling import schedules_sync

    if "django_celery_beat_periodictask" not in connections[using].introspection.table_names():
        return  # a partial migrate that has not created the beat tables yet
    report = schedules_sync()
    if verbosity >= 1 and (report.created or report.disabled_orphans):
        logger.info("beat schedule synced: %s", report.describe())
