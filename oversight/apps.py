from django.apps import AppConfig


class OversightConfig(AppConfig):
    """The oversight agent: event ingest, detection and correlation into alerts, simulations."""

    name = "oversight"
    verbose_name = "Oversight agent"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from oversight.rules import ensure_after_migrate

        post_migrate.connect(ensure_after_migrate, sender=self)
