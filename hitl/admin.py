"""Admin of the review queue: triage (bulk decisions with a rationale, AI suggestions, "Clear Low
Risk"), the backlog-health panel, auto-approval policies, spot checks and the assist model.

Every write goes through the same services as the API (``hitl.services.triage``, ``…policies``,
``…auto_approval``, ``…automation``, ``…assist``), so the admin inherits their locks, all-or-nothing
guarantees and audit entries; nothing here changes an item's status by itself. Services written
alongside this module are imported where they are used, so the queue's own pages never depend on an
optional engine being importable.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from governance.admin_base import ReadOnlyAdmin, TeamScopedAdmin, severity_badge
from governance.admin_base import SlaBreachedListFilter as BaseSlaBreachedListFilter
from governance.choices import Role, Severity
from hitl.models import (
    AssistModel,
    AssistResult,
    AutoApprovalPolicy,
    Decision,
    ReviewDecision,
    ReviewItem,
    ReviewStatus,
    ReviewType,
    SpotCheck,
    SpotCheckStatus,
)
from hitl.selectors import NO_SUGGESTION, BacklogHealth, assignable_reviewers, backlog_health, pending_past_due_q
from hitl.services.decisions import RATIONALE_MAX_LENGTH, ReviewItemMissing, ReviewNotPending
from hitl.services.queue import review_item_assign
from hitl.services.triage import (
    MAX_BULK_ITEMS,
    SUGGESTION_SEVERITIES,
    SuggestionGuard,
    TriageError,
    low_risk_items,
    review_items_bulk_decide,
    review_items_clear_low_risk,
)

CONFIRMATION_LISTED_ITEMS = 50  # the confirmation page names this many; the rest are counted
SPOT_CHECKS_PER_PAGE = 50


def _is_admin_role(request: HttpRequest) -> bool:
    return getattr(request.user, "is_admin_role", False)  # the login page asks with an anonymous user


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _pretty_json(value: Any) -> str:
    return format_html('<pre style="white-space: pre-wrap; margin: 0;">{}</pre>', json.dumps(value, indent=2))


# --- List filters --------------------------------------------------------------------------------


class SlaBreachedListFilter(BaseSlaBreachedListFilter):
    """Pending items past their SLA due time (a decided item is no longer waiting on anyone)."""

    breached_label = "Breached (pending, past due)"
    breached_q = staticmethod(pending_past_due_q)


class SuggestionListFilter(admin.SimpleListFilter):
    """The latest auto-assist suggestion, or ``none`` for items never assisted."""

    title = "AI suggestion"
    parameter_name = "suggestion"

    def lookups(self, request, model_admin):
        return [*ReviewDecision.choices, (NO_SUGGESTION, "None yet")]

    def queryset(self, request, queryset):
        if self.value() == NO_SUGGESTION:
            return queryset.filter(suggested_decision="")
        if self.value() in ReviewDecision.values:
            return queryset.filter(suggested_decision=self.value())
        return queryset


class SelfApprovedListFilter(admin.SimpleListFilter):
    """Items approved by the person who requested them (each reported as a ``policy_circumvention`` bypass)."""

    title = "self-approved"
    parameter_name = "self_approved"

    def lookups(self, request, model_admin):
        return [("yes", "Approved by their requester")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(
                status=ReviewStatus.APPROVED, requested_by__isnull=False, decided_by=F("requested_by")
            )
        return queryset


# --- Backlog-health and auto-approval panels -----------------------------------------------------


@dataclass(frozen=True)
class BacklogPanel:
    """What the changelist's backlog panel shows: the health numbers and a 24-bar chart, laid out here
    so the template only draws rectangles."""

    health: BacklogHealth
    oldest_age: str
    bars: list[dict[str, Any]]
    peak: int
    chart_width: int
    chart_height: int


CHART_SLOT = 20  # px per hour: an inflow and an outflow bar side by side
CHART_HEIGHT = 60


def backlog_panel(*, queryset: QuerySet[ReviewItem]) -> BacklogPanel:
    """Backlog health of ``queryset`` (already scoped to the user) with the hourly bars of the last 24 h."""
    health = backlog_health(queryset=queryset)
    peak = max([1, *(max(hour["inflow"], hour["outflow"]) for hour in health.hourly)])
    bars = []
    for index, hour in enumerate(health.hourly):
        inflow_height = round(CHART_HEIGHT * hour["inflow"] / peak)
        outflow_height = round(CHART_HEIGHT * hour["outflow"] / peak)
        bars.append(
            {
                "hour": hour["hour"],
                "inflow": hour["inflow"],
                "outflow": hour["outflow"],
                "inflow_x": index * CHART_SLOT + 2,
                "outflow_x": index * CHART_SLOT + 10,
                "inflow_y": CHART_HEIGHT - inflow_height,
                "outflow_y": CHART_HEIGHT - outflow_height,
                "inflow_height": inflow_height,
                "outflow_height": outflow_height,
            }
        )
    oldest = timesince(health.oldest_pending_at, now=health.as_of) if health.oldest_pending_at else "—"
    return BacklogPanel(
        health=health,
        oldest_age=oldest,
        bars=bars,
        peak=peak,
        chart_width=24 * CHART_SLOT,
        chart_height=CHART_HEIGHT,
    )


def auto_approval_panel() -> list[dict[str, Any]]:
    """Every auto-approval policy with its spot-check agreement (one query each for policies and
    agreement), for the admin-only toggle panel."""
    from hitl.services.auto_approval import policy_agreement

    policies = list(AutoApprovalPolicy.objects.select_related("team").order_by("policy_name"))
    agreement = policy_agreement(policy_ids=[policy.pk for policy in policies]) if policies else {}
    return [{"policy": policy, "agreement": agreement.get(policy.pk)} for policy in policies]


def describe_agreement(agreement: Any) -> str:
    """``"96% of 25 (judged)"``, or why there is no rate yet."""
    if agreement is None or agreement.rate is None:
        return "no spot checks yet"
    judged = "" if agreement.judged else f", below the {agreement.min_spot_checks} needed to judge"
    return f"{agreement.rate:.0%} of {agreement.checked}{judged}"


# --- Forms of the intermediate pages -------------------------------------------------------------


class RationaleForm(forms.Form):
    rationale = forms.CharField(
        max_length=RATIONALE_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Why: recorded on every item and in the audit log.",
        error_messages={"required": "A rationale is required: say why these items get this decision."},
    )


class ClearLowRiskForm(forms.Form):
    rationale = forms.CharField(
        required=False,
        max_length=RATIONALE_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Optional; blank records the rule that selected the items.",
    )


# --- Review items --------------------------------------------------------------------------------


class DecisionHistoryInline(admin.TabularInline):
    """Every decision on the item, newest first, including what shadow-mode policies would have done."""

    model = Decision
    verbose_name = "decision"
    verbose_name_plural = "decision history"
    fields = ["decided_at", "decision", "source", "shadow", "actor", "policy", "confidence", "risk_score", "rationale"]
    readonly_fields = fields
    ordering = ["-decided_at"]
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor", "policy")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


TRIAGE_ACTIONS = {
    "approve_selected": ReviewDecision.APPROVE,
    "reject_selected": ReviewDecision.REJECT,
    "escalate_selected": ReviewDecision.ESCALATE,
}


@admin.register(ReviewItem)
class ReviewItemAdmin(TeamScopedAdmin):
    """The triage queue, most urgent SLA first. Items are created by the engines and leave ``pending``
    only through the decision services; the change page assigns the assignee and nothing else."""

    list_display = [
        "title",
        "system",
        "severity_badge",
        "status",
        "sla_due",
        "suggestion",
        "confidence",
        "risk",
        "decision_source",
        "assignee",
        "requested_by",
    ]
    list_filter = [
        "severity",
        SlaBreachedListFilter,
        SuggestionListFilter,
        "system__team",
        "status",
        "review_type",
        "decision_source",
        ("requested_by", admin.RelatedOnlyFieldListFilter),
        SelfApprovedListFilter,
    ]
    search_fields = ["title", "system__name", "^fingerprint", "rule", "requested_by__username"]
    search_help_text = "Part of a title, system name, rule or requester's username, or the start of a fingerprint."
    list_select_related = ["system", "assignee", "requested_by"]
    ordering = ["sla_due_at"]
    date_hierarchy = "created_at"
    actions = [
        "approve_selected",
        "reject_selected",
        "escalate_selected",
        "apply_suggestions_selected",
        "assist_selected",
    ]
    inlines = [DecisionHistoryInline]
    readonly_fields = [
        "title",
        "review_type",
        "system",
        "severity",
        "status",
        "sla_due_at",
        "requested_by",
        "source_alert",
        "source_incident",
        "fingerprint",
        "rule",
        "context_json",
        "decision",
        "decision_source",
        "decided_by",
        "decided_by_policy",
        "decided_at",
        "rationale",
        "escalated_incident",
        "suggested_decision",
        "assist_confidence",
        "risk_score",
        "assisted_at",
        "latest_assist",
        "created_at",
        "updated_at",
    ]
    fieldsets = (
        (None, {"fields": ("title", "review_type", "system", "severity", "status", "sla_due_at", "assignee")}),
        (
            "Source",
            {"fields": ("requested_by", "source_alert", "source_incident", "fingerprint", "rule", "context_json")},
        ),
        (
            "Decision",
            {
                "fields": (
                    "decision",
                    "decision_source",
                    "decided_by",
                    "decided_by_policy",
                    "decided_at",
                    "rationale",
                    "escalated_incident",
                )
            },
        ),
        (
            "Auto-assist",
            {"fields": ("suggested_decision", "assist_confidence", "risk_score", "assisted_at", "latest_assist")},
        ),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    # --- columns ---------------------------------------------------------------------------------
    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj: ReviewItem) -> str:
        return severity_badge(obj.severity)

    @admin.display(description="SLA due", ordering="sla_due_at")
    def sla_due(self, obj: ReviewItem) -> str:
        due = formats.date_format(timezone.localtime(obj.sla_due_at), "M j, H:i")
        if obj.is_pending and obj.sla_due_at < timezone.now():
            return format_html('{} <strong class="sla-overdue" style="color: #cf222e;">overdue</strong>', due)
        return due

    @admin.display(description="suggestion", ordering="suggested_decision")
    def suggestion(self, obj: ReviewItem) -> str:
        return obj.get_suggested_decision_display() or "—"

    @admin.display(description="confidence", ordering="assist_confidence")
    def confidence(self, obj: ReviewItem) -> str:
        return _percent(obj.assist_confidence)

    @admin.display(description="risk", ordering="risk_score")
    def risk(self, obj: ReviewItem) -> str:
        return "—" if obj.risk_score is None else f"{obj.risk_score:.0f}"

    # --- change page -----------------------------------------------------------------------------
    @admin.display(description="context")
    def context_json(self, obj: ReviewItem) -> str:
        return _pretty_json(obj.context)

    @admin.display(description="latest suggestion")
    def latest_assist(self, obj: ReviewItem) -> str:
        result = obj.assist_results.order_by("-created_at").first()
        if result is None:
            return "Not assisted yet."
        factors = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td></tr>",
            ((name, json.dumps(value)) for name, value in sorted((result.factors or {}).items())),
        )
        evidence = format_html_join(", ", "<code>{}</code>", ((ref,) for ref in result.evidence_refs or []))
        sla = result.sla_recommendation or {}
        fallback = format_html("<p><strong>Fallback:</strong> {}</p>", result.fallback_reason)
        return format_html(
            '<div id="latest-assist">'
            "<p><strong>{}</strong> with confidence {}, risk {} · {} {} · {}</p>"
            "<p>{}</p><p><strong>Reasoning:</strong> {}</p>"
            '<table class="assist-factors"><thead><tr><th>factor</th><th>value and contribution</th></tr>'
            "</thead><tbody>{}</tbody></table>"
            "<p><strong>Evidence:</strong> {}</p>"
            "<p><strong>SLA recommendation:</strong> {} h, due {} — {}</p>{}</div>",
            result.get_suggested_decision_display(),
            _percent(result.confidence),
            f"{result.risk_score:.0f}",
            result.provider,
            result.model_version,
            formats.localize(timezone.localtime(result.created_at)),
            result.summary,
            result.reasoning,
            factors or format_html("<tr><td colspan=2>{}</td></tr>", "no factors recorded"),
            evidence or "none",
            sla.get("hours", "—"),
            sla.get("due_at", "—"),
            sla.get("reason", ""),
            fallback if result.fallback_reason else "",
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if obj is not None and "assignee" in form.base_fields:
            field = form.base_fields["assignee"]
            field.queryset = assignable_reviewers(item=obj)
            # Picking a person is all this page does: no add/change/delete-user shortcuts beside the list.
            field.widget.can_add_related = field.widget.can_change_related = False
            field.widget.can_delete_related = field.widget.can_view_related = False
        return form

    def save_model(self, request, obj, form, change):
        # Only the assignee is editable; the service writes just that column (never a decision taken
        # while the form was open) and audits the change.
        review_item_assign(item_id=obj.pk, assignee=obj.assignee, actor=request.user)

    def has_add_permission(self, request):
        return False  # the oversight engine and the other intake services create items

    def has_delete_permission(self, request, obj=None):
        return False  # a decided item is evidence; a pending one is decided, never deleted

    # --- changelist: panels and buttons ----------------------------------------------------------
    def changelist_view(self, request, extra_context=None):
        extra_context = dict(extra_context or {})
        if request.method == "GET":  # a POST runs an action and redirects; no panel is drawn
            extra_context["backlog"] = backlog_panel(queryset=self.get_queryset(request))
            extra_context["can_triage"] = self.has_change_permission(request)
            if _is_admin_role(request):
                extra_context["auto_approval_policies"] = [
                    {**row, "agreement_text": describe_agreement(row["agreement"])} for row in auto_approval_panel()
                ]
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("assist/", view(self.assist_view), name=f"{prefix}_assist"),
            path("clear-low-risk/", view(self.clear_low_risk_view), name=f"{prefix}_clear_low_risk"),
            path(
                "auto-approval/<uuid:policy_id>/toggle/",
                view(self.policy_toggle_view),
                name=f"{prefix}_policy_toggle",
            ),
            *super().get_urls(),
        ]

    def _changelist_url(self) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")

    def assist_view(self, request: HttpRequest):
        """ "Process with AI Assist": suggest for the user's pending, never-assisted items (oldest SLA
        first, up to 1,000), then let the enabled and shadow policies act on them."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        if _is_admin_role(request):
            item_ids = None  # every team: the service picks the oldest unassisted items itself
        else:
            item_ids = list(
                self.get_queryset(request)
                .filter(status=ReviewStatus.PENDING, assisted_at__isnull=True)
                .order_by("sla_due_at", "id")
                .values_list("pk", flat=True)[:MAX_BULK_ITEMS]
            )
            if not item_ids:
                self.message_user(request, "No pending item is waiting for an AI suggestion.", messages.INFO)
                return HttpResponseRedirect(self._changelist_url())
        self._run_assist(request, item_ids)
        return HttpResponseRedirect(self._changelist_url())

    def _run_assist(self, request: HttpRequest, item_ids: list | None) -> None:
        from hitl.services.automation import review_items_assist_and_apply

        outcome = review_items_assist_and_apply(item_ids=item_ids, actor=request.user)
        assist, approval = outcome.assist, outcome.approval
        version = f", model {assist.model_version}" if assist.model_version else ""
        fallbacks = f", {assist.fallbacks} fell back to the default provider" if assist.fallbacks else ""
        self.message_user(
            request,
            f"AI Assist suggested a decision for {assist.assisted} item(s) (provider {assist.provider}{version}"
            f"{fallbacks}).",
            messages.SUCCESS,
        )
        by_policy = ", ".join(f"{name}: {count}" for name, count in sorted(approval.by_policy.items()))
        self.message_user(
            request,
            f"Auto-approval policies decided {approval.decided} item(s)"
            f"{f' ({by_policy})' if by_policy else ''}; shadow policies proposed {approval.shadow}; "
            f"{approval.spot_checks} sent to a human spot check.",
            messages.INFO,
        )

    def clear_low_risk_view(self, request: HttpRequest):
        """ "Clear Low Risk": GET shows how many items qualify and why; POST approves them."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = ClearLowRiskForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            outcome = review_items_clear_low_risk(user=request.user, rationale=form.cleaned_data["rationale"])
            level = messages.SUCCESS if outcome.decided else messages.INFO
            self.message_user(request, f"Clear Low Risk approved {outcome.decided} low-risk item(s).", level)
            return HttpResponseRedirect(self._changelist_url())
        guard = SuggestionGuard.from_config()
        selected = low_risk_items(user=request.user, guard=guard).select_related("system").order_by("sla_due_at")
        context = {
            **self.admin_site.each_context(request),
            "title": "Clear Low Risk",
            "opts": self.opts,
            "form": form,
            "guard": guard,
            "count": selected.count(),
            "listed": selected[:CONFIRMATION_LISTED_ITEMS],
        }
        return TemplateResponse(request, "admin/hitl/reviewitem/clear_low_risk.html", context)

    def policy_toggle_view(self, request: HttpRequest, policy_id):
        """Enable or disable one auto-approval policy from the changelist panel (admins only)."""
        from hitl.services.policies import PolicyPermissionDenied, auto_approval_policy_set_enabled

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not _is_admin_role(request):
            raise PermissionDenied
        policy = get_object_or_404(AutoApprovalPolicy, pk=policy_id)
        enabled = request.POST.get("enabled") == "1"
        try:
            changed = auto_approval_policy_set_enabled(policy=policy, enabled=enabled, actor=request.user)
        except PolicyPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        state = "enabled" if enabled else "disabled"
        if changed:
            self.message_user(request, f"Auto-approval policy {policy.policy_name!r} {state}.", messages.SUCCESS)
        else:
            self.message_user(request, f"Auto-approval policy {policy.policy_name!r} was already {state}.")
        return HttpResponseRedirect(self._changelist_url())

    # --- actions ---------------------------------------------------------------------------------
    @admin.action(description="Approve selected review items", permissions=["change"])
    def approve_selected(self, request, queryset):
        return self._decide_with_rationale(request, queryset, action="approve_selected")

    @admin.action(description="Reject selected review items", permissions=["change"])
    def reject_selected(self, request, queryset):
        return self._decide_with_rationale(request, queryset, action="reject_selected")

    @admin.action(description="Escalate selected review items (open or join an incident)", permissions=["change"])
    def escalate_selected(self, request, queryset):
        return self._decide_with_rationale(request, queryset, action="escalate_selected")

    @admin.action(description="Apply AI suggestions to selected review items", permissions=["change"])
    def apply_suggestions_selected(self, request, queryset):
        return self._decide_with_rationale(request, queryset, action="apply_suggestions_selected")

    @admin.action(description="Process selected with AI Assist", permissions=["change"])
    def assist_selected(self, request, queryset):
        selected = list(queryset.values_list("pk", "status")[: MAX_BULK_ITEMS + 1])
        if len(selected) > MAX_BULK_ITEMS:
            self.message_user(
                request, f"Select at most {MAX_BULK_ITEMS:,} items for AI Assist at once.", messages.ERROR
            )
            return None
        pending = [pk for pk, status in selected if status == ReviewStatus.PENDING]
        if len(pending) < len(selected):
            self.message_user(
                request, f"{len(selected) - len(pending)} decided item(s) skipped: only pending items are assisted."
            )
        if pending:
            self._run_assist(request, pending)
        return None

    def _decide_with_rationale(self, request, queryset, *, action: str):
        """The intermediate page of a triage action (like ``delete_selected``): the first POST lists
        the items and asks for a rationale; the confirmation POST (``post=yes``) decides them all or
        none through ``review_items_bulk_decide``."""
        apply_suggestions = action == "apply_suggestions_selected"
        decision = None if apply_suggestions else TRIAGE_ACTIONS[action]
        items = list(queryset.select_related("system").order_by("sla_due_at", "id")[: MAX_BULK_ITEMS + 1])
        if len(items) > MAX_BULK_ITEMS:
            self.message_user(
                request,
                f"At most {MAX_BULK_ITEMS:,} items can be decided at once; narrow the selection. Nothing was decided.",
                messages.ERROR,
            )
            return None
        confirmed = request.POST.get("post") == "yes"
        form = RationaleForm(request.POST if confirmed else None)
        if confirmed and form.is_valid():
            ids = [item.pk for item in items]
            try:
                outcome = review_items_bulk_decide(
                    user=request.user,
                    ids=ids,
                    decision=decision,
                    rationale=form.cleaned_data["rationale"],
                    apply_suggestions=apply_suggestions,
                )
            except TriageError as exc:
                if set(exc.fields) == {"rationale"}:
                    form.add_error("rationale", exc.fields["rationale"])
                else:
                    self._report_triage_error(request, exc, items)
                    return None
            except (ReviewNotPending, ReviewItemMissing) as exc:
                # Someone decided one of them between the check and the lock: still all or nothing.
                self.message_user(request, f"{exc}. Nothing was decided.", messages.ERROR)
                return None
            else:
                self._report_decided(request, outcome)
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Apply AI suggestions" if apply_suggestions else f"{decision.label} review items",
            "opts": self.opts,
            "form": form,
            "action": action,
            "decision": decision,
            "apply_suggestions": apply_suggestions,
            "items": items,
            "listed": items[:CONFIRMATION_LISTED_ITEMS],
            "unlisted": max(0, len(items) - CONFIRMATION_LISTED_ITEMS),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/hitl/reviewitem/decide_confirmation.html", context)

    def _report_triage_error(self, request, exc: TriageError, items: list[ReviewItem]) -> None:
        titles = {str(item.pk): item.title for item in items}
        for key, problems in exc.fields.items():
            for problem in problems:
                # "ids.3: <uuid> is already approved…" reads better with the item's title.
                item_id = problem.split(" ", 1)[0]
                label = titles.get(item_id, key)
                self.message_user(request, f"{label}: {problem}", messages.ERROR)
        self.message_user(request, "Nothing was decided: fix the selection and try again.", messages.ERROR)

    def _report_decided(self, request, outcome) -> None:
        counts = ", ".join(
            f"{count} {ReviewDecision(decision).label.lower()}d"
            for decision, count in sorted(outcome.by_decision.items())
        )
        incidents = {incident.pk for incident in outcome.incidents.values()}
        into = f" into {len(incidents)} incident(s)" if incidents else ""
        self.message_user(request, f"Decided {outcome.decided} review item(s): {counts}{into}.", messages.SUCCESS)


# --- Auto-approval policies ----------------------------------------------------------------------


class AutoApprovalPolicyForm(forms.ModelForm):
    """Filters as checkboxes; validation is the policies service's (the same rules and messages as the
    API), attached to the fields it names."""

    severity_filter = forms.MultipleChoiceField(
        # Only what a policy may ever decide is offered: high and critical items always stay for a human.
        choices=[(severity, Severity(severity).label) for severity in SUGGESTION_SEVERITIES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Empty: medium, low and info. High and critical items always stay for a human.",
    )
    review_type_filter = forms.MultipleChoiceField(
        choices=ReviewType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Empty: any review type.",
    )

    class Meta:
        model = AutoApprovalPolicy
        fields = [
            "policy_name",
            "team",
            "severity_filter",
            "review_type_filter",
            "max_risk_score",
            "auto_action",
            "enabled",
            "shadow_mode",
            "description",
        ]

    def clean(self):
        from hitl.services.policies import PolicyValidationError, auto_approval_policy_validate

        cleaned = super().clean()
        if self.errors:
            return cleaned
        existing = self.instance if self.instance.pk else None
        try:
            auto_approval_policy_validate(
                _policy_data(self, self.policy_fields()), partial=existing is not None, instance=existing
            )
        except PolicyValidationError as exc:
            for field, problems in exc.fields.items():
                self.add_error(field if field in self.fields else None, problems)
        return cleaned

    def policy_fields(self) -> list[str]:
        return [name for name in self.Meta.fields if name in self.fields]


def _policy_data(form: forms.ModelForm, names) -> dict[str, Any]:
    return {name: form.cleaned_data[name] for name in names if name in form.cleaned_data}


_POLICY_AGREEMENT: ContextVar[dict] = ContextVar("policy_agreement", default={})  # noqa: B039


@admin.register(AutoApprovalPolicy)
class AutoApprovalPolicyAdmin(TeamScopedAdmin):
    """Policies are created and changed through ``hitl.services.policies`` (validated and audited);
    only admins enable, disable or delete one."""

    form = AutoApprovalPolicyForm
    list_display = [
        "policy_name",
        "team",
        "severities",
        "review_types",
        "max_risk_score",
        "auto_action",
        "policy_mode",
        "agreement",
    ]
    list_filter = ["enabled", "shadow_mode", "auto_action", "team"]
    search_fields = ["policy_name", "description"]
    list_select_related = ["team"]
    actions = ["enable_selected", "disable_selected"]
    readonly_fields = ["requires_audit_log", "disabled_reason", "disabled_at", "created_by", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        from hitl.services.policies import MATCHING_FIELDS

        readonly = list(super().get_readonly_fields(request, obj))
        if not _is_admin_role(request):
            readonly.append("enabled")  # enabling is an admin's decision (the service refuses others)
            if obj is not None and obj.enabled:
                # What an enabled policy decides is an admin's call too: the service refuses the change.
                readonly.extend(name for name in MATCHING_FIELDS if name not in readonly)
        return readonly

    def changelist_view(self, request, extra_context=None):
        from hitl.services.auto_approval import policy_agreement

        # list_display callables get no request: compute the agreement of the visible policies once per
        # page and pass it by context variable (the admin instance is shared by concurrent requests).
        ids = list(self.get_queryset(request).values_list("pk", flat=True)) if request.method == "GET" else []
        token = _POLICY_AGREEMENT.set(policy_agreement(policy_ids=ids) if ids else {})
        try:
            response = super().changelist_view(request, extra_context)
            # A TemplateResponse renders after this returns, when the variable is reset: render it now.
            return response.render() if hasattr(response, "render") else response
        finally:
            _POLICY_AGREEMENT.reset(token)

    @admin.display(description="severities")
    def severities(self, obj: AutoApprovalPolicy) -> str:
        return ", ".join(obj.severity_filter) or "any"

    @admin.display(description="review types")
    def review_types(self, obj: AutoApprovalPolicy) -> str:
        return ", ".join(obj.review_type_filter) or "any"

    @admin.display(description="mode")
    def policy_mode(self, obj: AutoApprovalPolicy) -> str:
        return obj.mode

    @admin.display(description="spot-check agreement")
    def agreement(self, obj: AutoApprovalPolicy) -> str:
        return describe_agreement(_POLICY_AGREEMENT.get().get(obj.pk))

    # --- writes through the service --------------------------------------------------------------
    def save_model(self, request, obj, form, change):
        from hitl.services.policies import (
            PolicyPermissionDenied,
            auto_approval_policy_create,
            auto_approval_policy_update,
        )

        try:
            if change:
                current = AutoApprovalPolicy.objects.get(pk=obj.pk)
                saved = auto_approval_policy_update(
                    policy=current, actor=request.user, data=_policy_data(form, form.changed_data)
                )
            else:
                saved = auto_approval_policy_create(actor=request.user, data=_policy_data(form, form.policy_fields()))
        except PolicyPermissionDenied as exc:
            # The form hides what a non-admin may not change; this is the race (enabled meanwhile).
            raise PermissionDenied(str(exc)) from exc
        # The admin logs and redirects with ``obj``: make it the row the service wrote.
        for field in AutoApprovalPolicy._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False
        obj._state.db = saved._state.db

    def delete_model(self, request, obj):
        from hitl.services.policies import auto_approval_policy_delete

        auto_approval_policy_delete(policy=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        from hitl.services.policies import auto_approval_policy_delete

        with transaction.atomic():
            for policy in queryset:
                auto_approval_policy_delete(policy=policy, actor=request.user)

    # --- permissions -----------------------------------------------------------------------------
    def has_delete_permission(self, request, obj=None):
        return _is_admin_role(request) and super().has_delete_permission(request, obj)

    def has_toggle_permission(self, request):
        return _is_admin_role(request)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        from hitl.services.policies import auto_approval_policy_set_enabled

        changed = 0
        with transaction.atomic():
            for policy in queryset:
                changed += auto_approval_policy_set_enabled(policy=policy, enabled=enabled, actor=request.user)
        self.message_user(request, f"{changed} auto-approval polic(ies) {'enabled' if enabled else 'disabled'}.")

    @admin.action(description="Enable selected policies", permissions=["toggle"])
    def enable_selected(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected policies", permissions=["toggle"])
    def disable_selected(self, request, queryset):
        self._set_enabled(request, queryset, False)


# --- Spot checks ---------------------------------------------------------------------------------


@admin.register(SpotCheck)
class SpotCheckAdmin(TeamScopedAdmin):
    """Automatically decided items sampled for a human second look. The verdict is the reviewer's own
    decision, asked for without showing the policy's (a blind second look resists automation bias)."""

    list_display = ["item", "policy", "status", "policy_decision", "human_decision", "reviewer", "checked_at"]
    list_filter = ["status", "policy"]
    search_fields = ["item__title", "policy__policy_name"]
    list_select_related = ["item", "policy", "reviewer"]
    ordering = ["status", "-created_at"]
    actions = ["record_verdicts"]
    readonly_fields = [
        "item",
        "policy",
        "policy_decision",
        "status",
        "human_decision",
        "reviewer",
        "rationale",
        "checked_at",
        "escalated_incident",
        "created_at",
    ]
    fields = readonly_fields

    @admin.display(description="policy's decision")
    def policy_decision(self, obj: SpotCheck) -> str:
        if obj.status == SpotCheckStatus.PENDING:
            return "shown after your verdict"
        return obj.get_auto_decision_display()

    def has_add_permission(self, request):
        return False  # the automation-bias monitor samples items

    def has_delete_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Record my verdict on selected spot checks", permissions=["change"])
    def record_verdicts(self, request, queryset):
        """Intermediate page: one decision per pending spot check and a rationale, then
        ``spot_check_record`` for each (each audited; agreement re-checked per policy)."""
        from hitl.services.auto_approval import (
            SpotCheckInvalid,
            SpotCheckMissing,
            SpotCheckNotPending,
            SpotCheckPermissionDenied,
            spot_check_record,
        )

        checks = list(queryset.select_related("item", "item__system", "policy").order_by("created_at"))
        pending = [check for check in checks if check.status == SpotCheckStatus.PENDING]
        if not pending:
            self.message_user(request, "None of the selected spot checks is pending.", messages.WARNING)
            return None
        if len(pending) > SPOT_CHECKS_PER_PAGE:
            self.message_user(
                request, f"Select at most {SPOT_CHECKS_PER_PAGE} pending spot checks at once.", messages.ERROR
            )
            return None
        confirmed = request.POST.get("post") == "yes"
        form = RationaleForm(request.POST if confirmed else None)
        choices = {check.pk: request.POST.get(f"decision_{check.pk}", "") for check in pending}
        missing = [check for check in pending if choices[check.pk] not in ReviewDecision.values]
        if confirmed and form.is_valid() and not missing:
            recorded, refused = [], []
            for check in pending:
                try:
                    spot_check_record(
                        spot_check_id=check.pk,
                        decision=choices[check.pk],
                        rationale=form.cleaned_data["rationale"],
                        reviewer=request.user,
                    )
                    recorded.append(check)
                except (SpotCheckNotPending, SpotCheckMissing, SpotCheckInvalid, SpotCheckPermissionDenied) as exc:
                    # Each verdict is its own transaction: one refused never undoes the others.
                    refused.append(f"{check.item}: {exc}")
            if recorded:
                self.message_user(request, f"Recorded {len(recorded)} spot-check verdict(s).", messages.SUCCESS)
            for reason in refused:
                self.message_user(request, reason, messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Spot check: your own decision",
            "opts": self.opts,
            "form": form,
            "checks": [{"check": check, "chosen": choices[check.pk]} for check in pending],
            "skipped": len(checks) - len(pending),
            "decisions": ReviewDecision.choices,
            "decision_missing": confirmed and bool(missing),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/hitl/spotcheck/verdict.html", context)


# --- Read-only records ---------------------------------------------------------------------------


@admin.register(AssistResult)
class AssistResultAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    list_display = ["item", "suggested_decision", "confidence_percent", "risk_score", "provider", "model_version"]
    list_filter = ["provider", "suggested_decision"]
    search_fields = ["item__title", "summary"]
    list_select_related = ["item"]
    date_hierarchy = "created_at"
    show_full_result_count = False  # one row per suggestion ever made: grows fast
    fieldsets = (
        (None, {"fields": ("item", "summary", "suggested_decision", "confidence", "risk_score")}),
        ("Why", {"fields": ("reasoning", "factors", "evidence_refs", "sla_recommendation")}),
        ("Provider", {"fields": ("provider", "model_version", "fallback_reason", "created_at")}),
    )

    @admin.display(description="confidence", ordering="confidence")
    def confidence_percent(self, obj: AssistResult) -> str:
        return _percent(obj.confidence)


@admin.register(Decision)
class DecisionAdmin(TeamScopedAdmin, ReadOnlyAdmin):
    list_display = ["decided_at", "item", "decision", "source", "shadow", "policy", "actor", "confidence", "risk_score"]
    list_filter = ["source", "shadow", "decision", "policy"]
    search_fields = ["item__title", "rationale", "actor__username"]
    list_select_related = ["item", "policy", "actor"]
    date_hierarchy = "decided_at"
    ordering = ["-decided_at"]
    show_full_result_count = False


@admin.register(AssistModel)
class AssistModelAdmin(ReadOnlyAdmin):
    """Trained models of past human decisions (platform-wide: admins and governance leads)."""

    list_display = ["version", "trained_at", "training_samples", "holdout_samples", "agreement", "ece", "active"]
    list_filter = ["active"]
    ordering = ["-version"]
    readonly_fields = ["metrics_json", "parameters_json"]
    fields = [
        "version",
        "trained_at",
        "trained_by",
        "active",
        "training_samples",
        "holdout_samples",
        "feature_names",
        "classes",
        "metrics_json",
        "parameters_json",
    ]
    change_list_template = "admin/hitl/assistmodel/change_list.html"

    def _may_see(self, request) -> bool:
        return getattr(request.user, "is_authenticated", False) and request.user.has_role(
            Role.ADMIN, Role.GOVERNANCE_LEAD
        )

    def has_module_permission(self, request):
        return self._may_see(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return self._may_see(request) and super().has_view_permission(request, obj)

    @admin.display(description="agreement")
    def agreement(self, obj: AssistModel) -> str:
        return _percent((obj.metrics or {}).get("agreement"))

    @admin.display(description="ECE")
    def ece(self, obj: AssistModel) -> str:
        value = (obj.metrics or {}).get("ece")
        return "—" if value is None else f"{value:.3f}"

    @admin.display(description="metrics")
    def metrics_json(self, obj: AssistModel) -> str:
        return _pretty_json(obj.metrics)

    @admin.display(description="parameters")
    def parameters_json(self, obj: AssistModel) -> str:
        return _pretty_json(obj.parameters)

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_retrain"
        return [path("retrain/", self.admin_site.admin_view(self.retrain_view), name=name), *super().get_urls()]

    def retrain_view(self, request: HttpRequest):
        """ "Retrain now": train a new model from the human decisions on record (audited by the service)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        from hitl.services.assist import assist_model_train

        outcome = assist_model_train(actor=request.user)
        if outcome.model is None:
            self.message_user(request, f"No model trained: {outcome.reason}", messages.WARNING)
        else:
            model = outcome.model
            self.message_user(
                request,
                f"Trained assist model v{model.version} on {model.training_samples} decisions "
                f"(held out {model.holdout_samples}): agreement {self.agreement(model)}, ECE {self.ece(model)}.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))
