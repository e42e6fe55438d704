from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class PlatformConfigApp(AppConfig):
    """The runtime-config app: ``platform_config`` and its history, the typed registry, JSON Schemas."""

    name = "config"
    label = "config"
    verbose_name = "Platform configuration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from config.seeding import seed_after_migrate

        post_migrate.connect(seed_after_migrate, sender=self)


class VigilAdminConfig(AdminConfig):
    default_site = "config.admin_site.VigilAdminSite"
