"""The thin Celery tasks of the review queue and their beat entries."""

from __future__ import annotations

import pytest

from governance.choices import Severity
from hitl import tasks
from hitl.models import AssistResult, ReviewItem, ReviewStatus
from tasks.schedules import SCHEDULES
from tests.hitl.factories import AutoApprovalPolicyFactory, ReviewItemFactory

pytestmark = pytest.mark.django_db


def test_every_hitl_task_is_on_beat_on_the_assist_queue():
    hitl_specs = {spec.task: spec for spec in SCHEDULES if spec.task.startswith("hitl.")}

    assert set(hitl_specs) == {"hitl.assist_pending", "hitl.apply_auto_approval", "hitl.train_assist_model"}
    assert {spec.queue for spec in hitl_specs.values()} == {"assist"}
    assert hitl_specs["hitl.assist_pending"].every_seconds == 60
    assert hitl_specs["hitl.apply_auto_approval"].every_seconds == 60


def test_assist_pending_suggests_for_every_unassisted_pending_item():
    items = ReviewItemFactory.create_batch(3, severity=Severity.LOW)
    ReviewItemFactory(decided=True)

    result = tasks.assist_pending.delay().get()

    assert result["assisted"] == 3
    assert AssistResult.objects.filter(item__in=items).count() == 3
    assert not ReviewItem.objects.filter(status=ReviewStatus.PENDING, assisted_at__isnull=True).exists()


def test_assist_pending_twice_assists_nothing_new():
    ReviewItemFactory.create_batch(2)
    tasks.assist_pending.delay()

    assert tasks.assist_pending.delay().get()["assisted"] == 0
    assert AssistResult.objects.count() == 2


def test_assist_items_runs_for_the_given_items_only():
    chosen, other = ReviewItemFactory.create_batch(2)

    result = tasks.assist_items.delay([str(chosen.id)]).get()

    assert result["assisted"] == 1
    assert AssistResult.objects.get().item == chosen
    assert not AssistResult.objects.filter(item=other).exists()


def test_apply_auto_approval_decides_with_enabled_policies_and_is_idempotent():
    AutoApprovalPolicyFactory(enabled=True)
    item = ReviewItemFactory(assisted=True, severity=Severity.LOW)
    high = ReviewItemFactory(assisted=True, severity=Severity.HIGH)

    first = tasks.apply_auto_approval.delay().get()
    second = tasks.apply_auto_approval.delay().get()

    assert (first["decided"], second["decided"]) == (1, 0)
    item.refresh_from_db()
    high.refresh_from_db()
    assert item.status == ReviewStatus.APPROVED
    assert high.status == ReviewStatus.PENDING


def test_train_assist_model_says_why_when_there_is_too_little_history():
    result = tasks.train_assist_model.delay().get()

    assert result["version"] is None
    assert "100" in result["reason"]
