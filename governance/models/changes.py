"""Writes to governed tables as the database saw them, and the transactions that accounted for theirs.

Both tables are filled by PostgreSQL triggers (``governance.governed_tables``), never by Vigil's code;
``bypass_scan_direct_writes`` judges the changes and ``governed_changes_purge`` deletes old ones.
"""

from django.db import models

__all__ = ["AuditedTransaction", "GovernedChange"]


class GovernedChange(models.Model):
    """One statement that changed rows of a governed table: what, how many, and who was connected.

    ``audited`` is None until the scan judges the change: True when its transaction appended audit
    entries (or applied a migration), False when nothing accounted for it (a bypass detection).
    """

    team_scope_path = None  # platform evidence, not team data

    class Operation(models.TextChoices):
        INSERT = "INSERT", "insert"
        UPDATE = "UPDATE", "update"
        DELETE = "DELETE", "delete"

    id = models.BigAutoField(primary_key=True)
    table_name = models.CharField(max_length=63, help_text="The governed table written.")
    operation = models.CharField(max_length=6, choices=Operation.choices)
    rows = models.BigIntegerField(help_text="Rows the statement changed.")
    row_ids = models.JSONField(default=list, blank=True, help_text="Primary keys of the first changed rows.")
    txid = models.BigIntegerField(help_text="The writing transaction (txid_current()).")
    changed_at = models.DateTimeField(help_text="Start of the writing transaction (database clock).")
    db_user = models.CharField(max_length=63, help_text="session_user of the writing connection.")
    application_name = models.CharField(max_length=200, blank=True, help_text="As the client declared it.")
    client_addr = models.CharField(max_length=64, null=True, blank=True, help_text="Empty: local socket.")
    audited = models.BooleanField(null=True, help_text="Empty until judged.")
    judged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "governed_changes"
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(
                fields=["changed_at"], condition=models.Q(judged_at__isnull=True), name="governed_changes_unjudged"
            ),
            models.Index(fields=["changed_at"], name="governed_changes_changed_at"),
            models.Index(fields=["table_name", "operation"], name="governed_changes_table_op"),
            models.Index(fields=["audited", "changed_at"], name="governed_changes_audited"),
        ]

    def __str__(self) -> str:
        return f"{self.operation} {self.table_name} ×{self.rows} by {self.db_user} (txid {self.txid})"


class AuditedTransaction(models.Model):
    """A transaction that appended audit entries (``source`` audit_log) or applied a migration
    (``source`` django_migrations); one row per transaction, however many statements it ran."""

    team_scope_path = None

    txid = models.BigIntegerField(primary_key=True)
    recorded_at = models.DateTimeField(db_index=True)
    source = models.CharField(max_length=63)

    class Meta:
        db_table = "audited_transactions"

    def __str__(self) -> str:
        return f"txid {self.txid} ({self.source})"
