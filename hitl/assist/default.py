"""The default, offline provider: risk from the transparent rules, decision and calibrated confidence
from the active learned model when there is one, else the rules alone (and it says so)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from config import registry
from hitl.assist.base import DEFAULT_PROVIDER, AssistInput, Suggestion
from hitl.assist.learned import IncompatibleModel, LearnedModel
from hitl.assist.rules import RuleAssessment, assess, recommend_sla
from hitl.models import AssistModel, ReviewType

logger = logging.getLogger(__name__)

RULES_ONLY_VERSION = "rules"
REVIEW_TYPE_LABELS = dict(ReviewType.choices)


def active_model() -> tuple[LearnedModel | None, str]:
    """The newest active model, or None and why not."""
    record = AssistModel.objects.filter(active=True).order_by("-version").first()
    if record is None:
        threshold = registry.get("hitl.assist_model")["min_training_decisions"]
        return None, (
            f"no model trained yet (training needs at least {threshold} human decisions), rules only; "
            "the confidence is a heuristic, not calibrated"
        )
    try:
        return LearnedModel.from_record(record), ""
    except IncompatibleModel as exc:
        logger.warning("assist model unusable", extra={"version": record.version, "error": str(exc)})
        return None, f"{exc}; rules only until it is retrained; the confidence is a heuristic, not calibrated"


class DefaultProvider:
    """Snapshots weights, SLA hours and the active model when created (one instance per run)."""

    name = DEFAULT_PROVIDER

    def __init__(self, *, model: LearnedModel | None = None, use_active_model: bool = True):
        self.weights = registry.get("hitl.assist_weights")
        self.sla_hours = registry.get("hitl.sla_hours")
        if model is not None or not use_active_model:
            self.model, self.no_model_reason = model, "" if model else "rules only (model disabled)"
        else:
            self.model, self.no_model_reason = active_model()

    @property
    def model_version(self) -> str:
        return self.model.version if self.model else RULES_ONLY_VERSION

    def suggest(self, inputs: Sequence[AssistInput], *, now: datetime) -> list[Suggestion]:
        """One suggestion per input, in order; the model scores the whole chunk in one matrix product."""
        assessments = [assess(item.evidence, weights=self.weights) for item in inputs]
        if self.model is not None and inputs:
            proba = self.model.predict([item.evidence for item in inputs])
            classes = self.model.classes
            picks = [
                (classes[k], float(proba[i, k]), dict(zip(classes, proba[i].tolist(), strict=True)))
                for i, k in enumerate(proba.argmax(axis=1))
            ]
        else:
            picks = [(a.decision, a.confidence, None) for a in assessments]
        return [
            self._suggestion(item, assessment, decision, confidence, probabilities)
            for item, assessment, (decision, confidence, probabilities) in zip(inputs, assessments, picks, strict=True)
        ]

    def _suggestion(
        self,
        item: AssistInput,
        assessment: RuleAssessment,
        decision: str,
        confidence: float,
        probabilities: dict[str, float] | None,
    ) -> Suggestion:
        confidence = min(1.0, max(0.0, round(confidence, 4)))
        sla = recommend_sla(
            severity=item.severity,
            risk_score=assessment.risk_score,
            created_at=item.created_at,
            sla_due_at=item.sla_due_at,
            sla_hours=self.sla_hours,
        )
        factors = {name: factor.as_dict() for name, factor in assessment.factors.items()}
        factors["rules"] = {
            "decision": assessment.decision,
            "confidence": assessment.confidence,
            "reason": assessment.reason,
        }
        if probabilities is not None:
            model = self.model
            factors["model"] = {
                "version": model.version,
                "probabilities": {k: round(v, 4) for k, v in probabilities.items()},
                "temperature": round(model.temperature, 4),
            }
            head = (
                f"Model {model.version} (learned from {model.training_samples} human decisions; held-out agreement "
                f"{model.metrics.get('agreement', 0):.0%}, ECE {model.metrics.get('ece', 0):.3f}) suggests "
                f"{decision} with calibrated confidence {confidence:.0%}."
            )
            if assessment.decision != decision:
                head += f" The rules alone would {assessment.reason}."
        else:
            head = f"Suggest {assessment.reason} — {self.no_model_reason}."
        reasoning = " ".join(
            [
                head,
                f"Risk: {assessment.explain_risk()}.",
                "Factors: " + "; ".join(f"{name}: {f.detail}" for name, f in assessment.factors.items()) + ".",
                f"SLA: {sla['reason']}.",
            ]
        )
        kind = REVIEW_TYPE_LABELS.get(item.review_type, item.review_type).lower()
        summary = (
            f"{item.severity.capitalize()} {kind} on {item.system_name} ({item.risk_class} risk): "
            f"{item.evidence.signal.detail}. Suggest {decision} ({confidence:.0%}), "
            f"risk {assessment.risk_score:.0f}/100."
        )
        return Suggestion(
            item_id=item.item_id,
            summary=summary,
            suggested_decision=str(decision),
            confidence=confidence,
            risk_score=assessment.risk_score,
            evidence_refs=list(item.evidence_refs),
            reasoning=reasoning,
            sla_recommendation=sla,
            provider=self.name,
            model_version=self.model_version,
            factors=factors,
        )
