"""Fixed-window request counters of the DB-backed rate limiter (``governance.services.ratelimit``)."""

import uuid

from django.db import models

__all__ = ["RateLimit"]


class RateLimit(models.Model):
    """How many requests one caller made to one endpoint group in one fixed window.

    Rows are written only by the single upsert in ``rate_limit_hit`` (never read-then-write) and
    deleted by ``rate_limits_cleanup`` once ``expires_at`` (window start + two windows) has passed — in the
    same statement that adds their counts to the caller's hourly history (``CallerActivity``).
    On PostgreSQL the table is UNLOGGED (migration 0007): no WAL flush per decision; a crash or a failover
    resets the counters, which only grants callers one fresh window.
    """

    team_scope_path = None  # operational counters, not team data

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.CharField(max_length=200, help_text="Caller identity: user:<uuid> or ip:<address>.")
    bucket = models.CharField(max_length=64, help_text="Endpoint group, e.g. auth, events_ingest, default.")
    window_start = models.DateTimeField()
    count = models.IntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "rate_limits"
        constraints = [
            models.UniqueConstraint(fields=["key", "bucket", "window_start"], name="rate_limits_key_bucket_window")
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.bucket} @{self.window_start:%Y-%m-%d %H:%M:%S}: {self.count}"
