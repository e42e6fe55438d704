"""Routes of the event pipeline API (mounted under ``/api/v1/``)."""

from django.urls import re_path

from governance.api.routers import OptionalSlashRouter
from oversight.api.alerts import AlertViewSet
from oversight.api.events import EventViewSet
from oversight.api.metrics import OversightMetricsView
from oversight.api.simulations import SimulationViewSet

router = OptionalSlashRouter()
router.register("events", EventViewSet, basename="event")
router.register("alerts", AlertViewSet, basename="alert")
router.register("simulations", SimulationViewSet, basename="simulation")

urlpatterns = [
    re_path(r"^oversight/metrics/?$", OversightMetricsView.as_view(), name="oversight-metrics"),
    *router.urls,
]
