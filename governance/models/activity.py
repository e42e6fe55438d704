"""Hourly request history per caller and endpoint group, folded from the rate limiter's expired counters."""

import uuid

from django.db import models

__all__ = ["CallerActivity"]


class CallerActivity(models.Model):
    """How many requests one caller made to one endpoint group in one UTC hour.

    Written only by ``rate_limits_cleanup``: each expired ``rate_limits`` row is deleted and added here in
    the same statement (PostgreSQL) or transaction (SQLite), so a counted request is in exactly one of the
    two tables at any moment. ``hour`` is the UTC hour of the counter's window start. Rows older than the
    unusual-pattern baseline (``baseline_days`` + 1 day) are pruned by the same cleanup. The detectors'
    own counter groups (``auth_failures``, ``identities``) are not requests and never land here.
    """

    team_scope_path = None  # operational history, not team data

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.CharField(max_length=200, help_text="Caller identity: user:<uuid> or ip:<address>.")
    bucket = models.CharField(max_length=64, help_text="Endpoint group, e.g. default, gateway, eval.")
    hour = models.DateTimeField(help_text="UTC hour start of the counted windows.")
    requests = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "caller_activity"
        verbose_name_plural = "caller activity"
        constraints = [
            models.UniqueConstraint(fields=["key", "bucket", "hour"], name="caller_activity_key_bucket_hour")
        ]
        indexes = [
            models.Index(fields=["key", "hour"], name="caller_activity_key_hour"),
            # Retention (``hour < cutoff``), the admin's date hierarchy and bucket filter.
            models.Index(fields=["hour"], name="caller_activity_hour"),
            models.Index(fields=["bucket", "hour"], name="caller_activity_bucket_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.bucket} @{self.hour:%Y-%m-%d %H:00}: {self.requests}"
