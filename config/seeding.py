"""Seeding of declared config keys: from data migrations, and re-ensured after ``flush``."""

from django.apps import apps as global_apps
from django.utils import timezone

from config.keys import BYPASS_SIGNALS, KEYS, SELF_MONITORING_SIGNALS


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


SECURITY_THRESHOLDS = "oversight.thresholds.security"
DATA_QUALITY_THRESHOLDS = "oversight.thresholds.data_quality"


def add_missing_signals(*, apps, key: str, signals: tuple[str, ...], reason: str) -> bool:
    """Give an installed thresholds ``key`` the declared ``signals`` it lacks, with their declared defaults,
    as one new version with a history row. Signals already present (an operator's tuning) are kept; a key
    not installed yet is left to ``seed_missing_keys``. Returns True when a version was written."""
    PlatformConfig = apps.get_model("config", "PlatformConfig")
    PlatformConfigHistory = apps.get_model("config", "PlatformConfigHistory")
    row = PlatformConfig.objects.filter(key=key).first()
    if row is None:
        return False
    default = next(spec.default for spec in KEYS if spec.key == key)
    missing = {signal: default[signal] for signal in signals if signal not in row.value}
    if not missing:
        return False
    previous = dict(row.value)
    row.value = {**previous, **missing}
    row.version += 1
    row.save(update_fields=["value", "version", "updated_at"])
    PlatformConfigHistory.objects.create(
        config=row,
        version=row.version,
        previous_value=previous,
        new_value=row.value,
        changed_at=timezone.now(),
        reason=reason,
    )
    return True


def add_bypass_signals(apps=global_apps, schema_editor=None) -> None:
    """Give an installed ``oversight.thresholds.security`` the bypass signals it lacks (one new version with
    history), so detections raise alerts after an upgrade too; signals an operator already tuned are kept."""
    add_missing_signals(
        apps=apps,
        key=SECURITY_THRESHOLDS,
        signals=BYPASS_SIGNALS,
        reason="governance-bypass signals added by migration",
    )


def add_self_monitoring_signals(apps=global_apps, schema_editor=None) -> None:
    """Give an installed ``oversight.thresholds.data_quality`` the self-monitoring signals it lacks (queue
    depth, outbox lag, beat lag; one new version with history); signals an operator already tuned are kept."""
    add_missing_signals(
        apps=apps,
        key=DATA_QUALITY_THRESHOLDS,
        signals=SELF_MONITORING_SIGNALS,
        reason="self-monitoring signals added by migration",
    )


def seed_after_migrate(sender, using="default", apps=global_apps, **kwargs) -> None:
    """``post_migrate`` handler: re-seed declared keys if a flush removed them."""
    from django.db import connections

    if "platform_config" in connections[using].introspection.table_names():
        seed_missing_keys(apps)
