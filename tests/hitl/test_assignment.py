"""Assigning review items: to people of the item's team with a deciding role, audited, in API and admin."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.choices import AuditAction, Role
from governance.models import AuditLog
from hitl.services.queue import AssigneeNotAllowed, review_item_assign
from tests.hitl.factories import ReviewItemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def test_assigning_writes_the_assignee_and_an_audit_entry(own_system, reviewer, lead):
    item = ReviewItemFactory(system=own_system)

    assigned = review_item_assign(item_id=item.id, assignee=reviewer, actor=lead)

    assert assigned.assignee == reviewer
    entry = AuditLog.objects.get(action=AuditAction.REVIEW_ASSIGNED)
    assert (entry.actor, entry.object_id, entry.data["to_username"]) == ("lena", str(item.id), "rita")


def test_assigning_the_same_person_again_writes_nothing(own_system, reviewer, lead):
    item = ReviewItemFactory(system=own_system, assignee=reviewer)

    review_item_assign(item_id=item.id, assignee=reviewer, actor=lead)

    assert not AuditLog.objects.filter(action=AuditAction.REVIEW_ASSIGNED).exists()


@pytest.mark.parametrize("who", ["viewer_of_team", "reviewer_of_other_team"])
def test_only_deciders_of_the_items_team_can_be_assigned(own_system, make_user, team, other_team, lead, who):
    person = (
        make_user(Role.VIEWER, teams=[team])
        if who == "viewer_of_team"
        else make_user(Role.REVIEWER, teams=[other_team])
    )
    item = ReviewItemFactory(system=own_system)

    with pytest.raises(AssigneeNotAllowed):
        review_item_assign(item_id=item.id, assignee=person, actor=lead)

    item.refresh_from_db()
    assert item.assignee is None


def test_the_api_assigns_and_unassigns(client_for, own_system, reviewer, lead):
    item = ReviewItemFactory(system=own_system)
    url = f"/api/v1/reviews/{item.id}/assign"

    assigned = client_for(lead).post(url, {"assignee": str(reviewer.id)}, format="json")
    unassigned = client_for(lead).post(url, {"assignee": None}, format="json")

    assert assigned.status_code == 200
    assert assigned.json()["assignee"] == str(reviewer.id)
    assert unassigned.status_code == 200
    assert unassigned.json()["assignee"] is None
    assert AuditLog.objects.filter(action=AuditAction.REVIEW_ASSIGNED).count() == 2


def test_the_api_names_the_assignee_field_when_the_person_cannot_be_assigned(client_for, own_system, lead, viewer):
    item = ReviewItemFactory(system=own_system)

    response = client_for(lead).post(f"/api/v1/reviews/{item.id}/assign", {"assignee": str(viewer.id)}, format="json")

    assert response.status_code == 400
    assert "assignee" in response.json()["error"]["fields"]


def test_viewers_cannot_assign_and_other_teams_items_are_not_found(
    client_for, own_system, foreign_system, viewer, lead
):
    mine = ReviewItemFactory(system=own_system)
    theirs = ReviewItemFactory(system=foreign_system)

    assert (
        client_for(viewer).post(f"/api/v1/reviews/{mine.id}/assign", {"assignee": None}, format="json").status_code
        == 403
    )
    assert (
        client_for(lead).post(f"/api/v1/reviews/{theirs.id}/assign", {"assignee": None}, format="json").status_code
        == 404
    )


def test_the_admin_change_page_assigns_through_the_audited_service(client, own_system, reviewer, lead):
    item = ReviewItemFactory(system=own_system)
    client.force_login(lead)

    response = client.post(
        reverse("admin:hitl_reviewitem_change", args=[item.pk]),
        {"assignee": str(reviewer.pk), "decisions-TOTAL_FORMS": "0", "decisions-INITIAL_FORMS": "0"},
    )

    assert response.status_code == 302
    item.refresh_from_db()
    assert item.assignee == reviewer
    assert AuditLog.objects.filter(action=AuditAction.REVIEW_ASSIGNED, actor="lena").exists()
