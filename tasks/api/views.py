import django_filters
from rest_framework import mixins, viewsets

from tasks.api.serializers import FunctionMetricSerializer
from tasks.models import FunctionMetric


class FunctionMetricFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="measurement_window", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="measurement_window", lookup_expr="lt")
    function = django_filters.CharFilter(field_name="function_name")
    function_contains = django_filters.CharFilter(field_name="function_name", lookup_expr="icontains")

    class Meta:
        model = FunctionMetric
        fields = ["kind", "function", "since", "until"]


class FunctionMetricViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Per-window aggregates of every instrumented task and endpoint (newest window first)."""

    queryset = FunctionMetric.objects.all()
    serializer_class = FunctionMetricSerializer
    filterset_class = FunctionMetricFilter
    ordering_fields = ["measurement_window"]
    ordering = ["-measurement_window"]
