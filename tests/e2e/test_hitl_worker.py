"""The review queue's beat tasks on a real Celery worker (PostgreSQL + Redis): new items get a
suggestion and the enabled policies decide what they may, with nothing run in the test process."""

from __future__ import annotations

import pytest

from governance.choices import Severity
from hitl import tasks
from hitl.models import AssistResult, ReviewItem, ReviewStatus
from tests.e2e.conftest import private_worker, routed_to, wait_for
from tests.hitl.factories import AutoApprovalPolicyFactory, ReviewItemFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.xdist_group("worker")]


@pytest.fixture
def assist_worker(transactional_db):
    with private_worker(concurrency=2) as worker:
        yield worker


def test_the_beat_tasks_on_a_worker_assist_new_items_and_apply_enabled_policies(assist_worker):
    items = ReviewItemFactory.create_batch(5, severity=Severity.LOW)
    high = ReviewItemFactory(severity=Severity.HIGH)
    AutoApprovalPolicyFactory(enabled=True)
    # Hand the worker a confident, low-risk approve suggestion for one low item, as a trained model would.
    confident = ReviewItemFactory(assisted=True, severity=Severity.LOW)

    with routed_to(assist_worker.queue):
        tasks.assist_pending.delay()
        tasks.assist_pending.delay()  # an overlapping tick: single-flight, or nothing left to assist
        tasks.apply_auto_approval.delay()

    wait_for(
        lambda: AssistResult.objects.filter(item__in=[*items, high]).count() == 6,
        timeout=60,
        message=f"items not assisted:\n{assist_worker.log()}",
    )
    wait_for(
        lambda: ReviewItem.objects.get(pk=confident.pk).status == ReviewStatus.APPROVED,
        timeout=60,
        message=f"the policy did not decide:\n{assist_worker.log()}",
    )
    assert AssistResult.objects.filter(item__in=[*items, high]).count() == 6  # the second tick added none
    assert ReviewItem.objects.get(pk=high.pk).status == ReviewStatus.PENDING
