"""The HITL backlog KPI and the human-oversight capability, measured from the review queue."""

from __future__ import annotations

import pytest

from governance.choices import Severity
from governance.services.kpis import kpi_report
from hitl.models import DecisionSource
from tests.hitl.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db


def kpi(code: str) -> dict:
    return next(item for item in kpi_report()["kpis"] if item["code"] == code)


def capability(code: str) -> dict:
    return next(item for item in kpi_report()["capabilities"]["items"] if item["code"] == code)


def test_the_backlog_kpi_counts_pending_items_and_is_met_below_fifty():
    ReviewItemFactory.create_batch(49)
    ReviewItemFactory.create_batch(3, decided=True)

    item = kpi("hitl_backlog")

    assert (item["value"], item["display"], item["status"]) == (49, "49", "met")
    assert "0 past SLA" in item["detail"]


def test_the_backlog_kpi_is_not_met_at_fifty_pending():
    ReviewItemFactory.create_batch(50)

    assert kpi("hitl_backlog")["status"] == "not_met"


def test_human_oversight_is_enforced_when_people_decide_and_policies_only_touch_low_risk_items():
    ReviewItemFactory(decided=True)
    ReviewItemFactory(decided=True, severity=Severity.LOW, decision_source=DecisionSource.AUTO_POLICY)

    item = capability("human_oversight")

    assert item["status"] == "enforced"
    assert "1 human and 1 policy decisions" in item["evidence"]


def test_human_oversight_is_not_enforced_without_any_human_decision():
    ReviewItemFactory()

    assert capability("human_oversight")["status"] == "not_enforced"


def test_human_oversight_is_not_enforced_once_a_policy_decided_a_high_severity_item():
    ReviewItemFactory(decided=True)
    ReviewItemFactory(decided=True, severity=Severity.HIGH, decision_source=DecisionSource.AUTO_POLICY)

    item = capability("human_oversight")

    assert item["status"] == "not_enforced"
    assert "high/critical" in item["evidence"]
