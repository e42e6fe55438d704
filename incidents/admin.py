"""Admin of incidents: the changelist (SLA, escalation, regulatory countdown, RCA), the change page
(timeline, RCA section, follow-ups, links and related incidents, lifecycle buttons), acknowledge and
bulk-resolve actions, and the RCA template, follow-up, notification and link pages.

Every write goes through the same services as the API (``incidents.services.lifecycle``, ``…rca``,
``…bulk``, ``…templates``, ``…housekeeping``), so the admin inherits their guarded transitions,
all-or-nothing guarantees and audit entries; nothing here changes an incident's status by itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.timesince import timesince, timeuntil

from config import registry
from governance.admin_base import ReadOnlyAdmin, TeamScopedAdmin, severity_badge
from governance.admin_base import SlaBreachedListFilter as BaseSlaBreachedListFilter
from governance.choices import Role
from governance.models import User
from incidents.models import (
    ALLOWED_FROM,
    OPEN_INCIDENT_STATUSES,
    FollowUp,
    FollowUpStatus,
    Incident,
    IncidentEvent,
    IncidentLink,
    IncidentStatus,
    IncidentType,
    Notification,
    RCATemplate,
)
from incidents.selectors import past_target_now_q
from incidents.services import rca
from incidents.services.bulk import MAX_BULK_INCIDENTS, BulkResolveError, incidents_bulk_resolve
from incidents.services.graph import related_incidents
from incidents.services.housekeeping import FollowUpNotOpen, follow_up_complete
from incidents.services.lifecycle import (
    NOTE_MAX_LENGTH,
    RCA_REQUIRED_SEVERITIES,
    IncidentInvalid,
    IncidentTransitionError,
    incident_acknowledge,
    incident_assign,
    incident_close,
    incident_mitigate,
    incident_reopen,
    incident_resolve,
)
from incidents.services.regulatory import regulatory_countdown
from incidents.services.templates import (
    CONTENT_MAX_LENGTH,
    EDITABLE_FIELDS,
    RCATemplateInvalid,
    rca_template_update,
    required_fields_clean,
)

CONFIRMATION_LISTED_INCIDENTS = 50  # the bulk confirmation page names this many; the rest are counted
RELATED_INCIDENTS_SHOWN = 10
AGE_FILTER_DAYS = (1, 7, 30)


def _when(value) -> str:
    return formats.date_format(timezone.localtime(value), "M j, H:i") if value else "—"


def _pretty_json(value: Any) -> str:
    return format_html('<pre style="white-space: pre-wrap; margin: 0;">{}</pre>', json.dumps(value, indent=2))


def _change_url(incident_id: Any) -> str:
    return reverse("admin:incidents_incident_change", args=[incident_id])


def _report_errors(model_admin: admin.ModelAdmin, request: HttpRequest, fields: dict[str, list[str]]) -> None:
    for key, problems in fields.items():
        for problem in problems:
            model_admin.message_user(request, f"{key}: {problem}", messages.ERROR)


# --- List filters --------------------------------------------------------------------------------


class SlaBreachedListFilter(BaseSlaBreachedListFilter):
    """Open incidents past their acknowledge target (not acknowledged yet) or their resolve target."""

    breached_label = "Breached (open, past a target)"
    breached_q = staticmethod(past_target_now_q)


class AgeListFilter(admin.SimpleListFilter):
    """How long ago the incident opened."""

    title = "age"
    parameter_name = "age"

    def lookups(self, request, model_admin):
        return [(f"{days}d", f"Opened over {days} day{'s' if days > 1 else ''} ago") for days in AGE_FILTER_DAYS]

    def queryset(self, request, queryset):
        for days in AGE_FILTER_DAYS:
            if self.value() == f"{days}d":
                return queryset.filter(opened_at__lt=timezone.now() - timedelta(days=days))
        return queryset


class FollowUpDueListFilter(admin.SimpleListFilter):
    """Open follow-ups by due date: overdue, due today, due within a week, later."""

    title = "due"
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue"), ("today", "Due today"), ("week", "Due within 7 days"), ("later", "Later")]

    def queryset(self, request, queryset):
        today = timezone.localdate()
        open_ones = queryset.filter(status=FollowUpStatus.OPEN)
        if self.value() == "overdue":
            return open_ones.filter(due_date__lt=today)
        if self.value() == "today":
            return open_ones.filter(due_date=today)
        if self.value() == "week":
            return open_ones.filter(due_date__gt=today, due_date__lte=today + timedelta(days=7))
        if self.value() == "later":
            return open_ones.filter(due_date__gt=today + timedelta(days=7))
        return queryset


# --- Forms ---------------------------------------------------------------------------------------


def _reason_choices() -> list[tuple[str, str]]:
    return [("", "---------"), *((reason, reason) for reason in registry.get("incidents.resolution_reasons"))]


def _note_field(help_text: str, *, required: bool = False, label: str = "Note", **kwargs) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=required,
        max_length=NOTE_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text=help_text,
        **kwargs,
    )


class BulkResolveForm(forms.Form):
    resolution_reason = forms.ChoiceField(
        label="Resolution reason",
        choices=(),
        help_text="One reason for all of them, from the configured list (incidents.resolution_reasons).",
        error_messages={"required": "Pick the resolution reason these incidents share."},
    )
    note = _note_field("Optional; added to every incident's timeline and audit entry.")
    close = forms.BooleanField(
        label="Also close them",
        required=False,
        help_text="High and critical incidents close only with a complete RCA; if one lacks it, nothing changes.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["resolution_reason"].choices = _reason_choices()


class ResolveForm(forms.Form):
    resolution_reason = forms.ChoiceField(label="Resolution reason", choices=(), required=False)
    note = _note_field("Optional; recorded on the timeline and in the audit log.")
    follow_up_date = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional: when to review the incident again.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["resolution_reason"].choices = _reason_choices()


class CloseForm(forms.Form):
    reason = _note_field("Optional; why it is closed. High and critical incidents need a complete RCA.", label="Reason")


class ReopenForm(forms.Form):
    reason = _note_field(
        "Why the incident is reopened: recorded on the timeline and in the audit log.",
        required=True,
        label="Reason",
        error_messages={"required": "Say why the incident is reopened."},
    )


class RCAForm(forms.Form):
    """One text area per RCA field: the template's required fields first, then any other field the RCA
    already has."""

    def __init__(self, *args, incident: Incident, **kwargs):
        super().__init__(*args, **kwargs)
        required = rca.required_fields(incident)
        values = incident.rca or {}
        for name in [*required, *sorted(set(values) - set(required))]:
            self.fields[name] = forms.CharField(
                label=name.replace("_", " ").capitalize() + (" *" if name in required else ""),
                required=False,
                max_length=rca.FIELD_MAX_LENGTH,
                initial=values.get(name, ""),
                strip=True,
                widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
            )

    def changed_values(self, incident: Incident) -> dict[str, str]:
        current = incident.rca or {}
        return {
            name: value for name, value in self.cleaned_data.items() if value != str(current.get(name) or "").strip()
        }


@dataclass(frozen=True)
class Transition:
    label: str
    target: str
    form: type[forms.Form] | None  # None: no page, the button acts at once


TRANSITIONS: dict[str, Transition] = {
    "acknowledge": Transition("Acknowledge", IncidentStatus.ACKNOWLEDGED, None),
    "mitigate": Transition("Mitigate", IncidentStatus.MITIGATED, None),
    "resolve": Transition("Resolve", IncidentStatus.RESOLVED, ResolveForm),
    "close": Transition("Close", IncidentStatus.CLOSED, CloseForm),
    "reopen": Transition("Reopen", IncidentStatus.OPEN, ReopenForm),
}


def available_transitions(incident: Incident) -> list[tuple[str, Transition]]:
    """The lifecycle moves allowed from the incident's status (``ALLOWED_FROM``)."""
    return [(name, move) for name, move in TRANSITIONS.items() if incident.status in ALLOWED_FROM[move.target]]


