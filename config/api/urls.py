from config.api.views import ConfigViewSet
from governance.api.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("config", ConfigViewSet, basename="config")

urlpatterns = router.urls
