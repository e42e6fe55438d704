from django.apps import AppConfig


class HitlConfig(AppConfig):
    """Human-in-the-loop review queue: the queue and the service that fills it from alerts (issue 3);
    auto-assist, auto-approval and triage land with issue 4; proactive reviews from predictions (issue 9)."""

    name = "hitl"
    verbose_name = "Human review (HITL)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance.signals import predictions_recorded
        from hitl.services.proactive import on_predictions_recorded

        predictions_recorded.connect(on_predictions_recorded, dispatch_uid="hitl.proactive_reviews")
