from rest_framework import serializers

from tasks.models import FunctionMetric
from tasks.percentiles import histogram_percentile


class FunctionMetricSerializer(serializers.ModelSerializer):
    avg_latency_ms = serializers.FloatField(read_only=True, allow_null=True)
    error_rate = serializers.FloatField(read_only=True, allow_null=True)
    p50_ms = serializers.SerializerMethodField()
    p95_ms = serializers.SerializerMethodField()
    p99_ms = serializers.SerializerMethodField()

    class Meta:
        model = FunctionMetric
        fields = [
            "function_name",
            "kind",
            "measurement_window",
            "window_seconds",
            "invocation_count",
            "error_count",
            "error_rate",
            "errors_by_type",
            "total_latency_ms",
            "avg_latency_ms",
            "max_latency_ms",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "cold_start_count",
            "latency_histogram",
            "recorded_at",
        ]
        read_only_fields = fields

    def get_p50_ms(self, obj) -> float | None:
        return histogram_percentile(obj.latency_histogram, 0.50)

    def get_p95_ms(self, obj) -> float | None:
        return histogram_percentile(obj.latency_histogram, 0.95)

    def get_p99_ms(self, obj) -> float | None:
        return histogram_percentile(obj.latency_histogram, 0.99)


class QueueDepthSerializer(serializers.Serializer):
    queue = serializers.CharField()
    depth = serializers.IntegerField(allow_null=True, help_text="Waiting messages; null when not measurable.")


class BeatTaskHealthSerializer(serializers.Serializer):
    task = serializers.CharField()
    periodic_task = serializers.CharField()
    interval_seconds = serializers.FloatField(allow_null=True, help_text="Null for a non-interval schedule.")
    last_run_at = serializers.DateTimeField(allow_null=True, help_text="When beat last sent it; null: never.")
    last_run_age_seconds = serializers.FloatField(allow_null=True)
    late = serializers.BooleanField(help_text="Not sent for more than 3 intervals.")
    overdue_seconds = serializers.FloatField(help_text="Seconds past its due time when late, else 0.")


class QueueHealthSerializer(serializers.Serializer):
    checked_at = serializers.DateTimeField()
    broker = serializers.CharField(help_text='"redis", "eager", "unsupported: <transport>" or "error: <type>".')
    queues = QueueDepthSerializer(many=True)
    oldest_unprocessed_batch_at = serializers.DateTimeField(allow_null=True)
    outbox_oldest_batch_age_seconds = serializers.FloatField()
    beat = BeatTaskHealthSerializer(many=True)
