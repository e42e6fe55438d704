"""``/oversight/metrics``: detection health over a time window (MTTD, alerts, throughput, outbox lag,
MTTA/MTTR, the latest simulation's quality)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from oversight.api.serializers import ErrorEnvelopeSerializer
from oversight.metrics import oversight_metrics

DEFAULT_WINDOW = timedelta(hours=24)


class MetricsWindowSerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="Window start (ISO 8601); default: until − 24 h.")
    until = serializers.DateTimeField(required=False, help_text="Window end (ISO 8601); default: now.")

    def validate(self, attrs):
        until = attrs.get("until") or timezone.now()
        since = attrs.get("since") or until - DEFAULT_WINDOW
        if since > until:
            raise serializers.ValidationError({"since": ["must not be after until"]})
        return {"since": since, "until": until}


_LATENCY = serializers.DictField(
    child=serializers.DictField(), help_text='{"<severity>"|"all": {"p50", "p95", "count"}} in seconds.'
)


class OversightMetricsView(APIView):
    """Detection health, measured from data now. Every human role reads."""

    @extend_schema(
        summary="Detection metrics over a time window",
        parameters=[MetricsWindowSerializer],
        responses={
            200: inline_serializer(
                "OversightMetrics",
                fields={
                    "since": serializers.DateTimeField(),
                    "until": serializers.DateTimeField(),
                    "events": serializers.DictField(help_text="received, batches, processed (in the window)."),
                    "outbox": serializers.DictField(
                        help_text="unprocessed_batches, oldest_unprocessed_age_seconds (now)."
                    ),
                    "alerts": serializers.DictField(help_text="fired, by_status, by_severity."),
                    "mttd_seconds": _LATENCY,
                    "incidents": serializers.DictField(help_text="opened, mtta_seconds, mttr_seconds."),
                    "latest_simulation": serializers.DictField(
                        allow_null=True, help_text="Quality of the latest finished simulation."
                    ),
                },
            ),
            400: OpenApiResponse(ErrorEnvelopeSerializer, description="A bad date, or since after until."),
        },
    )
    def get(self, request):
        window = MetricsWindowSerializer(data=request.query_params)
        window.is_valid(raise_exception=True)
        return Response(oversight_metrics(**window.validated_data))
