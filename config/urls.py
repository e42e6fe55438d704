"""URL root: admin, versioned API, API schema and docs, Prometheus scrape, health probes."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from tasks import views as ops_views

api_v1 = [
    path("", include("governance.api.urls")),
    path("", include("config.api.urls")),
    path("", include("tasks.api.urls")),
    path("", include("oversight.api.urls")),
    path("", include("hitl.api.urls")),
    path("", include("incidents.api.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("metrics", ops_views.prometheus_metrics, name="prometheus-metrics"),
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
]

handler404 = "governance.api.errors.json_not_found"
handler500 = "governance.api.errors.json_server_error"
