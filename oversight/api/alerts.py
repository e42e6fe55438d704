"""``/alerts``: read-only, team-scoped view of detected problems."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.exceptions import NotFound

from governance.choices import Severity
from oversight import selectors
from oversight.api import serializers as s
from oversight.models import Alert, AlertStatus, Category


class AlertFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=AlertStatus.choices)
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    system = django_filters.CharFilter(method="filter_system", help_text="The AI system's id or name.")
    rule = django_filters.CharFilter(field_name="rule__name", help_text='Rule name, e.g. "threshold:fairness".')
    category = django_filters.ChoiceFilter(choices=Category.choices)
    since = django_filters.IsoDateTimeFilter(
        field_name="last_seen_at",
        lookup_expr="gte",
        help_text="Alerts last seen at or after this time.",
    )

    class Meta:
        model = Alert
        fields = ["status", "severity", "system", "rule", "category", "since"]

    def filter_system(self, queryset, name, value):
        return queryset.filter(selectors.system_ref_filter(value))


@extend_schema_view(
    list=extend_schema(summary="Alerts of your teams' systems (newest first)"),
    retrieve=extend_schema(summary="One alert"),
)
class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Alerts are written by the processing engine only; people read them here and act on the
    incidents and reviews they lead to."""

    serializer_class = s.AlertSerializer
    filterset_class = AlertFilter
    ordering_fields = ["created_at", "last_seen_at"]  # not nullable: the cursor needs a value
    ordering = ["-created_at"]

    def get_queryset(self):
        return selectors.alerts_for_user(user=self.request.user)

    def get_object(self):
        alert = selectors.alert_get_for_user(user=self.request.user, alert_id=self.kwargs["pk"])
        if alert is None:
            raise NotFound(f"No alert {self.kwargs['pk']!r}.")
        return alert
