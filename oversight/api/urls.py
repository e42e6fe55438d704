"""Routes of the event pipeline API (mounted under ``/api/v1/``)."""

from governance.api.routers import OptionalSlashRouter
from oversight.api.alerts import AlertViewSet
from oversight.api.events import EventViewSet

router = OptionalSlashRouter()
router.register("events", EventViewSet, basename="event")
router.register("alerts", AlertViewSet, basename="alert")

urlpatterns = [*router.urls]
