"""manage.py triage_backlog: the plan's backlog scenario (546 → < 50) run from the command line."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from governance.choices import AuditAction, Role
from governance.models import AuditLog
from hitl.models import AutoApprovalPolicy, DecisionSource, ReviewItem, ReviewStatus
from hitl.services.automation import ROUTINE_POLICY_NAME
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def seeded():
    output = run("seed_backlog", "--pending", "546", "--history", "1500")
    return output


def test_seeding_creates_the_routine_policy_disabled(seeded):
    policy = AutoApprovalPolicy.objects.get(policy_name=ROUTINE_POLICY_NAME)

    assert not policy.enabled
    assert "created, disabled" in seeded
    assert AuditLog.objects.filter(action=AuditAction.AUTO_APPROVAL_POLICY_CREATED).count() == 1


def test_the_scenario_brings_the_backlog_below_50_and_leaves_high_and_critical_to_people(seeded):
    UserFactory(username="ops-admin", roles=[Role.ADMIN])

    output = run("triage_backlog", "--as", "ops-admin", "--enable-policy", ROUTINE_POLICY_NAME, "--clear-low-risk")

    pending = ReviewItem.objects.filter(status=ReviewStatus.PENDING)
    assert pending.count() < 50
    assert pending.filter(severity__in=["high", "critical"]).count() == 38
    assert not ReviewItem.objects.filter(
        severity__in=["high", "critical"], decision_source=DecisionSource.AUTO_POLICY
    ).exists()
    by_policy = ReviewItem.objects.filter(decision_source=DecisionSource.AUTO_POLICY)
    assert by_policy.exists()
    audited = AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED, actor=f"auto_policy:{ROUTINE_POLICY_NAME}")
    assert audited.count() == by_policy.count()
    assert "below 50: target met" in output
    assert AuditLog.objects.filter(action=AuditAction.AUTO_APPROVAL_POLICY_ENABLED, actor="ops-admin").exists()


def test_only_an_admin_may_enable_a_policy_from_the_command(seeded):
    UserFactory(username="rita", roles=[Role.REVIEWER])

    with pytest.raises(CommandError, match="not an admin"):
        run("triage_backlog", "--as", "rita", "--enable-policy", ROUTINE_POLICY_NAME)

    assert not AutoApprovalPolicy.objects.get(policy_name=ROUTINE_POLICY_NAME).enabled


def test_an_unknown_policy_or_user_is_named(seeded):
    UserFactory(username="ops-admin", roles=[Role.ADMIN])

    with pytest.raises(CommandError, match="'Nope'"):
        run("triage_backlog", "--as", "ops-admin", "--enable-policy", "Nope")
    with pytest.raises(CommandError, match="no active user 'ghost'"):
        run("triage_backlog", "--as", "ghost")
