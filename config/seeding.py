"""Seeding of declared config keys from data migrations (historical models, idempotent)."""

from django.utils import timezone

from config.keys import KEYS


def seed_missing_keys(apps, schema_editor) -> None:
    """Insert every declared key that is not in ``platform_config`` yet, at version 1 with history.

    Later migrations that declare new keys call this again; existing rows are never touched, so an
    operator's tuned value survives upgrades.
    """
    PlatformConfig = apps.get_model("config", "PlatformConfig")
    PlatformConfigHistory = apps.get_model("config", "PlatformConfigHistory")
    present = set(PlatformConfig.objects.values_list("key", flat=True))
    now = timezone.now()
    for spec in KEYS:
        if spec.key in present:
            continue
        row = PlatformConfig.objects.create(
            key=spec.key, value=spec.default, category=spec.category, description=spec.description, version=1
        )
        PlatformConfigHistory.objects.create(
            config=row,
            version=1,
            previous_value=None,
            new_value=spec.default,
            changed_at=now,
            reason="seeded by migration",
        )
