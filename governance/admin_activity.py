"""Admin for the callers' hourly request history (``caller_activity``): evidence, read-only."""

from __future__ import annotations

from django.contrib import admin

from governance.admin_base import ReadOnlyAdmin
from governance.models import CallerActivity


@admin.register(CallerActivity)
class CallerActivityAdmin(ReadOnlyAdmin):
    """Requests per caller, endpoint group and UTC hour, as folded from the rate limiter's counters; the
    unusual-pattern detector's baseline. Search by caller key (``user:<uuid>`` or ``ip:<address>``)."""

    list_display = ["hour", "key", "bucket", "requests", "updated_at"]
    list_filter = ["bucket"]
    search_fields = ["key"]
    date_hierarchy = "hour"
    ordering = ["-hour", "key", "bucket"]
    show_full_result_count = False  # the table grows by the hour: no second COUNT(*) per page
