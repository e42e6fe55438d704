from django.urls import re_path

from governance.api.routers import OptionalSlashRouter
from tasks.api.views import FunctionMetricViewSet, QueueHealthView

router = OptionalSlashRouter()
router.register("metrics/functions", FunctionMetricViewSet, basename="functionmetric")

urlpatterns = [
    re_path(r"^metrics/queues/?$", QueueHealthView.as_view(), name="queue-health"),
    *router.urls,
]
