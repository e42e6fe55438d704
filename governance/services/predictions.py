"""Writes of the predictive-governance surface: activating a predictor model version by hand, and linking
predictions to the proactive HITL review they opened. The prediction pass, training and backtests live in
``governance.services.predictive``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance.choices import AuditAction
from governance.models import PredictiveGovernance, PredictorModel
from governance.services.audit import audit_record


def predictor_model_activate(*, model: PredictorModel, actor: Any, reason: str = "") -> bool:
    """Make ``model`` the active predictor of its prediction type; the previously active version (if any)
    is deactivated in the same transaction (the ``predictor_one_active_per_type`` constraint holds at
    every instant). The type's rows are locked, so two activations of one type serialize. Audited
    ``predictor.activated`` with the previous version and the model's metrics. Returns False (and audits
    nothing) when the model is already the active one."""
    with transaction.atomic():
        same_type = PredictorModel.objects.select_for_update().filter(prediction_type=model.prediction_type)
        rows = {row.pk: row for row in same_type}
        if model.pk not in rows:
            raise PredictorModel.DoesNotExist(f"predictor model {model.pk} no longer exists")
        previous = next((row for row in rows.values() if row.is_active), None)
        if previous is not None and previous.pk == model.pk:
            return False
        now = timezone.now()
        if previous is not None:
            PredictorModel.objects.filter(pk=previous.pk).update(is_active=False, updated_at=now)
        PredictorModel.objects.filter(pk=model.pk).update(is_active=True, updated_at=now)
        audit_record(
            action=AuditAction.PREDICTOR_ACTIVATED,
            actor=actor,
            target=model,
            data={
                "prediction_type": model.prediction_type,
                "version": model.version,
                "source": model.source,
                "replaced_version": previous.version if previous is not None else None,
                "metrics": model.metrics,
                "reason": reason,
            },
        )
    model.is_active = True
    return True


def predictions_link_review(*, prediction_ids: Iterable[Any], review_item_id: Any) -> int:
    """Record on each prediction the proactive review it opened (or joined). Only predictions not yet
    linked are written, so a re-delivered signal never re-points a prediction. Returns how many changed."""
    ids = list(prediction_ids)
    if not ids:
        return 0
    return PredictiveGovernance.objects.filter(pk__in=ids, review_item_id__isnull=True).update(
        review_item_id=review_item_id, updated_at=timezone.now()
    )
