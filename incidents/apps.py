from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    """Incidents: opened from alerts and escalated reviews, driven to closure by the lifecycle engine."""

    name = "incidents"
    verbose_name = "Incidents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_ensure_rca_templates, sender=self)


def _ensure_rca_templates(sender, using="default", **kwargs) -> None:
    """Re-create missing RCA templates after ``migrate`` or a ``flush`` (Django's test runner flushes
    between transactional tests), as the data migration seeded them; edited templates are kept."""
    from django.db import connections

    if "rca_templates" in connections[using].introspection.table_names():
        from incidents.services.rca import templates_ensure

        templates_ensure()
