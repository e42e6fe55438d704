"""Celery tasks of the governance core (thin: they call services)."""

from governance.services.audit import audit_chain_verify_and_record
from tasks.base import vigil_task


@vigil_task(name="governance.audit_verify")
def audit_verify() -> bool:
    """Hourly walk of the audit chain. Not retried: a failure here must be seen, not hidden."""
    return audit_chain_verify_and_record().ok


@vigil_task(name="governance.ratelimit_cleanup")
def ratelimit_cleanup() -> int:
    """Every 15 minutes: delete expired rate-limit counters in chunks. Idempotent."""
    from governance.services.ratelimit import rate_limits_cleanup

    return rate_limits_cleanup()


@vigil_task(name="governance.bypass_scan")
def bypass_scan() -> dict[str, int]:
    """Every minute: turn failed-JWT and repeated-429 counters into security events. Idempotent per hour."""
    from governance.services.bypass import bypass_scan as scan

    return scan()
