"""Routes of the review-queue API (mounted under ``/api/v1/``)."""

from governance.api.routers import OptionalSlashRouter
from hitl.api.assist_models import AssistModelViewSet
from hitl.api.policies import AutoApprovalPolicyViewSet
from hitl.api.reviews import ReviewItemViewSet
from hitl.api.spot_checks import SpotCheckViewSet

# List-level actions (reviews/health, reviews/bulk-decide, …) are routed before reviews/{id}.
router = OptionalSlashRouter()
router.register("reviews", ReviewItemViewSet, basename="review")
router.register("auto-approval-policies", AutoApprovalPolicyViewSet, basename="autoapprovalpolicy")
router.register("spot-checks", SpotCheckViewSet, basename="spotcheck")
router.register("assist-models", AssistModelViewSet, basename="assistmodel")

urlpatterns = router.urls
