"""Queue health: what an operator needs to see that the asynchronous machinery is keeping up.

:func:`queue_health` reads, in one call and a fixed amount of work (two SQL queries and one pipelined
Redis round trip, whatever the number of queues or periodic tasks):

* the depth of every Celery queue — messages waiting in the broker, not yet taken by a worker;
* the age of the oldest event batch still waiting for processing (the oversight outbox);
* for every enabled periodic task declared in :mod:`tasks.schedules`, when beat last ran it and whether
  it is *late* (nothing for more than three of its intervals).

It feeds ``/metrics`` (:mod:`tasks.collectors`), ``GET /api/v1/metrics/queues`` and the self-monitoring
task ``tasks.self_monitor`` (:mod:`tasks.self_monitoring`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from oversight.selectors import oldest_unprocessed_batch_received_at
from tasks.schedules import SCHEDULES

LATE_AFTER_INTERVALS = 3
"""A periodic task is late when it has not run for more than this many of its intervals."""


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    depth: int | None  # None: not measurable (eager Celery, a broker other than Redis, broker error)


@dataclass(frozen=True)
class BeatTaskHealth:
    task: str
    periodic_task: str
    interval_seconds: float | None  # None: the entry runs on a crontab/solar/clocked schedule
    last_run_at: datetime | None
    last_run_age_seconds: float | None
    late: bool
    overdue_seconds: float  # seconds past its due time (last run + interval) when late, else 0


@dataclass(frozen=True)
class QueueHealth:
    checked_at: datetime
    broker: str  # "redis", "eager", "unsupported: <transport>" or "error: <exception type>"
    queues: tuple[QueueDepth, ...]
    oldest_unprocessed_batch_at: datetime | None
    outbox_oldest_batch_age_seconds: float  # 0 when nothing waits
    beat: tuple[BeatTaskHealth, ...]

    @property
    def deepest_queue(self) -> QueueDepth | None:
        """The queue with the most waiting messages (None when no depth is measurable)."""
        measured = [queue for queue in self.queues if queue.depth is not None]
        return max(measured, key=lambda queue: queue.depth, default=None)

    @property
    def worst_late_task(self) -> BeatTaskHealth | None:
        """The late periodic task furthest past its due time (None when every task is on time)."""
        return max((task for task in self.beat if task.late), key=lambda task: task.overdue_seconds, default=None)

    def as_dict(self) -> dict:
        return asdict(self)


def celery_queue_names() -> list[str]:
    """The declared Celery queues, plus the single queue a one-queue deployment routes everything to."""
    names = [queue.name for queue in settings.CELERY_TASK_QUEUES]
    single = getattr(settings, "CELERY_ROUTE_ALL_TO_QUEUE", "")
    if single and single not in names:
        names.append(single)
    return names


def _queue_depths(queues: Sequence[str]) -> tuple[str, tuple[QueueDepth, ...]]:
    """Depth of each queue from the broker, in one pipelined round trip.

    Kombu's Redis transport keeps a queue as a list named after it, plus one list per priority step
    (``<queue><sep><priority>``, priority 0 being the bare name); the depth is the sum of their lengths.
    Messages a worker has taken but not acknowledged (``unacked``) are not waiting and not counted.
    """
    unmeasured = lambda: tuple(QueueDepth(queue=name, depth=None) for name in queues)  # noqa: E731
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "eager", unmeasured()
    from config.celery import app

    try:
        # The app's broker pool: a scrape reuses an open connection instead of dialling Redis each time.
        with app.pool.acquire(block=True, timeout=2) as conn:
            transport = conn.transport.driver_type
            if transport != "redis":
                return f"unsupported: {transport}", unmeasured()
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            steps = list(channel.priority_steps)
            pipe = channel.client.pipeline(transaction=False)
            for name in queues:
                for step in steps:
                    pipe.llen(f"{name}{channel.sep}{step}" if step else name)
            lengths = pipe.execute()
    except Exception as exc:  # the broker is down or refuses: the figure is unknown, the scrape still answers
        return f"error: {type(exc).__name__}", unmeasured()
    per_queue = len(steps)
    return "redis", tuple(
        QueueDepth(queue=name, depth=int(sum(lengths[index * per_queue : (index + 1) * per_queue])))
        for index, name in enumerate(queues)
    )


def _beat_health(now: datetime) -> tuple[BeatTaskHealth, ...]:
    declared = {spec.periodic_task_name: spec for spec in SCHEDULES}
    rows = PeriodicTask.objects.select_related("interval").filter(name__in=declared, enabled=True).order_by("name")
    result = []
    for row in rows:
        interval = row.interval.schedule.run_every.total_seconds() if row.interval_id else None
        age = (now - row.last_run_at).total_seconds() if row.last_run_at else None
        # Never run: beat loads an entry (and stamps last_run_at) soon after it is created or changed, so
        # the entry's own change time is when the clock starts (django-celery-beat's own fallback).
        since = row.last_run_at or row.date_changed
        waited = (now - since).total_seconds() if since else None
        late = interval is not None and waited is not None and waited > LATE_AFTER_INTERVALS * interval
        result.append(
            BeatTaskHealth(
                task=row.task,
                periodic_task=row.name,
                interval_seconds=interval,
                last_run_at=row.last_run_at,
                last_run_age_seconds=age,
                late=late,
                overdue_seconds=max(0.0, waited - interval) if late else 0.0,
            )
        )
    return tuple(result)


def queue_health(*, now: datetime | None = None, queues: Sequence[str] | None = None) -> QueueHealth:
    """Queue depths, outbox lag and beat lateness, read now.

    Guarantees: read-only; two SQL queries and at most one broker round trip (all ``LLEN`` in one
    pipeline) whatever the number of queues and tasks; a broker error never raises — the depths are then
    None and ``broker`` names the error. ``queues`` defaults to :func:`celery_queue_names`.
    """
    now = now or timezone.now()
    names = list(queues) if queues is not None else celery_queue_names()
    broker, depths = _queue_depths(names)
    oldest = oldest_unprocessed_batch_received_at()
    return QueueHealth(
        checked_at=now,
        broker=broker,
        queues=depths,
        oldest_unprocessed_batch_at=oldest,
        outbox_oldest_batch_age_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        beat=_beat_health(now),
    )
