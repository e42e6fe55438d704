"""Admin for the governed-change log: what the database saw written to governed tables (read-only
evidence; filled by triggers, judged by ``bypass_scan_direct_writes``)."""

from __future__ import annotations

from django.contrib import admin

from governance.admin_base import ReadOnlyAdmin
from governance.models import AuditedTransaction, GovernedChange


@admin.register(GovernedChange)
class GovernedChangeAdmin(ReadOnlyAdmin):
    list_display = ["changed_at", "table_name", "operation", "rows", "db_user", "client_addr", "application_name",
                    "txid", "audited", "judged_at"]  # fmt: skip
    list_filter = ["audited", "table_name", "operation"]
    search_fields = ["db_user", "application_name", "table_name"]
    date_hierarchy = "changed_at"
    ordering = ["-changed_at", "-id"]
    show_full_result_count = False
    fields = ["table_name", "operation", "rows", "row_ids", "txid", "changed_at", "db_user", "application_name",
              "client_addr", "audited", "judged_at"]  # fmt: skip


@admin.register(AuditedTransaction)
class AuditedTransactionAdmin(ReadOnlyAdmin):
    """Transactions that appended audit entries or applied a migration: what a change is judged against."""

    list_display = ["txid", "recorded_at", "source"]
    list_filter = ["source"]
    search_fields = ["=txid"]
    date_hierarchy = "recorded_at"
    ordering = ["-recorded_at"]
    show_full_result_count = False
