"""Queue-health gauges for ``/metrics``, computed when Prometheus scrapes (not recorded in advance).

The collector lives in its own registry, exposed next to the function metrics by the scrape view: in
multiprocess mode it runs in the scraping process only (the per-process files hold function metrics),
and it is never registered in the global registry, so nothing else collects it by accident.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tasks.health import queue_health

logger = logging.getLogger(__name__)


class QueueHealthCollector(Collector):
    """``vigil_queue_depth{queue}``, ``vigil_outbox_oldest_batch_age_seconds``,
    ``vigil_beat_last_run_age_seconds{task}`` and ``vigil_beat_task_late{task}`` from one
    :func:`tasks.health.queue_health` call per scrape. ``vigil_queue_health_up`` is 0 when the health
    could not be read (database unreachable); a queue whose depth is unknown (eager Celery, broker
    error) and a task beat never ran have no sample."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("vigil_queue_health_up", "1 when queue health was read at this scrape, else 0.")
        try:
            health = queue_health()
        except Exception:
            logger.exception("queue health could not be read for /metrics")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        depth = GaugeMetricFamily(
            "vigil_queue_depth", "Messages waiting in a Celery queue (not yet taken by a worker).", labels=["queue"]
        )
        for queue in health.queues:
            if queue.depth is not None:
                depth.add_metric([queue.queue], queue.depth)
        yield depth

        outbox = GaugeMetricFamily(
            "vigil_outbox_oldest_batch_age_seconds",
            "Age of the oldest event batch not processed yet (0 when none waits).",
        )
        outbox.add_metric([], health.outbox_oldest_batch_age_seconds)
        yield outbox

        age = GaugeMetricFamily(
            "vigil_beat_last_run_age_seconds",
            "Seconds since beat last sent a periodic task (no sample: never sent).",
            labels=["task"],
        )
        late = GaugeMetricFamily(
            "vigil_beat_task_late",
            "1 when a periodic task has not been sent for more than 3 of its intervals, else 0.",
            labels=["task"],
        )
        for task in health.beat:
            if task.last_run_age_seconds is not None:
                age.add_metric([task.task], task.last_run_age_seconds)
            late.add_metric([task.task], 1 if task.late else 0)
        yield age
        yield late


QUEUE_HEALTH_REGISTRY = CollectorRegistry(auto_describe=False)
QUEUE_HEALTH_REGISTRY.register(QueueHealthCollector())
