from django.contrib import admin

from governance.admin_base import ReadOnlyAdmin
from tasks.models import FunctionFailure, FunctionMetric
from tasks.percentiles import histogram_percentile


@admin.register(FunctionMetric)
class FunctionMetricAdmin(ReadOnlyAdmin):
    list_display = [
        "function_name",
        "kind",
        "measurement_window",
        "invocation_count",
        "error_count",
        "error_pct",
        "avg_ms",
        "p95_ms",
        "max_latency_ms",
        "cold_start_count",
    ]
    list_filter = ["kind", "measurement_window"]
    search_fields = ["function_name"]
    date_hierarchy = "measurement_window"
    ordering = ["-measurement_window", "function_name"]
    show_full_result_count = False

    @admin.display(description="errors %")
    def error_pct(self, obj):
        return f"{obj.error_rate:.1%}" if obj.error_rate is not None else "—"

    @admin.display(description="avg ms")
    def avg_ms(self, obj):
        return f"{obj.avg_latency_ms:.2f}" if obj.avg_latency_ms is not None else "—"

    @admin.display(description="p95 ms")
    def p95_ms(self, obj):
        value = histogram_percentile(obj.latency_histogram, 0.95)
        return f"{value:.1f}" if value is not None else "—"


@admin.register(FunctionFailure)
class FunctionFailureAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "function_name", "kind", "exception_type", "short_message", "task_id", "path"]
    list_filter = ["kind", "exception_type"]
    search_fields = ["function_name", "message"]
    date_hierarchy = "occurred_at"
    ordering = ["-occurred_at"]
    show_full_result_count = False

    @admin.display(description="message")
    def short_message(self, obj):
        return obj.message if len(obj.message) <= 120 else obj.message[:119] + "…"
