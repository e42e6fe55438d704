"""Proactive reviews: a prediction above the review threshold puts a low-severity item in the queue, so a
person looks at the AI system before the drift, compliance or incident alert fires."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, Severity
from governance.models import PredictiveGovernance
from governance.selectors_predictive import factors_of, prediction_badge_text
from governance.services.audit import AuditEntry, audit_record_many
from governance.services.locks import lock_systems
from governance.services.predictions import predictions_link_review
from hitl.models import ReviewItem, ReviewStatus, ReviewType

logger = logging.getLogger(__name__)

RULE_PREFIX = "predictive:"  # the item's ``rule``: predictive:<prediction type>


def proactive_rule(prediction_type: str) -> str:
    return f"{RULE_PREFIX}{prediction_type}"


def proactive_fingerprint(*, system_id: Any, prediction_type: str) -> str:
    """Stable per system and prediction type, so auto-assist learns from past decisions on the same risk."""
    return hashlib.sha256(f"proactive:{system_id}:{prediction_type}".encode()).hexdigest()


def proactive_reviews_open(*, prediction_ids: Iterable[Any], now: datetime | None = None) -> list[ReviewItem]:
    """Open one low-severity ``proactive_risk`` review per (AI system, prediction type) among the given
    predictions whose risk score is at least ``governance.predictive.review_threshold``.

    Dedup: no new item while a pending proactive item exists for the same system and prediction type;
    the prediction is linked to that pending item instead. Several qualifying predictions of one system
    and type in the same call open one item (for the newest), and all are linked to it. Idempotent: a
    re-delivered signal finds the items it opened pending and opens nothing. Writers are serialized per
    system (``lock_systems``). Each new item is audited ``prediction.review_opened``; its SLA is
    ``hitl.sla_hours`` for low severity. Returns the items created.
    """
    review_threshold = registry.get("governance.predictive")["review_threshold"]
    predictions = list(
        PredictiveGovernance.objects.filter(pk__in=list(prediction_ids), risk_score__gte=review_threshold)
        .select_related("system", "model")
        .order_by("as_of", "created_at")
    )
    if not predictions:
        return []
    groups: dict[tuple[Any, str], list[PredictiveGovernance]] = {}
    for prediction in predictions:
        groups.setdefault((prediction.system_id, prediction.prediction_type), []).append(prediction)
    now = now or timezone.now()
    sla_hours = registry.get("hitl.sla_hours")[Severity.LOW]
    with transaction.atomic():
        lock_systems(system_id for system_id, _ in groups)
        pending = {
            (item.system_id, item.rule): item.pk
            for item in ReviewItem.objects.filter(
                review_type=ReviewType.PROACTIVE_RISK,
                status=ReviewStatus.PENDING,
                system_id__in={system_id for system_id, _ in groups},
                rule__in={proactive_rule(kind) for _, kind in groups},
            ).only("pk", "system_id", "rule")
        }
        created: list[tuple[ReviewItem, PredictiveGovernance]] = []
        links: list[tuple[list[PredictiveGovernance], Any]] = []
        for (system_id, kind), rows in groups.items():
            existing = pending.get((system_id, proactive_rule(kind)))
            if existing is not None:
                links.append((rows, existing))
                continue
            newest = rows[-1]
            item = _review_item_for(
                newest, review_threshold=review_threshold, sla_due_at=now + timedelta(hours=sla_hours)
            )
            created.append((item, newest))
            links.append((rows, item.pk))
        ReviewItem.objects.bulk_create([item for item, _ in created])
        for rows, item_id in links:
            predictions_link_review(prediction_ids=[row.pk for row in rows], review_item_id=item_id)
        audit_record_many(
            entries=[
                AuditEntry(
                    action=AuditAction.PREDICTION_REVIEW_OPENED,
                    target=item,
                    data={
                        "prediction": str(prediction.pk),
                        "system": str(prediction.system_id),
                        "system_name": prediction.system.name,
                        "prediction_type": prediction.prediction_type,
                        "risk_score": prediction.risk_score,
                        "confidence": prediction.confidence,
                        "review_threshold": review_threshold,
                        "severity": item.severity,
                        "sla_due_at": item.sla_due_at,
                    },
                )
                for item, prediction in created
            ]
        )
    if created:
        logger.info("proactive reviews opened count=%d", len(created))
    return [item for item, _ in created]


def _review_item_for(prediction: PredictiveGovernance, *, review_threshold: float, sla_due_at: datetime) -> ReviewItem:
    badge = prediction_badge_text(
        prediction_type=prediction.prediction_type, timeframe_hours=prediction.predicted_timeframe_hours
    )
    factors = factors_of(prediction.factors)
    factor_text = "; ".join(f"{factor.label} {factor.display_value}" for factor in factors) or "none recorded"
    summary = (
        f"Vigil forecasts {prediction.get_prediction_type_display().lower()} for {prediction.system.name} within "
        f"{prediction.predicted_timeframe_hours} h: score {prediction.risk_score:.0%}, confidence "
        f"{prediction.confidence:.0%} (review threshold {review_threshold:.0%}). Top factors: {factor_text}. "
        f"No alert has fired yet: check the system now; approve when no action is needed, escalate to open an "
        f"incident."
    )
    return ReviewItem(
        review_type=ReviewType.PROACTIVE_RISK,
        title=(
            f"{badge}: {prediction.system.name} (score {prediction.risk_score:.0%}, confidence "
            f"{prediction.confidence:.0%})"
        )[:300],
        system_id=prediction.system_id,
        severity=Severity.LOW,
        fingerprint=proactive_fingerprint(system_id=prediction.system_id, prediction_type=prediction.prediction_type),
        rule=proactive_rule(prediction.prediction_type)[:100],
        sla_due_at=sla_due_at,
        context={
            "description": summary,
            "prediction": str(prediction.pk),
            "prediction_type": prediction.prediction_type,
            "badge": badge,
            "risk_score": prediction.risk_score,
            "confidence": prediction.confidence,
            "timeframe_hours": prediction.predicted_timeframe_hours,
            "as_of": prediction.as_of.isoformat(),
            "model_version": prediction.model.version if prediction.model is not None else None,
            "factors": [
                {"label": factor.label, "value": factor.value, "contribution": factor.contribution}
                for factor in factors
            ],
            # Read by auto-assist's signal strength: the score against the alert threshold (warning) and the
            # review threshold (critical).
            "signal": f"predicted_{prediction.prediction_type}",
            "value": prediction.risk_score,
            "warning": prediction.threshold,
            "critical": review_threshold,
            "direction": "above",
        },
    )


def on_predictions_recorded(sender, predictions: Iterable[PredictiveGovernance] = (), **kwargs) -> None:
    """Receiver of ``governance.signals.predictions_recorded`` (connected in ``HitlConfig.ready``)."""
    proactive_reviews_open(prediction_ids=[prediction.pk for prediction in predictions])
