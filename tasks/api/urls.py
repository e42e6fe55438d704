from governance.api.routers import OptionalSlashRouter
from tasks.api.views import FunctionMetricViewSet

router = OptionalSlashRouter()
router.register("metrics/functions", FunctionMetricViewSet, basename="functionmetric")

urlpatterns = router.urls
