import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from tasks.api.serializers import FunctionMetricSerializer, QueueHealthSerializer
from tasks.health import queue_health
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


class QueueHealthView(APIView):
    """Queue health now: depth per Celery queue, age of the oldest unprocessed event batch, and when
    beat last sent each periodic task (late: nothing for more than 3 intervals). Same data as the
    ``vigil_queue_*``, ``vigil_outbox_*`` and ``vigil_beat_*`` gauges of ``/metrics``."""

    @extend_schema(responses=QueueHealthSerializer)
    def get(self, request):
        return Response(QueueHealthSerializer(queue_health()).data)
