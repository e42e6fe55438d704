from django.apps import AppConfig


class HitlConfig(AppConfig):
    """Human-in-the-loop review queue, auto-assist and auto-approval (its engine lands with issue 4)."""

    name = "hitl"
    verbose_name = "Human review (HITL)"
    default_auto_field = "django.db.models.BigAutoField"
