"""The append-only, hash-chained audit log."""

import uuid

from django.db import models

from governance.choices import ActorType, AuditAction

__all__ = ["AuditLog", "AuditVerification"]


class AuditLog(models.Model):
    """One audited state change. Rows are never updated or deleted (a database trigger refuses it).

    ``hash = sha256(prev_hash + canonical JSON of the row)``; ``governance.services.audit`` writes
    rows one at a time under a lock so ``seq`` has no gaps and every row links to the one before.
    """

    team_scope_path = None  # visibility is controlled by role (admin, governance_lead, security)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    seq = models.BigIntegerField(unique=True)
    at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150, db_index=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    action = models.CharField(max_length=64, choices=AuditAction.choices, db_index=True)
    object_type = models.CharField(max_length=64, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        db_table = "audit_log"
        ordering = ["-seq"]
        indexes = [models.Index(fields=["object_type", "object_id", "seq"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor}"

    @property
    def created_at(self):
        return self.at


class AuditVerification(models.Model):
    """The result of one walk of the audit chain (hourly on beat, or `manage.py audit_verify`)."""

    team_scope_path = None

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    ok = models.BooleanField()
    checked_rows = models.BigIntegerField()
    head_seq = models.BigIntegerField(null=True)
    head_hash = models.CharField(max_length=64, blank=True)
    broken_seq = models.BigIntegerField(null=True)
    reason = models.TextField(blank=True)
    duration_ms = models.FloatField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'BROKEN'} at {self.created_at:%Y-%m-%d %H:%M}"
