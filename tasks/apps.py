from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Workers and function metrics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tasks import metrics, signals

        metrics.install_process_hooks()
        post_migrate.connect(signals.sync_schedules_after_migrate, sender=self)
