"""Seeding of declared config keys: from data migrations, and re-ensured after ``flush``."""

from django.apps import apps as global_apps
from django.utils import timezone

from config.keys import KEYS


def seed_missing_keys(apps=global_apps, schema_editor=None) -> None:
    """Insert every declared key that is not in ``platform_config`` yet, at version 1 with history.

    Later migrations that declare new keys call this again, and ``post_migrate`` calls it after a
    ``flush``; existing rows are never touched, so an operator's tuned value survives upgrades.
    Not audited: it installs defaults, it does not change a value anyone relies on.
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


def seed_after_migrate(sender, using="default", apps=global_apps, **kwargs) -> None:
    """``post_migrate`` handler: re-seed declared keys if a flush removed them."""
    from django.db import connections

    if "platform_config" in connections[using].introspection.table_names():
        seed_missing_keys(apps)
