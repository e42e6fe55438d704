"""Hour summaries of function metrics, backfilled from the rows already in ``function_metrics``."""

import uuid
from collections import Counter
from datetime import UTC

from django.db import migrations, models

BATCH = 1000


def backfill_hour_summaries(apps, schema_editor):
    """One summary per function and UTC hour: the sum of that hour's rows (raw windows or rolled hours)."""
    metric = apps.get_model("tasks", "FunctionMetric")
    summary = apps.get_model("tasks", "FunctionHourSummary")
    pending, current, key = [], None, None
    rows = metric.objects.order_by("function_name", "measurement_window").iterator(chunk_size=2000)
    for row in rows:
        hour = row.measurement_window.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        if (row.function_name, hour) != key:
            if current is not None:
                pending.append(current)
            if len(pending) >= BATCH:
                summary.objects.bulk_create(pending)
                pending = []
            key = (row.function_name, hour)
            current = summary(
                function_name=row.function_name,
                kind=row.kind,
                measurement_window=hour,
                recorded_at=row.recorded_at,
                errors_by_type={},
                latency_histogram={},
            )
        current.invocation_count += row.invocation_count
        current.error_count += row.error_count
        current.total_latency_ms += row.total_latency_ms
        current.max_latency_ms = max(current.max_latency_ms, row.max_latency_ms)
        current.cold_start_count += row.cold_start_count
        current.errors_by_type = dict(Counter(current.errors_by_type) + Counter(row.errors_by_type or {}))
        current.latency_histogram = dict(Counter(current.latency_histogram) + Counter(row.latency_histogram or {}))
        current.recorded_at = max(current.recorded_at, row.recorded_at)
    if current is not None:
        pending.append(current)
    summary.objects.bulk_create(pending)


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0003_function_failures"),
    ]

    operations = [
        migrations.CreateModel(
            name="FunctionHourSummary",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("function_name", models.CharField(max_length=200)),
                (
                    "kind",
                    models.CharField(
                        choices=[("task", "Celery task"), ("endpoint", "HTTP endpoint")], db_index=True, max_length=16
                    ),
                ),
                ("measurement_window", models.DateTimeField(help_text="Start of the window (UTC).")),
                ("invocation_count", models.BigIntegerField(default=0)),
                ("error_count", models.BigIntegerField(default=0)),
                ("total_latency_ms", models.FloatField(default=0)),
                ("max_latency_ms", models.FloatField(default=0)),
                ("cold_start_count", models.BigIntegerField(default=0)),
                ("errors_by_type", models.JSONField(blank=True, default=dict)),
                ("latency_histogram", models.JSONField(blank=True, default=dict)),
                ("recorded_at", models.DateTimeField(help_text="Last flush into this row.")),
            ],
            options={
                "db_table": "function_metrics_hourly",
                "ordering": ["-measurement_window", "function_name"],
                "indexes": [models.Index(fields=["measurement_window"], name="idx_fn_metrics_hourly_window")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("function_name", "measurement_window"), name="function_metrics_hourly_unique"
                    )
                ],
            },
        ),
        migrations.RunPython(backfill_hour_summaries, migrations.RunPython.noop, elidable=True),
    ]
