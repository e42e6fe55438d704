"""Routes of the incidents API (mounted under ``/api/v1/``)."""

from governance.api.routers import OptionalSlashRouter
from incidents.api.follow_ups import FollowUpViewSet
from incidents.api.incidents import IncidentViewSet
from incidents.api.templates import RCATemplateViewSet

# List-level actions (incidents/metrics, incidents/bulk-resolve) are routed before incidents/{id}.
router = OptionalSlashRouter()
router.register("incidents", IncidentViewSet, basename="incident")
router.register("rca-templates", RCATemplateViewSet, basename="rcatemplate")
router.register("follow-ups", FollowUpViewSet, basename="followup")

urlpatterns = router.urls
