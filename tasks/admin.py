from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path, reverse

from governance.admin_base import ReadOnlyAdmin
from tasks.dashboard import DEFAULT_RANGE, DEFAULT_SORT, RANGES, SORTS, function_dashboard
from tasks.dashboard_charts import HEATMAP_ROW_HEIGHT, HEATMAP_WIDTH, SPARK_HEIGHT, SPARK_WIDTH, chart_rows
from tasks.health import queue_health
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
    change_list_template = "admin/tasks/functionmetric/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view(self.dashboard_view)
        return [path("dashboard/", view, name="tasks_functionmetric_dashboard"), *super().get_urls()]

    def dashboard_view(self, request):
        """Staff only (``admin_view``) and only for users who may view function metrics."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        range_key = request.GET.get("range", DEFAULT_RANGE)
        range_key = range_key if range_key in RANGES else DEFAULT_RANGE
        sort = request.GET.get("sort", DEFAULT_SORT)
        sort = sort if sort in SORTS else DEFAULT_SORT
        dashboard = function_dashboard(range_key=range_key, sort=sort)
        failures_url = reverse("admin:tasks_functionfailure_changelist")
        rows = chart_rows(dashboard)
        for row in rows:
            row["failures_url"] = f"{failures_url}?{urlencode({'function_name': row['name']})}"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Function dashboard",
            "dashboard": dashboard,
            "rows": rows,
            "range_links": [(r.key, r.label, f"?{urlencode({'range': r.key, 'sort': sort})}") for r in RANGES.values()],
            "sort_links": {key: f"?{urlencode({'range': range_key, 'sort': key})}" for key in SORTS},
            "heatmap_width": HEATMAP_WIDTH,
            "heatmap_height": max(len(rows), 1) * HEATMAP_ROW_HEIGHT,
            "row_height": HEATMAP_ROW_HEIGHT,
            "spark_width": SPARK_WIDTH,
            "spark_height": SPARK_HEIGHT,
            "queue_health": queue_health(),
        }
        return TemplateResponse(request, "admin/tasks/functionmetric/dashboard.html", context)

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