# --- Inlines of the change page ------------------------------------------------------------------


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TimelineInline(_ReadOnlyInline):
    """The incident's timeline, oldest first (kept across reopens)."""

    model = IncidentEvent
    verbose_name = "timeline entry"
    verbose_name_plural = "timeline"
    fields = ["at", "kind", "actor", "message"]
    readonly_fields = fields
    ordering = ["at"]


class FollowUpInline(_ReadOnlyInline):
    model = FollowUp
    fields = ["title", "owner", "due_date", "status", "completed_at", "notified_at", "escalated_at"]
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner")


class LinkInline(_ReadOnlyInline):
    model = IncidentLink
    verbose_name = "knowledge-graph link"
    fields = ["relation", "target_type", "target_id", "label"]
    readonly_fields = fields


# --- Incidents -----------------------------------------------------------------------------------


class IncidentForm(forms.ModelForm):
    class Meta:
        model = Incident
        fields = ["assignee"]


@admin.register(Incident)
class IncidentAdmin(TeamScopedAdmin):
    """Incidents, newest first. They are opened by the oversight engine and review escalations and move
    only through the lifecycle services; the change page edits the assignee (``incident_assign``), the
    RCA (``incident_rca_update``) and offers the lifecycle buttons."""

    form = IncidentForm
    list_display = [
        "title",
        "system",
        "severity_badge",
        "status",
        "opened_at",
        "sla",
        "escalation_level",
        "assignee",
        "regulatory",
        "rca_done",
    ]
    list_filter = [
        "status",
        "severity",
        "incident_type",
        "team",
        "system",
        "serious",
        SlaBreachedListFilter,
        AgeListFilter,
    ]
    search_fields = ["title", "^fingerprint", "system__name"]
    search_help_text = "Part of a title or system name, or the start of a fingerprint."
    list_select_related = ["system", "assignee", "team"]
    date_hierarchy = "opened_at"
    ordering = ["-opened_at"]
    actions = ["acknowledge_selected", "bulk_resolve_selected"]
    inlines = [TimelineInline, FollowUpInline, LinkInline]
    change_form_template = "admin/incidents/incident/change_form.html"
    readonly_fields = [
        "title",
        "system",
        "team",
        "severity",
        "status",
        "incident_type",
        "description",
        "opened_at",
        "acknowledged_at",
        "mitigated_at",
        "resolved_at",
        "closed_at",
        "sla_due_at",
        "resolve_due_at",
        "last_activity_at",
        "reopened_count",
        "escalation_level",
        "next_escalation_at",
        "last_escalated_at",
        "escalation_token",
        "escalation_policy",
        "rca_template",
        "rca_completed_at",
        "follow_up_date",
        "resolution_reason",
        "serious",
        "regulatory_basis",
        "regulatory_deadline_at",
        "regulatory_reported_at",
        "regulatory",
        "fingerprint",
        "source_alert",
        "created_at",
        "updated_at",
    ]
    fieldsets = (
        (
            None,
            {"fields": ("title", "system", "team", "severity", "status", "incident_type", "assignee", "description")},
        ),
        (
            "Timers",
            {
                "fields": (
                    "opened_at",
                    "acknowledged_at",
                    "mitigated_at",
                    "resolved_at",
                    "closed_at",
                    "sla_due_at",
                    "resolve_due_at",
                    "last_activity_at",
                    "reopened_count",
                )
            },
        ),
        (
            "Escalation",
            {
                "fields": (
                    "escalation_level",
                    "next_escalation_at",
                    "last_escalated_at",
                    "escalation_token",
                    "escalation_policy",
                ),
                "classes": ("collapse",),
            },
        ),
        ("Resolution", {"fields": ("rca_template", "rca_completed_at", "follow_up_date", "resolution_reason")}),
        (
            "Regulatory (EU AI Act Art. 73)",
            {
                "fields": (
                    "serious",
                    "regulatory_basis",
                    "regulatory_deadline_at",
                    "regulatory_reported_at",
                    "regulatory",
                )
            },
        ),
        ("Source", {"fields": ("fingerprint", "source_alert", "created_at", "updated_at")}),
    )

    # --- columns ---------------------------------------------------------------------------------
    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj: Incident) -> str:
        return severity_badge(obj.severity)

    @admin.display(description="SLA")
    def sla(self, obj: Incident) -> str:
        """The target the incident is running against: acknowledge while open, then resolve."""
        if obj.status == IncidentStatus.OPEN:
            label, due = "ack by", obj.sla_due_at
        elif obj.status in OPEN_INCIDENT_STATUSES:
            label, due = "resolve by", obj.resolve_due_at
        else:
            return "—"
        if due is None:
            return "—"
        if due < timezone.now():
            return format_html(
                '{} {} <strong class="sla-overdue" style="color: #cf222e;">overdue</strong>', label, _when(due)
            )
        return f"{label} {_when(due)}"

    @admin.display(description="serious · Art. 73", ordering="regulatory_deadline_at")
    def regulatory(self, obj: Incident) -> str:
        if not obj.serious:
            return "—"
        countdown = regulatory_countdown(obj)
        if countdown is None:
            return "serious"
        if countdown.get("reported_at"):
            return format_html('<span class="regulatory-reported">reported {}</span>', _when(countdown["reported_at"]))
        deadline = countdown["deadline_at"]
        if countdown.get("overdue"):
            return format_html(
                '<strong class="regulatory-overdue" style="color: #cf222e;">report overdue by {}</strong>',
                timesince(deadline),
            )
        return format_html(
            '<span class="regulatory-countdown">report in {} (by {})</span>', timeuntil(deadline), _when(deadline)
        )

    @admin.display(description="RCA done", boolean=True, ordering="rca_completed_at")
    def rca_done(self, obj: Incident) -> bool | None:
        if obj.rca_completed_at is not None:
            return True
        return False if obj.severity in RCA_REQUIRED_SEVERITIES else None

    @admin.display(description="escalation policy (frozen at open)")
    def escalation_policy(self, obj: Incident) -> str:
        return _pretty_json(obj.escalation_snapshot)

    # --- the change page -------------------------------------------------------------------------
    def has_add_permission(self, request):
        return False  # incidents come from alerts and review escalations

    def has_delete_permission(self, request, obj=None):
        return False  # an incident is evidence; it is closed, never deleted

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if obj is not None and "assignee" in form.base_fields:
            field = form.base_fields["assignee"]
            field.queryset = (
                User.objects.filter(teams=obj.team_id, is_active=True, is_service_account=False)
                .distinct()
                .order_by("username")
            )
            field.widget.can_add_related = field.widget.can_change_related = False
            field.widget.can_delete_related = field.widget.can_view_related = False
        return form

    def save_model(self, request, obj, form, change):
        # Only the assignee is editable: the service writes that column, the timeline and the audit entry.
        if "assignee" in form.changed_data:
            incident_assign(incident_id=obj.pk, assignee=obj.assignee, actor=request.user)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        incident = self.get_object(request, unquote(object_id)) if request.method == "GET" else None
        if incident is not None:
            can_act = self.has_change_permission(request, incident)
            template = incident.rca_template
            extra_context.update(
                {
                    "can_act": can_act,
                    "transitions": [
                        {"name": name, "label": move.label, "needs_page": move.form is not None}
                        for name, move in available_transitions(incident)
                    ]
                    if can_act
                    else [],
                    "rca_form": RCAForm(incident=incident),
                    "rca_template": template,
                    "rca_missing": rca.missing_fields(incident),
                    "rca_required": incident.severity in RCA_REQUIRED_SEVERITIES,
                    "related_incidents": self._related(request, incident),
                }
            )
        return super().change_view(request, object_id, form_url, extra_context)

    @staticmethod
    def _related(request: HttpRequest, incident: Incident) -> list[Incident]:
        return list(related_incidents(incident=incident, user=request.user, limit=RELATED_INCIDENTS_SHOWN))

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/transition/<str:name>/", view(self.transition_view), name=f"{prefix}_transition"),
            path("<path:object_id>/rca/", view(self.rca_view), name=f"{prefix}_rca"),
            *super().get_urls(),
        ]

    def _incident_for_change(self, request: HttpRequest, object_id: str) -> Incident:
        incident = self.get_object(request, unquote(object_id))  # scoped: another team's answers 404
        if incident is None:
            raise Http404("No such incident.")
        if not self.has_change_permission(request, incident):
            raise PermissionDenied
        return incident

    def transition_view(self, request: HttpRequest, object_id: str, name: str):
        """A lifecycle button. Acknowledge and mitigate act at once; resolve, close and reopen first show
        a page asking for the reason (the confirmation POST carries ``post=yes``). POST only."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        move = TRANSITIONS.get(name)
        if move is None:
            raise Http404("No such transition.")
        incident = self._incident_for_change(request, object_id)
        form = None
        if move.form is not None:
            confirmed = request.POST.get("post") == "yes"
            form = move.form(request.POST if confirmed else None)
            if not (confirmed and form.is_valid()):
                context = {
                    **self.admin_site.each_context(request),
                    "title": f"{move.label} incident",
                    "opts": self.opts,
                    "original": incident,
                    "incident": incident,
                    "form": form,
                    "transition": name,
                    "move": move,
                    "rca_missing": rca.missing_fields(incident)
                    if name == "close" and incident.severity in RCA_REQUIRED_SEVERITIES
                    else [],
                    "media": self.media + form.media,
                }
                return TemplateResponse(request, "admin/incidents/incident/transition.html", context)
        data = form.cleaned_data if form is not None else {}
        try:
            self._run_transition(request, incident, name, data)
        except IncidentTransitionError as exc:
            self.message_user(request, f"{exc}. Nothing changed.", messages.ERROR)
        except IncidentInvalid as exc:
            _report_errors(self, request, exc.fields)
            self.message_user(request, "Nothing changed.", messages.ERROR)
        else:
            self.message_user(request, f"Incident {move.target if name != 'reopen' else 'reopened'}.", messages.SUCCESS)
        return HttpResponseRedirect(_change_url(incident.pk))

    @staticmethod
    def _run_transition(request: HttpRequest, incident: Incident, name: str, data: dict[str, Any]) -> None:
        actor, incident_id = request.user, incident.pk
        if name == "acknowledge":
            incident_acknowledge(incident_id=incident_id, actor=actor)
        elif name == "mitigate":
            incident_mitigate(incident_id=incident_id, actor=actor)
        elif name == "resolve":
            incident_resolve(
                incident_id=incident_id,
                actor=actor,
                resolution_reason=data["resolution_reason"],
                note=data["note"],
                follow_up_date=data["follow_up_date"],
            )
        elif name == "close":
            incident_close(incident_id=incident_id, actor=actor, reason=data["reason"])
        else:
            incident_reopen(incident_id=incident_id, actor=actor, reason=data["reason"])

    def rca_view(self, request: HttpRequest, object_id: str):
        """Save the RCA section of the change page through ``incident_rca_update`` (only the fields that
        changed; an emptied field is cleared). POST only."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = self._incident_for_change(request, object_id)
        form = RCAForm(request.POST, incident=incident)
        if not form.is_valid():
            _report_errors(self, request, {f"rca.{k}": v for k, v in form.errors.items()})
            return HttpResponseRedirect(_change_url(incident.pk))
        changed = form.changed_values(incident)
        if not changed:
            self.message_user(request, "No RCA field changed.", messages.INFO)
            return HttpResponseRedirect(_change_url(incident.pk))
        try:
            updated = rca.incident_rca_update(incident_id=incident.pk, values=changed, actor=request.user)
        except rca.RCAInvalid as exc:
            _report_errors(self, request, exc.fields)
        else:
            missing = rca.missing_fields(updated)
            if missing:
                self.message_user(request, f"RCA saved; still missing: {', '.join(missing)}.", messages.WARNING)
            else:
                self.message_user(request, "RCA saved: complete.", messages.SUCCESS)
        return HttpResponseRedirect(_change_url(incident.pk) + "#rca")

    # --- actions ---------------------------------------------------------------------------------
    @admin.action(description="Acknowledge selected incidents", permissions=["change"])
    def acknowledge_selected(self, request, queryset):
        """Acknowledge the open ones (each its own guarded transition; others are counted as skipped)."""
        selected = list(queryset.values_list("pk", "status")[: MAX_BULK_INCIDENTS + 1])
        if len(selected) > MAX_BULK_INCIDENTS:
            self.message_user(
                request, f"Select at most {MAX_BULK_INCIDENTS:,} incidents to acknowledge at once.", messages.ERROR
            )
            return None
        acknowledged, refused = 0, []
        for pk, status in selected:
            if status != IncidentStatus.OPEN:
                continue
            try:
                incident_acknowledge(incident_id=pk, actor=request.user)
                acknowledged += 1
            except IncidentTransitionError as exc:  # acknowledged by someone else meanwhile
                refused.append(str(exc))
        skipped = sum(1 for _, status in selected if status != IncidentStatus.OPEN)
        skipped_text = f"; {skipped} not open, skipped" if skipped else ""
        level = messages.SUCCESS if acknowledged else messages.WARNING
        self.message_user(request, f"Acknowledged {acknowledged} incident(s){skipped_text}.", level)
        for reason in refused:
            self.message_user(request, reason, messages.ERROR)
        return None

    @admin.action(description="Bulk resolve selected", permissions=["change"])
    def bulk_resolve_selected(self, request, queryset):
        """The intermediate page (like ``delete_selected``): the first POST lists the incidents with the RCA
        template each will be linked to and asks for a reason; the confirmation POST (``post=yes``)
        resolves them all or none through ``incidents_bulk_resolve``."""
        incidents = list(
            queryset.select_related("system", "rca_template").order_by("opened_at", "id")[: MAX_BULK_INCIDENTS + 1]
        )
        if len(incidents) > MAX_BULK_INCIDENTS:
            self.message_user(
                request,
                f"At most {MAX_BULK_INCIDENTS:,} incidents can be resolved at once; narrow the selection. "
                "Nothing was resolved.",
                messages.ERROR,
            )
            return None
        confirmed = request.POST.get("post") == "yes"
        form = BulkResolveForm(request.POST if confirmed else None)
        if confirmed and form.is_valid():
            try:
                outcome = incidents_bulk_resolve(
                    user=request.user,
                    ids=[incident.pk for incident in incidents],
                    resolution_reason=form.cleaned_data["resolution_reason"],
                    note=form.cleaned_data["note"],
                    close=form.cleaned_data["close"],
                )
            except BulkResolveError as exc:
                self._report_bulk_error(request, exc, incidents)
                return None
            closed = f" and closed {outcome.closed}" if form.cleaned_data["close"] else ""
            self.message_user(
                request,
                f"Resolved {outcome.resolved}{closed} incident(s): {form.cleaned_data['resolution_reason']}.",
                messages.SUCCESS,
            )
            return None
        templates = {template.incident_type: template for template in RCATemplate.objects.all()}
        rows = []
        for incident in incidents:
            linked = incident.rca_template
            template = linked or templates.get(incident.incident_type) or templates.get(IncidentType.OTHER)
            rows.append(
                {
                    "incident": incident,
                    "template": template,
                    "links_now": linked is None,
                    "rca_missing": rca.missing_fields(incident) if incident.severity in RCA_REQUIRED_SEVERITIES else [],
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Bulk resolve incidents",
            "opts": self.opts,
            "form": form,
            "action": "bulk_resolve_selected",
            "incidents": incidents,
            "rows": rows[:CONFIRMATION_LISTED_INCIDENTS],
            "unlisted": max(0, len(rows) - CONFIRMATION_LISTED_INCIDENTS),
            "not_open": sum(1 for incident in incidents if incident.status not in OPEN_INCIDENT_STATUSES),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/incidents/incident/bulk_resolve.html", context)

    def _report_bulk_error(self, request, exc: BulkResolveError, incidents: list[Incident]) -> None:
        for key, problems in exc.fields.items():
            for problem in problems:
                # "ids.3: <uuid> is already closed…" reads better with the incident's title.
                index = key.split(".", 1)[1] if key.startswith("ids.") else ""
                label = incidents[int(index)].title if index.isdigit() and int(index) < len(incidents) else key
                self.message_user(request, f"{label}: {problem}", messages.ERROR)
        self.message_user(request, "Nothing was resolved: fix the selection and try again.", messages.ERROR)


# --- RCA templates -------------------------------------------------------------------------------


def field_names_from_text(text: str) -> list[str]:
    """RCA field names typed one per line (or separated by commas), blanks dropped, order kept."""
    return [name.strip() for name in text.replace(",", "\n").splitlines() if name.strip()]


class RCATemplateForm(forms.ModelForm):
    """Required fields as one name per line; validated by the templates service's own rules."""

    required_fields = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "cols": 40}),
        help_text="One RCA field name per line (letters, digits, underscores), e.g. root_cause.",
    )

    class Meta:
        model = RCATemplate
        fields = ["name", "template_content", "required_fields"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["required_fields"] = "\n".join(self.instance.required_fields or [])

    def clean_required_fields(self) -> list[str]:
        try:
            return required_fields_clean(field_names_from_text(self.cleaned_data["required_fields"]))
        except RCATemplateInvalid as exc:
            raise forms.ValidationError([problem for problems in exc.fields.values() for problem in problems]) from exc

    def clean_template_content(self) -> str:
        content = self.cleaned_data["template_content"]
        if len(content) > CONTENT_MAX_LENGTH:
            raise forms.ValidationError(f"At most {CONTENT_MAX_LENGTH:,} characters.")
        return content


@admin.register(RCATemplate)
class RCATemplateAdmin(admin.ModelAdmin):
    """One template per incident type (seeded by migration). Admins and governance leads edit the
    guidance and the required fields through ``rca_template_update`` (validated and audited)."""

    form = RCATemplateForm
    list_display = ["name", "incident_type", "required", "updated_at"]
    search_fields = ["name", "template_content"]
    ordering = ["incident_type"]
    readonly_fields = ["incident_type", "created_at", "updated_at"]
    fields = ["incident_type", "name", "template_content", "required_fields", "created_at", "updated_at"]

    @admin.display(description="required fields")
    def required(self, obj: RCATemplate) -> str:
        return ", ".join(obj.required_fields or []) or "—"

    def has_add_permission(self, request):
        return False  # one per incident type, created by migration

    def has_delete_permission(self, request, obj=None):
        return False  # incidents point at their template

    def has_change_permission(self, request, obj=None):
        user = request.user
        may_edit = getattr(user, "is_authenticated", False) and user.has_role(Role.ADMIN, Role.GOVERNANCE_LEAD)
        return may_edit and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        # The service writes only what differs from the row and audits it; the form checked its rules.
        current = RCATemplate.objects.get(pk=obj.pk)
        data = {name: form.cleaned_data[name] for name in EDITABLE_FIELDS}
        saved = rca_template_update(template=current, actor=request.user, data=data)
        for field in RCATemplate._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))


