"""``/reviews``: the human-in-the-loop queue — list and inspect items, decide one or many, clear the
low-risk ones, run auto-assist now, and read the backlog's health."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import django_filters
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from governance.api.errors import Conflict, PayloadTooLarge
from governance.api.mixins import UUIDLookupMixin
from governance.choices import HUMAN_ROLES, SERVICE_ROLES, Role, Severity
from governance.models import User
from hitl import selectors
from hitl.api import serializers as s
from hitl.models import DecisionSource, ReviewDecision, ReviewItem, ReviewStatus, ReviewType
from hitl.services.automation import review_items_assist_and_apply
from hitl.services.decisions import ReviewItemMissing, ReviewNotPending, review_item_decide
from hitl.services.queue import AssigneeNotAllowed, review_item_assign
from hitl.services.requests import ReviewRequestInvalid, review_item_request
from hitl.services.triage import TriageError, review_items_bulk_decide, review_items_clear_low_risk
from oversight.api.serializers import ErrorEnvelopeSerializer
from oversight.selectors import system_ref_filter

DECIDER_ROLES = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD, Role.REVIEWER})
# Whoever works on a team's systems may ask for a review of them; only viewers may not.
REQUESTER_ROLES = frozenset({*HUMAN_ROLES, *SERVICE_ROLES} - {Role.VIEWER})
ASSIGNEE_ME = "me"


def review_item_ids_to_assist(*, user: User, ids: Sequence[UUID] | None, limit: int) -> list[UUID] | None:
    """What ``POST /reviews/assist`` hands the automation service, already scoped to the caller.

    Named ids must all be items of the caller's teams (else 400 naming ``ids.<index>``). Without ids:
    the caller's pending, never-assisted items, oldest first, up to ``limit``; for admins ``None``, so
    the service picks the oldest unassisted items of every team itself.
    """
    scoped = selectors.review_items_for_user(user=user)
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        found = set(scoped.filter(pk__in=wanted).values_list("pk", flat=True))
        errors = {
            f"ids.{index}": [f"no review item {item_id} in your teams"]
            for index, item_id in enumerate(ids)
            if item_id not in found
        }
        if errors:
            raise ValidationError(errors)
        return wanted
    if user.is_admin_role:
        return None
    unassisted = scoped.filter(status=ReviewStatus.PENDING, assisted_at__isnull=True)
    return list(unassisted.order_by("created_at", "id").values_list("pk", flat=True)[:limit])


class ReviewItemFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ReviewStatus.choices)
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    review_type = django_filters.ChoiceFilter(choices=ReviewType.choices)
    system = django_filters.CharFilter(method="filter_system", help_text="The AI system's id or name.")
    team = django_filters.UUIDFilter(field_name="system__team", help_text="A team id.")
    suggestion = django_filters.ChoiceFilter(
        choices=[*ReviewDecision.choices, (selectors.NO_SUGGESTION, "Not assisted yet")],
        method="filter_suggestion",
        help_text='The latest auto-assist suggestion, or "none" for items not assisted yet.',
    )
    sla_breached = django_filters.BooleanFilter(
        field_name="sla_breached", help_text="Pending past sla_due_at, or decided after it."
    )
    decision_source = django_filters.ChoiceFilter(choices=DecisionSource.choices)
    assignee = django_filters.CharFilter(method="filter_assignee", help_text='A user id, or "me".')
    requested_by = django_filters.CharFilter(method="filter_requested_by", help_text='A user id, or "me".')

    class Meta:
        model = ReviewItem
        fields = [
            "status",
            "severity",
            "review_type",
            "system",
            "team",
            "suggestion",
            "sla_breached",
            "decision_source",
            "assignee",
            "requested_by",
        ]

    def filter_system(self, queryset, name, value):
        return queryset.filter(system_ref_filter(value))

    def filter_suggestion(self, queryset, name, value):
        return queryset.filter(suggested_decision="" if value == selectors.NO_SUGGESTION else value)

    def filter_assignee(self, queryset, name, value):
        return queryset.filter(**{name: self._user_ref(name, value)})

    def filter_requested_by(self, queryset, name, value):
        return queryset.filter(**{name: self._user_ref(name, value)})

    def _user_ref(self, name: str, value: str):
        if value == ASSIGNEE_ME:
            return self.request.user.pk
        if not selectors.is_uuid(value):
            raise ValidationError({name: [f'must be a user id or "{ASSIGNEE_ME}"']})
        return value


_ERRORS = {
    400: OpenApiResponse(ErrorEnvelopeSerializer, description="Invalid input; the fields are named."),
    403: OpenApiResponse(ErrorEnvelopeSerializer, description="Your role may not decide (reviewer and up)."),
}


@extend_schema_view(
    list=extend_schema(summary="Review items of your teams (most urgent first by default)"),
    retrieve=extend_schema(summary="One review item, with its latest auto-assist result and every decision"),
)
class ReviewItemViewSet(UUIDLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The human-in-the-loop review queue. Every human role reads; reviewers, governance leads and
    admins decide. Items leave ``pending`` only through ``hitl.services.decisions`` (audited)."""

    object_name = "review item"
    serializer_class = s.ReviewItemSerializer
    filterset_class = ReviewItemFilter
    ordering_fields = ["sla_due_at", "created_at"]  # not nullable: the cursor needs a value
    ordering = ["sla_due_at"]
    action_roles = {
        **dict.fromkeys(("decide", "assign", "bulk_decide", "clear_low_risk", "assist"), DECIDER_ROLES),
        "create": REQUESTER_ROLES,
    }

    def get_queryset(self):
        return selectors.with_sla_breached(selectors.review_items_for_user(user=self.request.user), now=timezone.now())

    def get_serializer_class(self):
        return s.ReviewItemSerializer if self.action == "list" else s.ReviewItemDetailSerializer

    @extend_schema(
        summary="Request a review of a model change, a policy exception or data access",
        request=s.ReviewRequestSerializer,
        responses={
            201: s.ReviewItemDetailSerializer,
            400: OpenApiResponse(
                ErrorEnvelopeSerializer,
                description="Invalid input, alert_triage, or no such system in your teams; the fields are named.",
            ),
            403: OpenApiResponse(ErrorEnvelopeSerializer, description="Viewers may not request reviews."),
        },
    )
    def create(self, request):
        """Queues a pending item for the system's team, with you as ``requested_by``; the SLA follows
        ``hitl.sla_hours`` for its severity. Audited as ``review.requested``. Approving your own request
        is allowed but reported as a governance bypass (``policy_circumvention``)."""
        body = s.ReviewRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            item = review_item_request(actor=request.user, **body.validated_data)
        except ReviewRequestInvalid as exc:
            raise ValidationError(exc.fields) from exc
        # Read back through the scoped queryset: the same representation as GET /reviews/{id}.
        created = self.get_queryset().get(pk=item.pk)
        return Response(self.get_serializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Decide one pending item",
        request=s.DecideSerializer,
        responses={
            200: s.ReviewItemDetailSerializer,
            **_ERRORS,
            404: OpenApiResponse(ErrorEnvelopeSerializer, description="No such item in your teams."),
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="Not pending any more; nothing changed."),
        },
    )
    @action(detail=True, methods=["post"])
    def decide(self, request, pk=None):
        """Approve, reject or escalate (escalating opens an incident, or joins the open one of the same
        fingerprint). The decision, rationale and deciding user are recorded and audited."""
        item = self.get_object()
        body = s.DecideSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            review_item_decide(item_id=item.id, actor=request.user, **body.validated_data)
        except ReviewNotPending as exc:
            raise Conflict(
                f"Review item {item.id} is already {exc.statuses.get(item.id, 'decided')}; "
                "only pending items can be decided."
            ) from exc
        except ReviewItemMissing as exc:
            raise NotFound(f"No review item {pk!r}.") from exc
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        summary="Assign (or unassign) one item",
        request=s.AssignSerializer,
        responses={
            200: s.ReviewItemDetailSerializer,
            **_ERRORS,
            404: OpenApiResponse(ErrorEnvelopeSerializer, description="No such item in your teams."),
        },
    )
    @action(detail=True, methods=["post"])
    def assign(self, request, pk=None):
        """Give the item to a reviewer, governance lead or admin of its team (``assignee: null``
        unassigns). Audited as ``review.assigned``."""
        item = self.get_object()
        body = s.AssignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        assignee = None
        if (assignee_id := body.validated_data["assignee"]) is not None:
            assignee = User.objects.filter(pk=assignee_id).first()
            if assignee is None:
                raise ValidationError({"assignee": [f"no user {assignee_id}"]})
        try:
            review_item_assign(item_id=item.id, assignee=assignee, actor=request.user)
        except AssigneeNotAllowed as exc:
            raise ValidationError({"assignee": [str(exc)]}) from exc
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        summary="Decide up to 1,000 pending items at once (all or nothing)",
        request=s.BulkDecideSerializer,
        responses={
            200: s.BulkDecideResultSerializer,
            **_ERRORS,
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="An item was decided meanwhile."),
            413: OpenApiResponse(ErrorEnvelopeSerializer, description="More than 1,000 ids."),
        },
    )
    @action(detail=False, methods=["post"], url_path="bulk-decide")
    def bulk_decide(self, request):
        """One decision for the listed ids (or the items a filter matches), or with ``apply_suggestions``
        each item's own auto-assist suggestion. Any bad id, non-pending item or unsafe suggestion fails
        the whole request with 400 naming it (``ids.<index>``); every decision is audited."""
        body = s.BulkDecideSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            outcome = review_items_bulk_decide(
                user=request.user,
                rationale=data.get("rationale", ""),
                ids=data.get("ids"),
                filters=data.get("filter"),
                decision=data.get("decision") or None,
                apply_suggestions=data["apply_suggestions"],
            )
        except TriageError as exc:
            if exc.too_many:
                raise _too_large(exc) from exc
            raise ValidationError(exc.fields) from exc
        except (ReviewNotPending, ReviewItemMissing) as exc:
            raise Conflict(f"{exc}; nothing was changed, reload and retry.") from exc
        result = {"decided": outcome.decided, "by_decision": outcome.by_decision, "ids": outcome.item_ids}
        return Response(s.BulkDecideResultSerializer(result).data)

    @extend_schema(
        summary='"Clear Low Risk": approve every confidently low-risk low/info item',
        request=s.ClearLowRiskSerializer,
        responses={
            200: s.ClearLowRiskResultSerializer,
            **_ERRORS,
            409: OpenApiResponse(ErrorEnvelopeSerializer, description="An item was decided meanwhile; retry."),
        },
    )
    @action(detail=False, methods=["post"], url_path="clear-low-risk")
    def clear_low_risk(self, request):
        """Approves the pending low/info items of your teams that auto-assist suggests approving with a
        confidence at or above the floor and a risk at or below the ceiling (``hitl.auto_approval``).
        Items never assisted stay: run auto-assist first."""
        body = s.ClearLowRiskSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            outcome = review_items_clear_low_risk(user=request.user, rationale=body.validated_data.get("rationale", ""))
        except (ReviewNotPending, ReviewItemMissing) as exc:
            raise Conflict(f"{exc}; retry.") from exc
        return Response(s.ClearLowRiskResultSerializer({"decided": outcome.decided, "ids": outcome.item_ids}).data)

    @extend_schema(
        summary="Run auto-assist now, then the auto-approval policies",
        request=s.AssistRunSerializer,
        responses={
            200: s.AssistRunResultSerializer,
            **_ERRORS,
            413: OpenApiResponse(ErrorEnvelopeSerializer, description="More than 1,000 ids."),
        },
    )
    @action(detail=False, methods=["post"])
    def assist(self, request):
        """Synchronously suggests a decision, confidence, risk score and SLA for the named items (or your
        teams' oldest unassisted pending ones), then applies every enabled or shadow-mode policy to
        exactly those items."""
        body = s.AssistRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        limit = body.validated_data["limit"]
        item_ids = review_item_ids_to_assist(user=request.user, ids=body.validated_data.get("ids"), limit=limit)
        outcome = review_items_assist_and_apply(item_ids=item_ids, limit=limit, actor=request.user)
        result = {
            "assisted": outcome.assist.assisted,
            "provider": outcome.assist.provider,
            "model_version": outcome.assist.model_version,
            "fallbacks": outcome.assist.fallbacks,
            "auto_decided": outcome.approval.decided,
            "shadow": outcome.approval.shadow,
            "spot_checks": outcome.approval.spot_checks,
            "ids": outcome.assist.item_ids,
        }
        return Response(s.AssistRunResultSerializer(result).data)

    @extend_schema(summary="Backlog health of your teams' review queue", responses=s.BacklogHealthSerializer)
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def health(self, request):
        """Pending count, oldest pending item, SLA breaches, and inflow vs outflow per hour over the last
        24 hours (with the decisions by source: human, bulk, auto_policy)."""
        report = selectors.backlog_health(queryset=selectors.review_items_for_user(user=request.user))
        return Response(s.BacklogHealthSerializer(report).data)


def _too_large(error: TriageError) -> PayloadTooLarge:
    too_large = PayloadTooLarge(detail=str(error))
    too_large.fields = error.fields
    return too_large
