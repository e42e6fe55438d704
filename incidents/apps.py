from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    """Incidents and their lifecycle engine (its engine lands with issue 5)."""

    name = "incidents"
    verbose_name = "Incidents"
    default_auto_field = "django.db.models.BigAutoField"
