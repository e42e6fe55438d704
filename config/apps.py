from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class PlatformConfigApp(AppConfig):
    """The runtime-config app: ``platform_config`` and its history, the typed registry, JSON Schemas."""

    name = "config"
    label = "config"
    verbose_name = "Platform configuration"
    default_auto_field = "django.db.models.BigAutoField"


class VigilAdminConfig(AdminConfig):
    default_site = "config.admin_site.VigilAdminSite"
