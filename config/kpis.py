"""KPI and capability measured by the config registry."""

from __future__ import annotations

from config import registry
from config.keys import KEYS
from config.models import PlatformConfig
from governance.services.kpis import (
    ENFORCED,
    NOT_ENFORCED,
    CapabilityStatus,
    Measurement,
    capability_check,
    kpi_provider,
)


def _centralized_keys() -> tuple[int, list[str]]:
    """Declared keys that are stored in the database with a value that passes their schema.

    Reads the table itself, not this process's registry snapshot: a value changed around the registry
    (SQL, a restore) bumps no version, so the snapshot's version stamp would never show the drift.
    """
    stored = dict(PlatformConfig.objects.values_list("key", "value"))
    problems = []
    for spec in KEYS:
        if spec.key not in stored:
            problems.append(f"{spec.key} (not stored)")
            continue
        try:
            registry.validate(spec.key, stored[spec.key])
        except registry.ConfigValidationError:
            problems.append(f"{spec.key} (invalid)")
    return len(KEYS) - len(problems), problems


@kpi_provider("config_centralization")
def config_centralization() -> Measurement:
    good, problems = _centralized_keys()
    share = good / len(KEYS)
    return Measurement(
        value=round(share * 100, 1),
        display=f"{share:.0%} ({good}/{len(KEYS)} keys)",
        met=not problems,
        detail="; ".join(problems) if problems else "every runtime setting is served from the config registry",
    )


@capability_check("configuration_management")
def configuration_management_status() -> CapabilityStatus:
    good, problems = _centralized_keys()
    if problems:
        return CapabilityStatus(NOT_ENFORCED, f"{len(problems)} keys not centralized: {'; '.join(problems[:5])}")
    return CapabilityStatus(ENFORCED, f"{good} keys versioned, schema-validated and audited")
