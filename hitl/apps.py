from django.apps import AppConfig


class HitlConfig(AppConfig):
    """Human-in-the-loop review queue: the queue and the service that fills it from alerts (issue 3);
    auto-assist, auto-approval and triage land with issue 4."""

    name = "hitl"
    verbose_name = "Human review (HITL)"
    default_auto_field = "django.db.models.BigAutoField"
