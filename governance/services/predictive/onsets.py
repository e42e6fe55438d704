"""What counts as the risk happening (an *onset*), per prediction type — one definition for the outcome of a
production prediction and for the labels of the backtest and of retraining.

* drift risk: an event of a drift signal (``psi``, ``null_rate``) past its *warning* level in
  ``oversight.thresholds.data_quality`` — the first breach a rate rule counts, before any alert fires;
* compliance risk: a failed evaluation run, or a compliance signal past its warning level;
* incident probability: an incident opened on the system.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import QuerySet

from config import registry
from governance.choices import PredictionType
from governance.models import EvaluationRun
from governance.services.predictive.features import DRIFT_SIGNALS
from incidents.selectors import incidents_with_system
from oversight.selectors import warning_breach_events


@dataclass(frozen=True)
class OnsetSource:
    """A table of onsets: its rows, and the field holding when each happened."""

    queryset: QuerySet
    time_field: str


def onset_sources(prediction_type: str) -> list[OnsetSource]:
    if prediction_type == PredictionType.DRIFT_RISK:
        data_quality = registry.get("oversight.thresholds.data_quality")
        drift = {signal: data_quality[signal] for signal in DRIFT_SIGNALS if signal in data_quality}
        return [OnsetSource(warning_breach_events(thresholds_by_category={"data_quality": drift}), "occurred_at")]
    if prediction_type == PredictionType.COMPLIANCE_RISK:
        compliance = registry.get("oversight.thresholds.compliance")
        return [
            OnsetSource(EvaluationRun.objects.filter(passed=False), "ran_at"),
            OnsetSource(warning_breach_events(thresholds_by_category={"compliance": compliance}), "occurred_at"),
        ]
    if prediction_type == PredictionType.INCIDENT_PROBABILITY:
        return [OnsetSource(incidents_with_system(), "opened_at")]
    raise ValueError(f"unknown prediction type {prediction_type!r}")


def onset_times(
    *, prediction_type: str, system_ids: Iterable[UUID], since: datetime, until: datetime
) -> dict[UUID, list[datetime]]:
    """``{system id: sorted onset times in (since, until]}`` — one query per onset source."""
    ids = list(system_ids)
    result: dict[UUID, list[datetime]] = defaultdict(list)
    for source in onset_sources(prediction_type):
        field = source.time_field
        rows = source.queryset.filter(system_id__in=ids, **{f"{field}__gt": since, f"{field}__lte": until}).values_list(
            "system_id", field
        )
        for system_id, at in rows.order_by():
            result[system_id].append(at)
    for times in result.values():
        times.sort()
    return dict(result)
