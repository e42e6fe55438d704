"""Governance-bypass detection: attempts to get around Vigil become security incidents.

Each detector lives in its own module and reports through ``core.bypass_detection_emit``:

- ``auth``: failed JWT authentications per address (``invalid_jwt``), repeated 429s per caller
  (``rate_limit_abuse``), many identities from one address (``identity_rotation``);
- ``baselines``: request volume, endpoint mix and hours of each caller against its own history
  (``unusual_pattern``; history folded from the limiter's counters into ``caller_activity``);
- ``direct_writes``: writes to governed tables whose transaction wrote no audit entry (``direct_write``,
  PostgreSQL triggers);
- ``gate_circumvention``: deployments the CI/CD gate did not allow and posted results of gateway
  evaluation suites (``policy_circumvention``; inline on commit, the scan is the safety net).

``bypass_scan`` (beat, ``governance.bypass_scan`` every minute) runs the periodic ones; the inline hooks
call their detector where the request happens.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

from governance.services.bypass.auth import (
    AUTH_FAILURE_GROUP,
    AUTH_FAILURE_WINDOW_SECONDS,
    COUNTER_GROUPS,
    IDENTITY_GROUP,
    auth_failure_record,
    bypass_scan_identity_rotation,
    bypass_scan_invalid_tokens,
    bypass_scan_rate_limit_abuse,
    identity_seen_record,
)
from governance.services.bypass.baselines import bypass_scan_unusual_patterns
from governance.services.bypass.core import (
    BYPASS_CONFIG_KEY,
    DETECTION_NAMESPACE,
    PLATFORM_SYSTEM_NAME,
    SECURITY_TEAM_SLUG,
    bypass_detection_emit,
    bypass_event_id,
    detector_settings,
    detector_signal,
    platform_system_ensure,
    redact_details,
)
from governance.services.bypass.direct_writes import bypass_scan_direct_writes, governed_changes_purge
from governance.services.bypass.gate_circumvention import (
    bypass_scan_gate_circumvention,
    deployment_circumvention_report,
    evaluation_run_unverified_report,
)

__all__ = [
    "AUTH_FAILURE_GROUP",
    "AUTH_FAILURE_WINDOW_SECONDS",
    "BYPASS_CONFIG_KEY",
    "COUNTER_GROUPS",
    "DETECTION_NAMESPACE",
    "IDENTITY_GROUP",
    "PERIODIC_DETECTORS",
    "PLATFORM_SYSTEM_NAME",
    "SECURITY_TEAM_SLUG",
    "auth_failure_record",
    "bypass_detection_emit",
    "bypass_event_id",
    "bypass_scan",
    "bypass_scan_direct_writes",
    "bypass_scan_gate_circumvention",
    "bypass_scan_identity_rotation",
    "bypass_scan_invalid_tokens",
    "bypass_scan_rate_limit_abuse",
    "bypass_scan_unusual_patterns",
    "deployment_circumvention_report",
    "detector_settings",
    "detector_signal",
    "evaluation_run_unverified_report",
    "governed_changes_purge",
    "identity_seen_record",
    "platform_system_ensure",
    "redact_details",
]

# The detectors the minute scan runs, by name; each returns how many new detections it recorded.
PERIODIC_DETECTORS: dict[str, Callable[..., int]] = {
    "invalid_jwt": bypass_scan_invalid_tokens,
    "rate_limit_abuse": bypass_scan_rate_limit_abuse,
    "identity_rotation": bypass_scan_identity_rotation,
    "unusual_pattern": bypass_scan_unusual_patterns,
    "direct_write": bypass_scan_direct_writes,
    "policy_circumvention": bypass_scan_gate_circumvention,
}


def bypass_scan(*, now: datetime | None = None) -> dict[str, int]:
    """Run every periodic detector; ``{detector: new detections}``. Idempotent within an hour.

    Then re-derive the knowledge-graph links of the platform's open incidents: a detection merged into an
    alert that already has its incident cites audit entries the incident is not linked to yet.
    """
    from incidents.services.graph import incident_links_refresh_open  # incidents builds on governance

    now = now or timezone.now()
    found = {name: detector(now=now) for name, detector in PERIODIC_DETECTORS.items()}
    incident_links_refresh_open(system_id=platform_system_ensure().pk)
    return found
