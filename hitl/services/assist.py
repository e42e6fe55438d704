"""Auto-assist: suggest a decision for pending review items, train the model it learns, evaluate it.

``review_items_assist`` is the hot path (the beat's ``hitl.assist_pending``, ``POST /reviews/assist``):
per chunk of ≤ 1,000 items one query loads the items, three GROUP BY queries and one audit lookup
compute the evidence, the provider suggests for the whole chunk, then one INSERT stores the
``AssistResult`` rows and one UPDATE copies the latest suggestion onto the items — and one
``review.assisted`` audit entry covers the run.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from config import registry
from governance.choices import AuditAction
from governance.models import AuditLog
from governance.selectors import as_uuid, is_uuid
from governance.services.audit import audit_record, describe_actor
from hitl.assist import learned
from hitl.assist.base import AssistInput, Suggestion, get_provider
from hitl.assist.features import (
    ItemKeys,
    detection_thresholds,
    history_before_each,
    history_for_items,
    human_decisions,
    item_evidence,
)
from hitl.assist.rules import assess
from hitl.models import AssistModel, AssistResult, ReviewItem, ReviewStatus

CHUNK_SIZE = 1000
MAX_EVENT_REFS = 20  # a rate alert can carry hundreds of events; the first ones identify it
ASSIST_ACTOR = "system:assist"


@dataclass(frozen=True)
class AssistRunOutcome:
    assisted: int
    item_ids: list
    provider: str
    model_version: str
    fallbacks: int
    by_decision: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainOutcome:
    model: AssistModel | None
    reason: str


@dataclass(frozen=True)
class EvalReport:
    agreement: float
    ece: float
    reliability: list[tuple[float, float, int, float, float]]  # (bin_low, bin_high, count, mean_conf, accuracy)
    per_class: dict[str, dict[str, int]]
    n_train: int
    n_holdout: int
    rules_agreement: float | None
    temperature: float
    active_model_version: int | None
    as_of: datetime

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reliability"] = [
            dict(zip(("bin_low", "bin_high", "count", "mean_confidence", "accuracy"), row, strict=True))
            for row in self.reliability
        ]
        data["as_of"] = self.as_of.isoformat()
        return data


class AssistEvaluationUnavailable(ValueError):
    """Too few human decisions (or only one kind) to hold some out and measure."""


# --- assist -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _PendingRow:
    """The columns of a pending item that assist reads (plain values: no model instances to build)."""

    id: uuid.UUID
    title: str
    review_type: str
    severity: str
    rule: str
    fingerprint: str
    context: Any
    created_at: datetime
    sla_due_at: datetime
    assisted_at: datetime | None
    system_id: uuid.UUID
    system_name: str
    risk_class: str
    source_alert_id: uuid.UUID | None
    evidence_event_ids: Any
    source_incident_id: uuid.UUID | None


_PENDING_COLUMNS = (
    "id",
    "title",
    "review_type",
    "severity",
    "rule",
    "fingerprint",
    "context",
    "created_at",
    "sla_due_at",
    "assisted_at",
    "system_id",
    "system__name",
    "system__risk_class",
    "source_alert_id",
    "source_alert__evidence_event_ids",
    "source_incident_id",
)


def review_items_assist(
    *,
    item_ids: Sequence | None = None,
    limit: int = 1000,
    actor: Any = None,
    provider: str | None = None,
    now: datetime | None = None,
) -> AssistRunOutcome:
    """Suggest a decision for pending items and store it (``AssistResult`` + the item's latest fields).

    ``item_ids``: those items, re-assisted if assisted before (ids of decided or unknown items are
    ignored); ``None``: the oldest never-assisted pending items, up to ``limit``. The provider runs
    outside the transaction (an LLM may be slow); the writes then happen in one transaction that
    locks the items with ``SKIP LOCKED`` and stores only those still pending and not re-assisted
    by a concurrent run since they were read — so two runs never double-write an item, and a run
    never waits on a reviewer deciding. Audits one ``review.assisted`` entry per run that stored
    anything (counts, provider, model version, fallbacks).
    """
    now = now or timezone.now()
    chosen = get_provider(provider)
    since = now - timedelta(days=registry.get("hitl.assist_model")["history_days"])
    thresholds = detection_thresholds()
    planned: list[tuple[dict, list[Suggestion]]] = []
    for rows in _pending_chunks(item_ids, limit=limit):
        inputs = _assist_inputs(rows, since=since, thresholds=thresholds)
        planned.append(({row.id: row.assisted_at for row in rows}, chosen.suggest(inputs, now=now)))

    stored: list[Suggestion] = []
    with transaction.atomic():
        for read_at, suggestions in planned:
            stored += _store_chunk(read_at, suggestions, now=now)
        by_decision = dict(Counter(s.suggested_decision for s in stored))
        fallbacks = sum(bool(s.fallback_reason) for s in stored)
        if stored:
            audit_record(
                action=AuditAction.REVIEW_ASSISTED,
                actor=actor or ASSIST_ACTOR,
                object_type=AssistResult._meta.label_lower,
                data={
                    "assisted": len(stored),
                    "skipped": sum(len(read_at) for read_at, _ in planned) - len(stored),
                    "provider": chosen.name,
                    "model_version": chosen.model_version,
                    "fallbacks": fallbacks,
                    "by_decision": by_decision,
                },
            )
    return AssistRunOutcome(
        assisted=len(stored),
        item_ids=[s.item_id for s in stored],
        provider=chosen.name,
        model_version=chosen.model_version,
        fallbacks=fallbacks,
        by_decision=by_decision,
    )


def _pending_chunks(item_ids: Sequence | None, *, limit: int) -> Iterator[list[_PendingRow]]:
    """Pending items in chunks of ≤ CHUNK_SIZE: the named ones, or the oldest unassisted (keyset paging,
    since nothing is written until every chunk has its suggestions)."""
    pending = ReviewItem.objects.filter(status=ReviewStatus.PENDING)
    if item_ids is not None:
        ids = _as_uuids(item_ids)
        for start in range(0, len(ids), CHUNK_SIZE):
            chunk = ids[start : start + CHUNK_SIZE]
            by_id = {row.id: row for row in _rows(pending.filter(pk__in=chunk))}
            rows = [by_id[item_id] for item_id in chunk if item_id in by_id]
            if rows:
                yield rows
        return
    unassisted = pending.filter(assisted_at__isnull=True).order_by("created_at", "id")
    remaining, after = max(0, limit), None
    while remaining:
        page = unassisted
        if after is not None:
            page = page.filter(Q(created_at__gt=after.created_at) | Q(created_at=after.created_at, id__gt=after.id))
        rows = _rows(page[: min(CHUNK_SIZE, remaining)])
        if not rows:
            return
        yield rows
        remaining -= len(rows)
        after = rows[-1]


def _rows(queryset) -> list[_PendingRow]:
    return [_PendingRow(*values) for values in queryset.values_list(*_PENDING_COLUMNS)]


def _as_uuids(item_ids: Sequence) -> list[uuid.UUID]:
    # Something that is not an id names no item, like an unknown id: skipped.
    return list(dict.fromkeys(as_uuid(item_id) for item_id in item_ids if is_uuid(item_id)))


def _assist_inputs(rows: Sequence[_PendingRow], *, since: datetime, thresholds) -> list[AssistInput]:
    histories = history_for_items(
        [ItemKeys(fingerprint=row.fingerprint, rule=row.rule, system_id=row.system_id) for row in rows], since=since
    )
    audit_seq = dict(
        AuditLog.objects.filter(
            # queued from an alert, or requested by a person
            action__in=(AuditAction.REVIEW_CREATED, AuditAction.REVIEW_REQUESTED),
            object_type=ReviewItem._meta.label_lower,
            object_id__in=[str(row.id) for row in rows],
        ).values_list("object_id", "seq")
    )
    inputs = []
    for row, history in zip(rows, histories, strict=True):
        context = row.context if isinstance(row.context, dict) else {}
        inputs.append(
            AssistInput(
                item_id=row.id,
                title=row.title,
                review_type=row.review_type,
                severity=row.severity,
                system_name=row.system_name,
                risk_class=row.risk_class,
                rule=row.rule,
                fingerprint=row.fingerprint,
                context=context,
                created_at=row.created_at,
                sla_due_at=row.sla_due_at,
                evidence=item_evidence(
                    severity=row.severity,
                    review_type=row.review_type,
                    risk_class=row.risk_class,
                    rule=row.rule,
                    context=context,
                    history=history,
                    thresholds=thresholds,
                ),
                evidence_refs=_evidence_refs(row, audit_seq.get(str(row.id))),
            )
        )
    return inputs


def _evidence_refs(row: _PendingRow, audit_seq: int | None) -> tuple[str, ...]:
    refs = []
    if row.source_alert_id:
        refs.append(f"alert:{row.source_alert_id}")
        events = row.evidence_event_ids if isinstance(row.evidence_event_ids, list) else []
        refs += [f"event:{event_id}" for event_id in events[:MAX_EVENT_REFS]]
    if row.source_incident_id:
        refs.append(f"incident:{row.source_incident_id}")
    if audit_seq is not None:
        refs.append(f"audit:{audit_seq}")
    return tuple(refs)


def _store_chunk(
    read_at: dict[uuid.UUID, datetime | None], suggestions: Sequence[Suggestion], *, now: datetime
) -> list[Suggestion]:
    """Store the suggestions of items still pending, not locked by another transaction, and not
    re-assisted since ``read_at``; return those stored."""
    if connection.vendor == "postgresql":
        claimed = _update_latest_postgresql(read_at, suggestions, now=now)
        kept = [s for s in suggestions if s.item_id in claimed]
        _copy_results(kept, now=now)
        return kept
    queryset = ReviewItem.objects.filter(pk__in=list(read_at), status=ReviewStatus.PENDING)
    if connection.features.has_select_for_update_skip_locked:
        queryset = queryset.select_for_update(skip_locked=True)
    unchanged = {
        item_id for item_id, assisted_at in queryset.values_list("id", "assisted_at") if read_at[item_id] == assisted_at
    }
    kept = [s for s in suggestions if s.item_id in unchanged]
    AssistResult.objects.bulk_create([_result_row(s) for s in kept], batch_size=CHUNK_SIZE)
    ReviewItem.objects.bulk_update(
        [
            ReviewItem(
                id=s.item_id,
                suggested_decision=s.suggested_decision,
                assist_confidence=s.confidence,
                risk_score=s.risk_score,
                assisted_at=now,
                updated_at=now,
            )
            for s in kept
        ],
        ["suggested_decision", "assist_confidence", "risk_score", "assisted_at", "updated_at"],
        batch_size=500,
    )
    return kept


def _result_row(suggestion: Suggestion) -> AssistResult:
    return AssistResult(
        item_id=suggestion.item_id,
        summary=suggestion.summary,
        suggested_decision=suggestion.suggested_decision,
        confidence=suggestion.confidence,
        risk_score=suggestion.risk_score,
        evidence_refs=suggestion.evidence_refs,
        reasoning=suggestion.reasoning,
        factors=suggestion.factors,
        sla_recommendation=suggestion.sla_recommendation,
        provider=suggestion.provider,
        model_version=suggestion.model_version[:60],
        fallback_reason=suggestion.fallback_reason[:300],
    )


# PostgreSQL: binary COPY. Client-side quoting of ~15,000 values per chunk (what bulk_create and a
# VALUES list cost through Django's cursor) was most of a chunk's time; COPY sends them pre-encoded.
_RESULT_COLUMNS = (
    ("id", "uuid"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("item_id", "uuid"),
    ("summary", "text"),
    ("suggested_decision", "text"),
    ("confidence", "float8"),
    ("risk_score", "float8"),
    ("evidence_refs", "jsonb"),
    ("reasoning", "text"),
    ("factors", "jsonb"),
    ("sla_recommendation", "jsonb"),
    ("provider", "text"),
    ("model_version", "text"),
    ("fallback_reason", "text"),
)
_LATEST_COLUMNS = (
    ("id", "uuid"),
    ("decision", "text"),
    ("confidence", "float8"),
    ("risk", "float8"),
    ("read_assisted_at", "timestamptz"),
)
# Identifiers only (our table, a staging name of hex digits we generate); every value is a parameter.
# The sub-select claims the rows (SKIP LOCKED: never wait on a reviewer's decision), the WHERE keeps
# those still pending and not re-assisted since they were read; RETURNING names what was stored.
_UPDATE_LATEST_SQL = (
    "UPDATE {table} AS r SET suggested_decision = v.decision, assist_confidence = v.confidence, "
    "risk_score = v.risk, assisted_at = %s, updated_at = %s FROM {staging} AS v "
    "WHERE r.id = v.id AND r.assisted_at IS NOT DISTINCT FROM v.read_assisted_at AND r.id IN ("
    "SELECT q.id FROM {table} AS q WHERE q.id IN (SELECT id FROM {staging}) AND q.status = %s "
    "FOR UPDATE SKIP LOCKED) RETURNING r.id"
)


def _update_latest_postgresql(
    read_at: dict[uuid.UUID, datetime | None], suggestions: Sequence[Suggestion], *, now: datetime
) -> set[uuid.UUID]:
    """COPY the suggestions into a transaction-scoped staging table, then one guarded UPDATE … FROM it."""
    staging = f"assist_latest_{uuid.uuid4().hex}"
    definition = ", ".join(f"{name} {pg_type}" for name, pg_type in _LATEST_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {staging} ({definition}) ON COMMIT DROP")
        with cursor.cursor.copy(f"COPY {staging} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([pg_type for _, pg_type in _LATEST_COLUMNS])
            for s in suggestions:
                copy.write_row((s.item_id, s.suggested_decision, s.confidence, s.risk_score, read_at[s.item_id]))
        cursor.execute(
            _UPDATE_LATEST_SQL.format(table=ReviewItem._meta.db_table, staging=staging),
            [now, now, ReviewStatus.PENDING],
        )
        return {row[0] for row in cursor.fetchall()}


def _copy_results(suggestions: Sequence[Suggestion], *, now: datetime) -> None:
    if not suggestions:
        return
    from psycopg.types.json import Jsonb

    columns = ", ".join(name for name, _ in _RESULT_COLUMNS)
    sql = f"COPY {AssistResult._meta.db_table} ({columns}) FROM STDIN (FORMAT BINARY)"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        copy.set_types([pg_type for _, pg_type in _RESULT_COLUMNS])
        for s in suggestions:
            copy.write_row(
                (
                    uuid.uuid4(),
                    now,
                    now,
                    s.item_id,
                    s.summary,
                    s.suggested_decision,
                    s.confidence,
                    s.risk_score,
                    Jsonb(s.evidence_refs),
                    s.reasoning,
                    Jsonb(s.factors),
                    Jsonb(s.sla_recommendation),
                    s.provider,
                    s.model_version[:60],
                    s.fallback_reason[:300],
                )
            )


# --- the learned model --------------------------------------------------------------------------------
def _training_rows(*, since: datetime, until: datetime) -> list[learned.TrainingRow]:
    """Every human decision in the window, oldest first, with its evidence as it was before it
    (history counts only earlier decisions)."""
    rows = list(
        human_decisions(since=since, until=until)
        .order_by("decided_at", "id")
        .values_list(
            "decision",
            "decided_at",
            "item__severity",
            "item__review_type",
            "item__system__risk_class",
            "item__rule",
            "item__fingerprint",
            "item__system_id",
            "item__context",
        )
    )
    histories = history_before_each(
        (ItemKeys(fingerprint=row[6], rule=row[5], system_id=row[7]), row[0]) for row in rows
    )
    thresholds = detection_thresholds()
    return [
        learned.TrainingRow(
            evidence=item_evidence(
                severity=severity,
                review_type=review_type,
                risk_class=risk_class,
                rule=rule,
                context=context if isinstance(context, dict) else {},
                history=history,
                thresholds=thresholds,
            ),
            decision=decision,
            decided_at=decided_at,
        )
        for (decision, decided_at, severity, review_type, risk_class, rule, _fp, _system, context), history in zip(
            rows, histories, strict=True
        )
    ]


def _fit(now: datetime) -> tuple[learned.LearnedModel, dict[str, Any]]:
    settings = registry.get("hitl.assist_model")
    rows = _training_rows(since=now - timedelta(days=settings["history_days"]), until=now)
    needed = settings["min_training_decisions"]
    if len(rows) < needed:
        raise learned.NotLearnable(
            f"{len(rows)} human decisions in the last {settings['history_days']} days; at least {needed} are needed"
        )
    weights = registry.get("hitl.assist_weights")
    return learned.fit(
        rows,
        holdout_fraction=settings["holdout_fraction"],
        baseline=lambda evidence: assess(evidence, weights=weights).decision,
    )


def assist_model_train(*, actor: Any = None, now: datetime | None = None) -> TrainOutcome:
    """Train a new model on the human decisions of the last ``history_days`` (``hitl.assist_model``).

    With too few decisions (or only one kind) returns ``model=None`` and why, writing nothing.
    Otherwise saves version N+1 as the only active model and audits ``assist_model.trained`` with
    its held-out metrics, in one transaction. Not idempotent: every call trains a new version.
    """
    now = now or timezone.now()
    try:
        model, metrics = _fit(now)
    except learned.NotLearnable as exc:
        return TrainOutcome(model=None, reason=str(exc))
    with transaction.atomic():
        latest = AssistModel.objects.select_for_update().order_by("-version").first()
        version = latest.version + 1 if latest else 1
        AssistModel.objects.filter(active=True).update(active=False)
        record = AssistModel.objects.create(
            version=version,
            trained_at=now,
            training_samples=metrics["n_train"],
            holdout_samples=metrics["n_holdout"],
            feature_names=list(model.feature_names),
            classes=list(model.classes),
            parameters=model.parameters(),
            metrics=metrics,
            active=True,
            trained_by=describe_actor(actor)[0][:150],
        )
        audit_record(
            action=AuditAction.ASSIST_MODEL_TRAINED,
            actor=actor or ASSIST_ACTOR,
            target=record,
            data={
                "version": version,
                "agreement": metrics["agreement"],
                "ece": metrics["ece"],
                "rules_agreement": metrics.get("rules_agreement"),
                "n_train": metrics["n_train"],
                "n_holdout": metrics["n_holdout"],
                "per_class": metrics["per_class"],
            },
        )
    return TrainOutcome(
        model=record,
        reason=(
            f"trained v{version} on {metrics['n_train']} decisions: held-out agreement {metrics['agreement']:.1%}, "
            f"ECE {metrics['ece']:.3f} on {metrics['n_holdout']}"
        ),
    )


def assist_evaluate(*, now: datetime | None = None) -> EvalReport:
    """Measure the training procedure on the newest ``holdout_fraction`` of human decisions (fit on the
    older ones, nothing saved): agreement, ECE, reliability table, per-class counts, and the rules-only
    agreement on the same items for comparison. Raises :class:`AssistEvaluationUnavailable`."""
    now = now or timezone.now()
    try:
        _, metrics = _fit(now)
    except learned.NotLearnable as exc:
        raise AssistEvaluationUnavailable(str(exc)) from exc
    return EvalReport(
        agreement=metrics["agreement"],
        ece=metrics["ece"],
        reliability=[
            (b["bin_low"], b["bin_high"], b["count"], b["mean_confidence"], b["accuracy"])
            for b in metrics["reliability"]
        ],
        per_class=metrics["per_class"],
        n_train=metrics["n_train"],
        n_holdout=metrics["n_holdout"],
        rules_agreement=metrics.get("rules_agreement"),
        temperature=metrics["temperature"],
        active_model_version=AssistModel.objects.filter(active=True)
        .order_by("-version")
        .values_list("version", flat=True)
        .first(),
        as_of=now,
    )