# --- Follow-ups, notifications, links ------------------------------------------------------------


@admin.register(FollowUp)
class FollowUpAdmin(TeamScopedAdmin):
    """Work promised when incidents were resolved. Created through the API or the resolve flow; here
    they are listed by due date and marked done (``follow_up_complete``, audited)."""

    list_display = ["title", "incident", "owner", "due", "status", "completed_at"]
    list_filter = ["status", FollowUpDueListFilter]
    search_fields = ["title", "incident__title", "owner__username"]
    list_select_related = ["incident", "owner"]
    ordering = ["status", "due_date"]
    actions = ["mark_done"]
    readonly_fields = [
        "incident",
        "title",
        "owner",
        "due_date",
        "status",
        "completed_at",
        "notified_at",
        "escalated_at",
        "created_at",
        "updated_at",
    ]
    fields = readonly_fields

    @admin.display(description="due", ordering="due_date")
    def due(self, obj: FollowUp) -> str:
        due = formats.date_format(obj.due_date, "M j, Y")
        if obj.status == FollowUpStatus.OPEN and obj.due_date < timezone.localdate():
            return format_html('{} <strong class="follow-up-overdue" style="color: #cf222e;">overdue</strong>', due)
        return due

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Mark selected follow-ups done", permissions=["change"])
    def mark_done(self, request, queryset):
        """Complete the open ones (each its own guarded update, timeline and audit entry)."""
        open_ids = list(queryset.filter(status=FollowUpStatus.OPEN).values_list("pk", flat=True)[:MAX_BULK_INCIDENTS])
        skipped = queryset.exclude(status=FollowUpStatus.OPEN).count()
        done, refused = 0, []
        for follow_up_id in open_ids:
            try:
                follow_up_complete(follow_up_id=follow_up_id, actor=request.user)
                done += 1
            except FollowUpNotOpen as exc:  # completed or cancelled by someone else meanwhile
                refused.append(str(exc))
        skipped_text = f"; {skipped} already done or cancelled, skipped" if skipped else ""
        self.message_user(
            request, f"Marked {done} follow-up(s) done{skipped_text}.", messages.SUCCESS if done else messages.WARNING
        )
        for reason in refused:
            self.message_user(request, reason, messages.ERROR)


@admin.register(Notification)
class NotificationAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    """The notification outbox: every message sent (or refused) about an incident, and why."""

    list_display = ["created_at", "incident", "kind", "channel", "target", "status", "attempts", "sent_at"]
    list_filter = ["channel", "status", "kind"]
    search_fields = ["target", "subject", "incident__title"]
    list_select_related = ["incident"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    show_full_result_count = False
    fields = [
        "incident",
        "kind",
        "channel",
        "target",
        "subject",
        "payload",
        "status",
        "attempts",
        "last_error",
        "sent_at",
        "dedupe_key",
        "created_at",
    ]


@admin.register(IncidentLink)
class IncidentLinkAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    """Knowledge-graph edges, created automatically when incidents open."""

    list_display = ["incident", "relation", "target_type", "target_id", "label", "created_at"]
    list_filter = ["target_type", "relation"]
    search_fields = ["label", "incident__title", "target_id"]
    list_select_related = ["incident"]
    ordering = ["-created_at"]
    fields = ["incident", "relation", "target_type", "target_id", "label", "data", "created_at"]
