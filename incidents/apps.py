from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    """Incidents: opened from alerts by the oversight engine; the lifecycle engine lands with issue 5."""

    name = "incidents"
    verbose_name = "Incidents"
    default_auto_field = "django.db.models.BigAutoField"
