"""Function metrics: one row per function per measurement window (the plan's ``function_metrics``)."""

from django.db import models

from governance.models.base import VigilModel


class FunctionKind(models.TextChoices):
    TASK = "task", "Celery task"
    ENDPOINT = "endpoint", "HTTP endpoint"


class FunctionCallTotals(VigilModel):
    """What every function-metrics row holds: one function's calls in one period, summed over all processes.

    ``latency_histogram`` holds per-bucket counts keyed by the bucket's upper bound in ms ("+Inf" last);
    ``errors_by_type`` holds counts keyed by exception class name.
    """

    team_scope_path = None  # platform-wide operational data

    function_name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=FunctionKind.choices, db_index=True)
    measurement_window = models.DateTimeField(help_text="Start of the window (UTC).")
    invocation_count = models.BigIntegerField(default=0)
    error_count = models.BigIntegerField(default=0)
    total_latency_ms = models.FloatField(default=0)
    max_latency_ms = models.FloatField(default=0)
    cold_start_count = models.BigIntegerField(default=0)
    errors_by_type = models.JSONField(default=dict, blank=True)
    latency_histogram = models.JSONField(default=dict, blank=True)
    recorded_at = models.DateTimeField(help_text="Last flush into this row.")

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.function_name} @ {self.measurement_window:%Y-%m-%d %H:%M}"

    @property
    def avg_latency_ms(self) -> float | None:
        return self.total_latency_ms / self.invocation_count if self.invocation_count else None

    @property
    def error_rate(self) -> float | None:
        return self.error_count / self.invocation_count if self.invocation_count else None


class FunctionMetric(FunctionCallTotals):
    """Aggregated calls of one function (task or endpoint) in one window, summed over all processes.

    Processes aggregate in memory and flush with one upsert per function per window that *adds* to the
    row (``tasks.services.function_metrics_upsert``), so concurrent flushes never lose counts. Windows
    older than ``observability.retention.raw_days`` are rolled up into one row per hour
    (``window_seconds`` 3600) by ``tasks.retention.function_metrics_rollup``.
    """

    window_seconds = models.PositiveIntegerField(default=60)

    class Meta:
        db_table = "function_metrics"
        ordering = ["-measurement_window", "function_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["function_name", "measurement_window"], name="function_metrics_window_unique"
            )
        ]
        indexes = [
            models.Index(fields=["function_name", "-recorded_at"], name="idx_function_metrics_name_time"),
            models.Index(fields=["-measurement_window"], name="idx_function_metrics_window"),
        ]


class FunctionHourSummary(FunctionCallTotals):
    """One function's calls in one UTC hour (``measurement_window`` is the hour's start): the read model
    the dashboard's 24-hour and 7-day ranges use, so they read ≤ 168 rows per function, not 10,080.

    Kept by the flush itself: ``tasks.services.function_metrics_upsert`` adds every window aggregate to
    its ``function_metrics`` row *and* to its hour's summary in the same transaction. So for every
    function and hour the summary equals the sum of that hour's ``function_metrics`` rows, before and
    after the retention rollup (which only regroups those rows into one and never touches summaries).
    A window is counted in the hour its start falls in. Summaries older than
    ``observability.retention.hourly_days`` are deleted by the rollup task.
    """

    class Meta:
        db_table = "function_metrics_hourly"
        ordering = ["-measurement_window", "function_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["function_name", "measurement_window"], name="function_metrics_hourly_unique"
            )
        ]
        indexes = [models.Index(fields=["measurement_window"], name="idx_fn_metrics_hourly_window")]


class FunctionFailure(VigilModel):
    """One failed invocation of a task or endpoint, kept for the dashboard's "recent failures".

    Recorded in memory on the recorder's error path and written at flush in bulk, at most
    ``tasks.metrics.MAX_FAILURES_PER_FUNCTION`` per function per flush (a failure storm cannot flood the
    table); rows older than the retention are purged by ``tasks.services.function_failures_purge``.
    ``message`` is the exception's ``str`` cut to 500 characters (no traceback, no locals).
    """

    team_scope_path = None  # platform-wide operational data

    function_name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=FunctionKind.choices)
    exception_type = models.CharField(max_length=200)
    message = models.CharField(max_length=500, blank=True)
    task_id = models.CharField(max_length=255, blank=True, help_text="Celery task id (tasks only).")
    path = models.CharField(max_length=500, blank=True, help_text="Request path (endpoints only).")
    occurred_at = models.DateTimeField()
    process = models.CharField(max_length=255, blank=True, help_text="host:pid of the process that saw it.")

    class Meta:
        db_table = "function_failures"
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["function_name", "-occurred_at"], name="idx_fn_failures_name_time"),
            models.Index(fields=["-occurred_at"], name="idx_fn_failures_time"),
            models.Index(fields=["exception_type"], name="idx_fn_failures_type"),
        ]

    def __str__(self) -> str:
        return f"{self.function_name}: {self.exception_type} @ {self.occurred_at:%Y-%m-%d %H:%M:%S}"
