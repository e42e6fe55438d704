"""Backlog health: pending, oldest age, SLA-breached, inflow vs outflow over 24 h."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from governance.choices import Role, Severity
from hitl.models import ReviewItem
from hitl.selectors import backlog_health, review_items_for_user
from hitl.services.decisions import review_items_decide
from tests.hitl.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)


def test_health_counts_pending_oldest_and_breached_items():
    with time_machine.travel(NOW - timedelta(hours=30), tick=False):
        oldest = ReviewItemFactory(severity=Severity.HIGH, sla_due_at=NOW - timedelta(hours=2))
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        ReviewItemFactory.create_batch(2, severity=Severity.LOW)

    health = backlog_health(queryset=ReviewItem.objects.all(), now=NOW)

    assert health.pending == 3
    assert health.oldest_pending_at == oldest.created_at
    assert health.oldest_age_seconds == pytest.approx(30 * 3600)
    assert health.sla_breached == 1
    assert health.pending_by_severity["low"] == 2
    assert health.pending_by_severity["high"] == 1


def test_inflow_and_outflow_are_counted_per_hour_over_the_last_24_hours():
    with time_machine.travel(NOW - timedelta(hours=30), tick=False):
        ReviewItemFactory()  # outside the window
    with time_machine.travel(NOW - timedelta(hours=3), tick=False):
        items = ReviewItemFactory.create_batch(3)
    review_items_decide(
        decisions={items[0].id: "approve", items[1].id: "reject"},
        rationale="x",
        actor=None,
        source="bulk",
        now=NOW - timedelta(minutes=10),
    )

    health = backlog_health(queryset=ReviewItem.objects.all(), now=NOW)

    assert health.inflow_24h == 3
    assert health.outflow_24h == 2
    assert health.net_flow_24h == 1
    assert len(health.hourly) == 24
    assert health.hourly[-1] == {"hour": NOW.replace(minute=0), "inflow": 0, "outflow": 2}
    assert health.hourly[-4]["inflow"] == 3
    assert health.decided_24h_by_source["bulk"] == 2


def test_an_empty_queue_is_healthy_and_has_no_oldest_item():
    health = backlog_health(queryset=ReviewItem.objects.none(), now=NOW)

    assert (health.pending, health.oldest_pending_at, health.oldest_age_seconds, health.sla_breached) == (
        0,
        None,
        None,
        0,
    )


def test_health_is_scoped_to_the_callers_teams(make_user, team, own_system, foreign_system):
    ReviewItemFactory(system=own_system)
    ReviewItemFactory.create_batch(2, system=foreign_system)
    reviewer = make_user(Role.REVIEWER, teams=[team])

    health = backlog_health(queryset=review_items_for_user(user=reviewer))

    assert health.pending == 1
