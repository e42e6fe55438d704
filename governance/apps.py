from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from governance import checks  # noqa: F401  (registers system checks)
        from governance.seed import ensure_after_migrate

        post_migrate.connect(ensure_after_migrate, sender=self)
