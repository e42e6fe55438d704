"""``/api/v1/config``: read and change platform configuration through the registry."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from config import registry
from config.api.serializers import (
    ConfigDetailSerializer,
    ConfigEntrySerializer,
    ConfigHistorySerializer,
    ConfigUpdateSerializer,
)
from config.models import ConfigCategory, PlatformConfigHistory
from governance.api.errors import FieldConflict
from governance.api.pagination import VigilCursorPagination


class HistoryPagination(VigilCursorPagination):
    ordering = "-version"


class ConfigViewSet(viewsets.ViewSet):
    """Platform configuration keys. Reads: every role. Changes: admin and governance_lead."""

    lookup_field = "key"
    lookup_value_regex = r"[a-z0-9_.]+"

    def _entry(self, key: str) -> registry.ConfigEntry:
        try:
            return registry.entry(key)
        except registry.UnknownConfigKey:
            raise NotFound(f"No config key {key!r}.") from None

    @extend_schema(
        parameters=[OpenApiParameter("category", enum=ConfigCategory.values)],
        responses=ConfigEntrySerializer(many=True),
    )
    def list(self, request):
        """Every declared key with its current value and version."""
        category = request.query_params.get("category")
        if category and category not in ConfigCategory.values:
            raise ValidationError({"category": [f"choose from {', '.join(ConfigCategory.values)}"]})
        entries = [e for e in registry.entries() if not category or e.category == category]
        return Response(ConfigEntrySerializer(entries, many=True).data)

    @extend_schema(responses=ConfigDetailSerializer)
    def retrieve(self, request, key: str):
        """One key with its value, version and JSON Schema."""
        return Response(ConfigDetailSerializer(self._entry(key)).data)

    @extend_schema(request=ConfigUpdateSerializer, responses=ConfigDetailSerializer)
    def update(self, request, key: str):
        """Replace the value. 400 names each invalid path (``value.<path>``); 409 when ``version`` is stale."""
        self._entry(key)
        payload = ConfigUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        try:
            registry.set(
                key, data["value"], user=request.user, reason=data["reason"], expected_version=data.get("version")
            )
        except registry.ConfigValidationError as exc:
            raise ValidationError(exc.errors) from exc
        except registry.StaleConfigVersion as exc:
            raise FieldConflict(
                {"version": [f"stale: the stored version is {exc.current}, you sent {exc.expected}"]},
                message=f"{key} was changed by someone else (now version {exc.current}); reload and retry.",
            ) from exc
        registry.invalidate()
        return Response(ConfigDetailSerializer(self._entry(key)).data, status=status.HTTP_200_OK)

    @extend_schema(responses=ConfigHistorySerializer(many=True))
    @action(detail=True, methods=["get"])
    def history(self, request, key: str):
        """Every accepted change of the key, newest first, with a structural diff."""
        self._entry(key)
        queryset = PlatformConfigHistory.objects.filter(config__key=key).select_related("config", "changed_by")
        paginator = HistoryPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(ConfigHistorySerializer(page, many=True).data)
