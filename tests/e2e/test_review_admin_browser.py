"""Triage in the review queue's admin, in real headless Chromium: shift-click a range of items,
bulk-approve them with a rationale, and watch the backlog panel go down."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.choices import AuditAction, Role
from governance.models import AuditLog
from hitl.models import DecisionSource, ReviewItem, ReviewStatus
from tests.e2e.browser import log_in, submit
from tests.factories import AISystemFactory, TeamFactory, UserFactory
from tests.hitl.factories import ReviewItemFactory

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_a_reviewer_shift_selects_five_items_and_bulk_approves_them_with_a_rationale(live_server, browser_page):
    team = TeamFactory(name="Fraud ML", slug="fraud-ml")
    UserFactory(username="rita", roles=[Role.REVIEWER], teams=[team])
    system = AISystemFactory(name="fraud-scorer", team=team)
    now = timezone.now()
    # Due one hour apart: the changelist (most urgent SLA first) lists them in this order.
    items = [ReviewItemFactory(system=system, sla_due_at=now + timedelta(hours=1 + n)) for n in range(7)]
    page = browser_page
    log_in(page, live_server, "rita")

    page.goto(f"{live_server.url}{reverse('admin:hitl_reviewitem_changelist')}")
    pending = page.locator('[data-health="pending"]')
    assert pending.inner_text() == "7"
    checkboxes = page.locator(".action-select")
    checkboxes.nth(0).click()
    checkboxes.nth(4).click(modifiers=["Shift"])  # the admin's actions.js selects the whole range
    assert page.locator(".action-select:checked").count() == 5

    page.select_option("select[name=action]", "approve_selected")
    submit(page, "button[name=index]")

    assert page.locator("#triage-items tbody tr").count() == 5
    page.fill("#id_rationale", "Seasonal PSI drift, confirmed with the model owners")
    submit(page, "#triage-confirm")

    page.locator(".messagelist .success").wait_for()
    assert page.locator(".messagelist .success").inner_text() == "Decided 5 review item(s): 5 approved."
    assert page.locator('[data-health="pending"]').inner_text() == "2"
    assert page.locator('[data-health="outflow"]').inner_text() == "5"
    chosen, rest = [item.pk for item in items[:5]], [item.pk for item in items[5:]]
    approved = ReviewItem.objects.filter(pk__in=chosen, status=ReviewStatus.APPROVED)
    assert approved.count() == 5
    assert set(approved.values_list("decision_source", "rationale")) == {
        (DecisionSource.BULK, "Seasonal PSI drift, confirmed with the model owners")
    }
    assert ReviewItem.objects.filter(pk__in=rest, status=ReviewStatus.PENDING).count() == 2
    assert AuditLog.objects.filter(action=AuditAction.REVIEW_DECIDED, actor="rita").count() == 5
    assert page.js_errors == []


def test_a_bulk_approval_without_a_rationale_is_refused_on_the_page(live_server, browser_page):
    team = TeamFactory(name="Fraud ML", slug="fraud-ml")
    UserFactory(username="rita", roles=[Role.REVIEWER], teams=[team])
    item = ReviewItemFactory(system=AISystemFactory(team=team))
    page = browser_page
    log_in(page, live_server, "rita")

    page.goto(f"{live_server.url}{reverse('admin:hitl_reviewitem_changelist')}")
    page.locator(".action-select").first.click()
    page.select_option("select[name=action]", "approve_selected")
    submit(page, "button[name=index]")
    submit(page, "#triage-confirm")

    assert "A rationale is required" in page.locator(".field-rationale .errorlist").inner_text()
    assert ReviewItem.objects.get(pk=item.pk).status == ReviewStatus.PENDING
    assert page.js_errors == []
