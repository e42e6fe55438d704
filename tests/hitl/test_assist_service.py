"""review_items_assist: which items, what is stored, what is audited, and the guards around concurrency."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.choices import AuditAction, RiskClass, Role, Severity
from governance.models import AuditLog
from governance.services.audit import audit_record
from hitl.assist.base import UNCALIBRATED_CONFIDENCE_CAP, UnknownProvider
from hitl.assist.default import DefaultProvider
from hitl.assist.features import DecisionCounts, ItemKeys, history_for_items
from hitl.models import AssistResult, DecisionSource, ReviewItem, ReviewStatus, ReviewType
from hitl.services import assist as assist_service
from hitl.services.assist import assist_model_train, review_items_assist
from hitl.services.backlog_seed import backlog_seed
from hitl.services.decisions import review_item_decide
from tests.factories import AISystemFactory
from tests.hitl.factories import DecisionFactory, ReviewItemFactory
from tests.oversight.factories import AlertFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def queued(count=1, **kwargs):
    """Pending items queued one minute apart, oldest first."""
    items = []
    start = timezone.now() - timedelta(hours=1)
    for index in range(count):
        with time_machine.travel(start + timedelta(minutes=index), tick=False):
            items.append(ReviewItemFactory(**kwargs))
    return items


def test_without_ids_the_oldest_never_assisted_pending_items_are_assisted_up_to_the_limit(own_system):
    oldest, middle, newest = queued(3, system=own_system)
    ReviewItemFactory(system=own_system, decided=True)
    already = ReviewItemFactory(system=own_system, assisted=True)

    outcome = review_items_assist(limit=2)

    assert outcome.assisted == 2
    assert set(outcome.item_ids) == {oldest.id, middle.id}
    assert ReviewItem.objects.filter(assisted_at__isnull=False).count() == 3  # the two and `already`
    assert not AssistResult.objects.filter(item__in=[newest, already]).exists()


def test_runs_in_chunks_cover_more_than_one_chunk_without_repeating_an_item(own_system, monkeypatch):
    monkeypatch.setattr(assist_service, "CHUNK_SIZE", 2)
    items = queued(5, system=own_system)

    outcome = review_items_assist(limit=10)

    assert sorted(outcome.item_ids) == sorted(item.id for item in items)
    assert AssistResult.objects.count() == 5


def test_named_items_are_assisted_again_and_decided_or_unknown_ids_are_ignored(own_system):
    assisted = ReviewItemFactory(system=own_system, assisted=True)
    decided = ReviewItemFactory(system=own_system, decided=True)

    outcome = review_items_assist(item_ids=[str(assisted.id), decided.id, uuid.uuid4(), "not-an-id"])

    assert outcome.item_ids == [assisted.id]
    assert AssistResult.objects.filter(item=assisted).count() == 1
    assert not AssistResult.objects.filter(item=decided).exists()


def test_a_suggestion_is_stored_and_copied_onto_the_item(own_system):
    item = ReviewItemFactory(
        system=own_system,
        severity=Severity.LOW,
        context={"category": "data_quality", "signal": "psi", "value": 0.12, "rule": "rate:data_quality"},
    )
    now = timezone.now()

    review_items_assist(item_ids=[item.id], now=now)

    result = AssistResult.objects.get(item=item)
    item.refresh_from_db()
    assert (item.suggested_decision, item.assist_confidence, item.risk_score) == (
        result.suggested_decision,
        result.confidence,
        result.risk_score,
    )
    assert item.assisted_at == now
    assert result.suggested_decision in ("approve", "reject", "escalate")
    assert 0 <= result.risk_score <= 100
    assert result.provider == "default"
    assert result.model_version == "rules"
    assert set(result.factors) >= {"severity", "signal_strength", "risk_class", "history", "rules"}
    assert result.factors["severity"]["weight"] == 0.35
    assert "psi 0.12 past warning" in result.summary
    assert set(result.sla_recommendation) == {"hours", "due_at", "reason"}
    assert result.sla_recommendation["hours"] == 72  # low severity, low risk: the configured SLA
    assert "Risk: risk" in result.reasoning
    assert result.fallback_reason == ""


def test_without_a_trained_model_the_rules_decide_and_the_reasoning_says_so(own_system):
    item = ReviewItemFactory(system=own_system)

    outcome = review_items_assist(item_ids=[item.id])

    result = AssistResult.objects.get(item=item)
    assert outcome.model_version == "rules"
    assert "no model trained yet" in result.reasoning
    assert "rules only" in result.reasoning
    assert result.confidence <= UNCALIBRATED_CONFIDENCE_CAP


def test_with_a_trained_model_its_calibrated_suggestion_is_used():
    backlog_seed(pending=0, history=400, seed=5)
    assert assist_model_train().model is not None
    routine = ReviewItem.objects.filter(context__seed_backlog="history", status=ReviewStatus.APPROVED).first()
    item = ReviewItemFactory(
        system=routine.system,
        severity=Severity.INFO,
        review_type=routine.review_type,
        rule=routine.rule,
        fingerprint=routine.fingerprint,
        context={k: v for k, v in routine.context.items() if k != "seed_backlog"},
    )

    outcome = review_items_assist(item_ids=[item.id])

    result = AssistResult.objects.get(item=item)
    assert outcome.model_version == "v1"
    assert result.model_version == "v1"
    assert result.reasoning.startswith("Model v1")
    assert set(result.factors["model"]["probabilities"]) == {"approve", "reject", "escalate"}
    assert result.confidence == pytest.approx(max(result.factors["model"]["probabilities"].values()), abs=1e-4)


def test_one_audit_entry_covers_a_run(own_system):
    items = ReviewItemFactory.create_batch(3, system=own_system)

    outcome = review_items_assist(item_ids=[item.id for item in items], actor="cli:test")

    entry = AuditLog.objects.get(action=AuditAction.REVIEW_ASSISTED)
    assert entry.actor == "cli:test"
    assert entry.data["assisted"] == 3
    assert entry.data["provider"] == "default"
    assert entry.data["model_version"] == "rules"
    assert entry.data["fallbacks"] == 0
    assert sum(entry.data["by_decision"].values()) == 3
    assert outcome.by_decision == entry.data["by_decision"]


def test_a_run_with_nothing_to_assist_writes_nothing():
    outcome = review_items_assist()

    assert outcome.assisted == 0
    assert not AuditLog.objects.filter(action=AuditAction.REVIEW_ASSISTED).exists()


def test_evidence_refs_name_the_alert_its_events_the_incident_and_the_queueing_audit_entry(own_system):
    events = [str(uuid.uuid4()) for _ in range(25)]
    alert = AlertFactory(system=own_system, evidence_event_ids=events)
    item = ReviewItemFactory(system=own_system, source_alert=alert)
    created = audit_record(action=AuditAction.REVIEW_CREATED, target=item)

    review_items_assist(item_ids=[item.id])

    refs = AssistResult.objects.get(item=item).evidence_refs
    assert refs[0] == f"alert:{alert.id}"
    assert refs[1:21] == [f"event:{event_id}" for event_id in events[:20]]  # the first 20 identify it
    assert refs[-1] == f"audit:{created.seq}"


def test_history_counts_only_human_decisions_never_policies_bulk_triage_or_shadow_proposals(own_system):
    fingerprint = "f" * 64
    for source, shadow, decision in [
        (DecisionSource.HUMAN, False, "escalate"),
        (DecisionSource.HUMAN, False, "approve"),
        (DecisionSource.AUTO_POLICY, False, "approve"),
        (DecisionSource.BULK, False, "approve"),
        (DecisionSource.AUTO_POLICY, True, "approve"),
    ]:
        DecisionFactory(
            item=ReviewItemFactory(system=own_system, fingerprint=fingerprint, decided=True),
            source=source,
            shadow=shadow,
            decision=decision,
        )

    [history] = history_for_items(
        [ItemKeys(fingerprint=fingerprint, rule="threshold:data_quality", system_id=own_system.id)]
    )

    assert history.fingerprint == DecisionCounts(approve=1, escalate=1)
    assert history.system == DecisionCounts(approve=1, escalate=1)
    assert history.rule == DecisionCounts(approve=1, escalate=1)


def test_the_number_of_queries_does_not_grow_with_the_number_of_items(own_system, foreign_system):
    few = ReviewItemFactory.create_batch(2, system=own_system)
    many = [ReviewItemFactory(system=s) for s in (own_system, foreign_system) for _ in range(20)]
    review_items_assist(item_ids=[])  # the config registry loads its snapshot once per process

    with CaptureQueriesContext(connection) as few_queries:
        review_items_assist(item_ids=[item.id for item in few])
    with CaptureQueriesContext(connection) as many_queries:
        review_items_assist(item_ids=[item.id for item in many])

    assert len(many_queries) == len(few_queries)


class DecidingProvider(DefaultProvider):
    """Stands in for a slow provider during which a reviewer decides one of the items."""

    def __init__(self, *, decide, **kwargs):
        super().__init__(**kwargs)
        self.decide = decide

    def suggest(self, inputs, *, now):
        self.decide()
        return super().suggest(inputs, now=now)


def test_an_item_decided_while_the_provider_was_thinking_gets_no_suggestion(own_system, reviewer, monkeypatch):
    decided_meanwhile, other = ReviewItemFactory.create_batch(2, system=own_system)
    provider = DecidingProvider(
        decide=lambda: review_item_decide(
            item_id=decided_meanwhile.id, decision="approve", rationale="ok", actor=reviewer
        )
    )
    monkeypatch.setattr(assist_service, "get_provider", lambda name=None: provider)

    outcome = review_items_assist(item_ids=[decided_meanwhile.id, other.id])

    assert outcome.item_ids == [other.id]
    decided_meanwhile.refresh_from_db()
    assert decided_meanwhile.status == ReviewStatus.APPROVED
    assert decided_meanwhile.suggested_decision == ""
    assert not AssistResult.objects.filter(item=decided_meanwhile).exists()


def test_an_item_assisted_by_a_concurrent_run_meanwhile_is_not_written_twice(own_system, monkeypatch):
    item = ReviewItemFactory(system=own_system)
    provider = DecidingProvider(decide=lambda: None)
    concurrent = {"ran": False}

    def concurrent_run():
        if not concurrent["ran"]:
            concurrent["ran"] = True
            review_items_assist(item_ids=[item.id], provider="default")

    provider.decide = concurrent_run
    real_get_provider = assist_service.get_provider
    monkeypatch.setattr(
        assist_service, "get_provider", lambda name=None: provider if name is None else real_get_provider(name)
    )

    outcome = review_items_assist(item_ids=[item.id])

    assert outcome.assisted == 0
    assert AssistResult.objects.filter(item=item).count() == 1


def test_a_high_risk_critical_item_gets_a_shortened_sla_and_an_escalation():
    system = AISystemFactory(risk_class=RiskClass.PROHIBITED)
    item = ReviewItemFactory(
        system=system,
        severity=Severity.CRITICAL,
        review_type=ReviewType.ALERT_TRIAGE,
        context={"category": "data_quality", "signal": "psi", "value": 0.6, "critical": 0.25, "direction": "above"},
    )

    review_items_assist(item_ids=[item.id])

    result = AssistResult.objects.get(item=item)
    assert result.suggested_decision == "escalate"
    assert result.risk_score >= 75
    assert result.sla_recommendation["hours"] == 0.25  # critical 1 h, cut to a quarter
    assert "cut to 0.25×" in result.reasoning


def test_an_unknown_provider_name_is_refused(own_system):
    ReviewItemFactory(system=own_system)

    with pytest.raises(UnknownProvider):
        review_items_assist(provider="crystal-ball")

    assert not AssistResult.objects.exists()
