"""Admin for the config registry: edit with schema errors shown, history with a readable diff."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.html import format_html, format_html_join

from config import registry
from config.diff import describe_diff, json_diff
from config.keys import load_schema
from config.models import PlatformConfig, PlatformConfigHistory
from governance.admin_base import ReadOnlyAdmin

HISTORY_ROWS_ON_PAGE = 20


class PlatformConfigForm(forms.ModelForm):
    value = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 18, "cols": 100, "class": "vLargeTextField", "spellcheck": "false"}),
        help_text="JSON; validated against the key's schema (shown below) before it is stored.",
    )
    expected_version = forms.IntegerField(widget=forms.HiddenInput)
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 100}),
        max_length=1000,
        help_text="Why you change it; kept in the history and the audit log.",
    )

    class Meta:
        model = PlatformConfig
        fields = ["value"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["expected_version"].initial = self.instance.version

    def clean(self):
        cleaned = super().clean()
        if "value" in cleaned:
            try:
                registry.validate(self.instance.key, cleaned["value"])
            except registry.ConfigValidationError as exc:
                for path, problems in exc.errors.items():
                    for problem in problems:
                        self.add_error("value", f"{path}: {problem}")
        current = PlatformConfig.objects.filter(pk=self.instance.pk).values_list("version", flat=True).first()
        if cleaned.get("expected_version") is not None and current != cleaned["expected_version"]:
            raise forms.ValidationError(
                f"Someone changed this key since you opened it (now version {current}). "
                "Reload the page and apply your change again."
            )
        return cleaned


@admin.register(PlatformConfig)
class PlatformConfigAdmin(admin.ModelAdmin):
    form = PlatformConfigForm
    list_display = ["key", "category", "version", "value_preview", "updated_by", "updated_at"]
    list_filter = ["category"]
    search_fields = ["key", "description"]
    ordering = ["category", "key"]
    readonly_fields = ["key", "category", "version", "description", "updated_by", "updated_at", "schema", "history"]
    fieldsets = (
        (None, {"fields": ("key", "category", "description", "version", "updated_by", "updated_at")}),
        ("Change", {"fields": ("value", "reason", "expected_version")}),
        ("Schema", {"fields": ("schema",), "classes": ("collapse",)}),
        ("History", {"fields": ("history",)}),
    )

    def has_add_permission(self, request):
        return False  # keys are declared in config/keys.py and seeded by migration

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="value")
    def value_preview(self, obj):
        text = json.dumps(obj.value, separators=(",", ":"))
        return text if len(text) <= 80 else text[:77] + "…"

    @admin.display(description="JSON Schema")
    def schema(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(load_schema(obj.key), indent=2))

    @admin.display(description=f"Last {HISTORY_ROWS_ON_PAGE} changes")
    def history(self, obj):
        rows = obj.history.select_related("changed_by")[:HISTORY_ROWS_ON_PAGE]
        return format_html(
            '<table class="config-history"><tr><th>Version</th><th>When</th><th>Who</th><th>Why</th>'
            "<th>Changes</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>v{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        row.version,
                        f"{row.changed_at:%Y-%m-%d %H:%M:%S}",
                        row.changed_by or "system",
                        row.reason,
                        format_html_join("", "<div>{}</div>", ((line,) for line in _change_lines(row))),
                    )
                    for row in rows
                ),
            ),
        )

    def save_model(self, request, obj, form, change):
        try:
            registry.set(
                obj.key,
                form.cleaned_data["value"],
                user=request.user,
                reason=form.cleaned_data["reason"],
                expected_version=form.cleaned_data["expected_version"],
            )
        except registry.StaleConfigVersion as exc:
            request._config_save_failed = True
            self.message_user(request, f"Not saved: {exc}", level=messages.ERROR)

    def log_change(self, request, obj, message):
        if not getattr(request, "_config_save_failed", False):
            super().log_change(request, obj, message)

    def response_change(self, request, obj):
        if getattr(request, "_config_save_failed", False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)


def _change_lines(row: PlatformConfigHistory) -> list[str]:
    if row.previous_value is None:
        return ["initial value"]
    return describe_diff(json_diff(row.previous_value, row.new_value)) or ["no change"]


@admin.register(PlatformConfigHistory)
class PlatformConfigHistoryAdmin(ReadOnlyAdmin):
    list_display = ["config", "version", "changed_at", "changed_by", "reason", "changes"]
    list_filter = ["config__category", "config"]
    search_fields = ["config__key", "reason", "changed_by__username"]
    date_hierarchy = "changed_at"
    list_select_related = ["config", "changed_by"]

    @admin.display(description="changes")
    def changes(self, obj):
        return format_html_join("", "<div>{}</div>", ((line,) for line in _change_lines(obj)))
