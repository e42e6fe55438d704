from django.apps import AppConfig


class OversightConfig(AppConfig):
    """The oversight agent: event ingest, detection, correlation, simulations (its engine lands with issue 3)."""

    name = "oversight"
    verbose_name = "Oversight agent"
    default_auto_field = "django.db.models.BigAutoField"
