"""``/assist-models``: the auto-assist models learned from past human decisions, and training one now."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.api.errors import Conflict
from governance.api.mixins import UUIDLookupMixin
from governance.choices import Role
from hitl.api import serializers as s
from hitl.models import AssistModel
from hitl.services.assist import assist_model_train
from oversight.api.serializers import ErrorEnvelopeSerializer

MODEL_KEEPERS = frozenset({Role.ADMIN, Role.GOVERNANCE_LEAD})


class NotEnoughHistory(Conflict):
    default_detail = "Not enough human decisions to train on."
    default_code = "not_enough_history"


@extend_schema_view(
    list=extend_schema(summary="Auto-assist models, newest version first"),
    retrieve=extend_schema(summary="One auto-assist model"),
)
class AssistModelViewSet(UUIDLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Admins and governance leads read the models (held-out agreement, calibration) and train new ones.
    The newest active model is the one auto-assist uses."""

    object_name = "assist model"
    queryset = AssistModel.objects.all()
    serializer_class = s.AssistModelSerializer
    filterset_fields = ["active"]
    ordering_fields = ["version"]
    ordering = ["-version"]
    read_roles = MODEL_KEEPERS
    write_roles = MODEL_KEEPERS

    @extend_schema(
        summary="Train a new model on past human decisions now",
        request=None,
        responses={
            201: s.AssistModelSerializer,
            403: OpenApiResponse(ErrorEnvelopeSerializer, description="Admins and governance leads only."),
            409: OpenApiResponse(
                ErrorEnvelopeSerializer, description="not_enough_history: too few human decisions; nothing saved."
            ),
        },
    )
    @action(detail=False, methods=["post"])
    def train(self, request):
        """Trains on the human decisions of ``hitl.assist_model.history_days`` with a time-ordered
        holdout; the new version becomes the active one (audited ``assist_model.trained``)."""
        outcome = assist_model_train(actor=request.user)
        if outcome.model is None:
            raise NotEnoughHistory(outcome.reason)
        return Response(self.get_serializer(outcome.model).data, status=status.HTTP_201_CREATED)
