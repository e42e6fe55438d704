"""The platform configuration registry tables (the plan's ``platform_config`` and its history)."""

from django.conf import settings
from django.db import models

from governance.models.base import VigilModel


class ConfigCategory(models.TextChoices):
    ENGINE_WEIGHTS = "engine_weights", "Engine weights"
    THRESHOLDS = "thresholds", "Thresholds"
    SLO = "slo", "SLOs"
    ESCALATION = "escalation", "Escalation"
    POLICY = "policy", "Policy"


class PlatformConfig(VigilModel):
    """One runtime-tunable value. Written only through ``config.registry.set`` (validated, versioned,
    audited); read through ``config.registry.get``."""

    team_scope_path = None  # platform-wide

    key = models.CharField(max_length=120, unique=True)
    value = models.JSONField()
    category = models.CharField(max_length=20, choices=ConfigCategory.choices, db_index=True)
    version = models.PositiveIntegerField(default=1)
    description = models.TextField(blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "platform_config"
        ordering = ["category", "key"]
        verbose_name = "platform config key"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(category__in=ConfigCategory.values), name="platform_config_category_valid"
            ),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="platform_config_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.key} (v{self.version})"


class PlatformConfigHistory(VigilModel):
    """One accepted change of a config key: the value before and after, who, when and why."""

    team_scope_path = None

    config = models.ForeignKey(PlatformConfig, on_delete=models.CASCADE, related_name="history")
    version = models.PositiveIntegerField(help_text="The version this change produced.")
    previous_value = models.JSONField(null=True)
    new_value = models.JSONField()
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(db_index=True)
    reason = models.TextField(blank=True)

    class Meta:
        db_table = "platform_config_history"
        ordering = ["-changed_at", "-version"]
        verbose_name_plural = "platform config history"
        constraints = [models.UniqueConstraint(fields=["config", "version"], name="platform_config_history_unique")]

    def __str__(self) -> str:
        return f"{self.config.key} v{self.version}"
