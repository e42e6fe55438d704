from django.apps import AppConfig


class HitlConfig(AppConfig):
    """Human-in-the-loop review queue, auto-assist and auto-approval (the engine lands with issue 4; the queue model and the service that fills it from alerts are here)."""

    name = "hitl"
    verbose_name = "Human review (HITL)"
    default_auto_field = "django.db.models.BigAutoField"
