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
