"""The incident knowledge graph: links created on open, their refresh, the graph read and related incidents."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance.choices import AuditAction, Role
from governance.services.audit import audit_record
from hitl.models import DecisionSource, ReviewDecision, ReviewStatus
from incidents.models import Incident, IncidentEvent, IncidentEventKind, IncidentLink, LinkRelation, LinkTarget
from incidents.services.graph import (
    LINK_CHUNK_SIZE,
    SIMILAR_LIMIT,
    incident_graph,
    incident_links_on_open,
    incident_links_refresh,
    related_incidents,
)
from incidents.services.intake import incidents_open_for_alerts, incidents_open_or_join_for_reviews
from oversight.models import AlertStatus, DetectionRule
from tests.factories import AISystemFactory
from tests.hitl.factories import AutoApprovalPolicyFactory, ReviewItemFactory
from tests.incidents.factories import IncidentFactory
from tests.oversight.factories import AlertFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


def links_of(incident, relation=None):
    rows = IncidentLink.objects.filter(incident=incident)
    if relation:
        rows = rows.filter(relation=relation)
    return {(row.target_type, row.target_id): row for row in rows}


def past_incident(system, *, days_ago: float, rule: str | None = "threshold:data_quality", **kwargs):
    """A resolved incident opened ``days_ago`` before NOW, from a (resolved) alert on ``rule``."""
    opened_at = NOW - timedelta(days=days_ago)
    if rule is not None:
        kwargs["source_alert"] = AlertFactory(
            system=system, rule=DetectionRule.objects.get(name=rule), status=AlertStatus.RESOLVED, resolved_at=NOW
        )
    return IncidentFactory(
        system=system, opened_at=opened_at, status="resolved", resolved_at=opened_at + timedelta(hours=1), **kwargs
    )


# --- links on open ----------------------------------------------------------------------------------
def test_an_incident_opened_from_an_alert_links_its_system_alert_and_audit_entry(own_system):
    alert = AlertFactory(system=own_system, rule=DetectionRule.objects.get(name="threshold:fairness"))
    [incident] = incidents_open_for_alerts(alerts=[alert], now=NOW)

    incident_links_on_open(incidents=[incident])

    system_link = links_of(incident, LinkRelation.AFFECTS)[(LinkTarget.SYSTEM, str(own_system.pk))]
    assert system_link.label == "AI system fraud-scorer"
    alert_link = links_of(incident, LinkRelation.TRIGGERED_BY)[(LinkTarget.ALERT, str(alert.pk))]
    assert alert_link.label == "alert threshold:fairness on fraud-scorer"
    assert alert_link.data["severity"] == alert.severity
    [audit_link] = links_of(incident, LinkRelation.RECORDED_IN).values()
    assert audit_link.target_type == LinkTarget.AUDIT
    assert audit_link.data["action"] == AuditAction.INCIDENT_OPENED
    assert audit_link.label.startswith(f"audit #{audit_link.data['seq']} incident.opened by ")


def test_an_alert_attached_later_is_linked_by_a_refresh(own_system):
    first = AlertFactory(system=own_system)
    [incident] = incidents_open_for_alerts(alerts=[first], now=NOW)
    incident_links_on_open(incidents=[incident])
    Incident.objects.filter(pk=incident.pk).update(source_alert=None)  # only the timeline names it now
    first.status = AlertStatus.RESOLVED
    first.save()
    again = AlertFactory(system=own_system)  # same rule, system and signal: same fingerprint, re-fired
    incidents_open_for_alerts(alerts=[again], now=NOW)
    assert IncidentEvent.objects.filter(incident=incident, kind=IncidentEventKind.ALERT_ATTACHED).exists()

    incident_links_refresh(incident_id=incident.pk)

    triggered = links_of(incident, LinkRelation.TRIGGERED_BY)
    assert set(triggered) == {(LinkTarget.ALERT, str(first.pk)), (LinkTarget.ALERT, str(again.pk))}


def test_an_escalated_review_is_linked_with_the_policy_that_decided_it(own_system, lead):
    policy = AutoApprovalPolicyFactory(policy_name="routine-fairness", team=own_system.team)
    item = ReviewItemFactory(
        system=own_system,
        title="Triage threshold:fairness: dp_gap",
        status=ReviewStatus.ESCALATED,
        decision=ReviewDecision.ESCALATE,
        decision_source=DecisionSource.AUTO_POLICY,
        decided_by_policy=policy,
        decided_at=NOW,
    )
    incident = incidents_open_or_join_for_reviews(items=[item], actor=lead, now=NOW)[item.id]

    incident_links_on_open(incidents=[incident])

    review_link = links_of(incident, LinkRelation.ESCALATED_FROM)[(LinkTarget.REVIEW, str(item.pk))]
    assert review_link.label == "review Triage threshold:fairness: dp_gap"
    policy_link = links_of(incident, LinkRelation.GOVERNED_BY)[(LinkTarget.POLICY, str(policy.pk))]
    assert policy_link.label == "auto-approval policy routine-fairness"


def test_a_review_joined_into_an_incident_is_linked_through_its_escalated_incident(own_system):
    incident = IncidentFactory(system=own_system)
    item = ReviewItemFactory(
        system=own_system, status=ReviewStatus.ESCALATED, decided_at=NOW, escalated_incident=incident
    )

    incident_links_on_open(incidents=[incident])

    assert (LinkTarget.REVIEW, str(item.pk)) in links_of(incident, LinkRelation.ESCALATED_FROM)
    assert not links_of(incident, LinkRelation.GOVERNED_BY)  # a human decided it: no policy involved


def test_a_past_incident_with_the_same_fingerprint_is_a_recurrence_whatever_its_age(own_system):
    old = past_incident(own_system, days_ago=400, rule=None, fingerprint="f" * 64)
    incident = IncidentFactory(system=AISystemFactory(team=own_system.team), fingerprint="f" * 64)

    incident_links_on_open(incidents=[incident])

    recurrence = links_of(incident, LinkRelation.SAME_FINGERPRINT)[(LinkTarget.INCIDENT, str(old.pk))]
    assert recurrence.label == f"incident {old.title}"
    assert not links_of(incident, LinkRelation.SIMILAR_TO)


def test_incidents_of_the_same_rule_or_system_in_the_last_90_days_are_similar(own_system):
    elsewhere = AISystemFactory(team=own_system.team)
    same_system = past_incident(own_system, days_ago=10, rule="threshold:security")
    same_rule_elsewhere = past_incident(elsewhere, days_ago=89)
    too_old = past_incident(own_system, days_ago=91)
    unrelated = past_incident(elsewhere, days_ago=5, rule="threshold:security")
    alert = AlertFactory(system=own_system)
    incident = IncidentFactory(system=own_system, source_alert=alert)
    newer = IncidentFactory(system=own_system, opened_at=NOW + timedelta(hours=1))

    incident_links_on_open(incidents=[incident])

    similar = {target_id for _, target_id in links_of(incident, LinkRelation.SIMILAR_TO)}
    assert similar == {str(same_system.pk), str(same_rule_elsewhere.pk)}
    assert not {str(too_old.pk), str(unrelated.pk), str(newer.pk)} & similar


def test_incidents_linked_in_one_call_each_see_only_what_opened_before_them(own_system):
    oldest = past_incident(own_system, days_ago=30)
    middle = past_incident(own_system, days_ago=5)
    newest = IncidentFactory(system=own_system, source_alert=AlertFactory(system=own_system))

    incident_links_on_open(incidents=[newest, middle, oldest])

    def similar(incident):
        return {target_id for _, target_id in links_of(incident, LinkRelation.SIMILAR_TO)}

    assert similar(newest) == {str(middle.pk), str(oldest.pk)}
    assert similar(middle) == {str(oldest.pk)}
    assert similar(oldest) == set()


def test_past_incidents_are_capped_at_ten_recurrences_first_then_newest(own_system):
    recurrence = past_incident(own_system, days_ago=60, rule=None, fingerprint="r" * 64)
    similar = [past_incident(own_system, days_ago=day) for day in range(1, 15)]
    incident = IncidentFactory(system=own_system, fingerprint="r" * 64)

    incident_links_on_open(incidents=[incident])

    past = IncidentLink.objects.filter(incident=incident, target_type=LinkTarget.INCIDENT)
    assert past.count() == SIMILAR_LIMIT
    assert past.get(relation=LinkRelation.SAME_FINGERPRINT).target_id == str(recurrence.pk)
    newest_nine = {str(i.pk) for i in similar[:9]}
    assert set(past.filter(relation=LinkRelation.SIMILAR_TO).values_list("target_id", flat=True)) == newest_nine


def test_linking_twice_adds_nothing_the_second_time(own_system):
    past_incident(own_system, days_ago=3)
    alert = AlertFactory(system=own_system)
    incident = IncidentFactory(system=own_system, source_alert=alert)
    audit_record(action=AuditAction.INCIDENT_OPENED, target=incident)

    first = incident_links_on_open(incidents=[incident])
    rows = IncidentLink.objects.count()
    second = incident_links_on_open(incidents=[incident, incident])

    assert first == 4  # system, alert, audit entry, similar incident
    assert second == 0
    assert IncidentLink.objects.count() == rows


def _opened_batch(count: int) -> list[Incident]:
    incidents = []
    for _ in range(count):
        system = AISystemFactory()
        earlier = past_incident(system, days_ago=2, rule=None)  # a recurrence: no rule shared across the batch
        incident = IncidentFactory(
            system=system, source_alert=AlertFactory(system=system), fingerprint=earlier.fingerprint
        )
        audit_record(action=AuditAction.INCIDENT_OPENED, target=incident)
        incidents.append(incident)
    return incidents


def test_linking_costs_the_same_queries_for_one_incident_or_fifty():
    one, fifty = _opened_batch(1), _opened_batch(50)

    with CaptureQueriesContext(connection) as for_one:
        incident_links_on_open(incidents=one)
    with CaptureQueriesContext(connection) as for_fifty:
        added = incident_links_on_open(incidents=fifty)

    def split(context):
        inserts = [q for q in context.captured_queries if q["sql"].startswith(("INSERT INTO", "INSERT OR IGNORE INTO"))]
        return len(context.captured_queries) - len(inserts), len(inserts)

    assert added == 50 * 4
    reads_one, inserts_one = split(for_one)
    reads_fifty, inserts_fifty = split(for_fifty)
    assert reads_fifty == reads_one
    assert inserts_one == 1
    per_insert = min(LINK_CHUNK_SIZE, connection.ops.bulk_batch_size(IncidentLink._meta.concrete_fields, [0] * added))
    assert inserts_fifty == math.ceil(added / per_insert)  # one INSERT per ≤ 1,000 rows (fewer fit on SQLite)


# --- the graph --------------------------------------------------------------------------------------
@pytest.fixture
def chain(own_system):
    """c is a recurrence of b, b is similar to a (all on the team's system): a <- b <- c."""
    a = past_incident(own_system, days_ago=20)
    b = past_incident(own_system, days_ago=10, fingerprint="b" * 64)
    incident_links_on_open(incidents=[b])
    c = IncidentFactory(system=AISystemFactory(team=own_system.team), fingerprint="b" * 64)
    incident_links_on_open(incidents=[c])
    return a, b, c


def node(incident) -> str:
    return f"incident:{incident.pk}"


def test_the_graph_starts_with_the_incident_and_shows_its_links_as_edges(own_system, lead):
    alert = AlertFactory(system=own_system)
    [incident] = incidents_open_for_alerts(alerts=[alert], now=NOW)
    incident_links_on_open(incidents=[incident])

    graph = incident_graph(incident=incident, user=lead)

    assert graph["nodes"][0]["id"] == node(incident)
    assert graph["nodes"][0]["type"] == "incident"
    assert graph["nodes"][0]["label"] == incident.title
    by_id = {n["id"]: n for n in graph["nodes"]}
    assert by_id[f"system:{own_system.pk}"]["label"] == "AI system fraud-scorer"
    assert by_id[f"alert:{alert.pk}"]["type"] == "alert"
    edges = {(e["source"], e["target"], e["relation"]) for e in graph["edges"]}
    assert (node(incident), f"system:{own_system.pk}", "affects") in edges
    assert (node(incident), f"alert:{alert.pk}", "triggered_by") in edges
    assert any(e["relation"] == "recorded_in" for e in graph["edges"])  # leads may read the audit log
    assert all(e["source"] in by_id and e["target"] in by_id for e in graph["edges"])


def test_audit_entries_are_left_out_for_those_who_may_not_read_the_audit_log(own_system, viewer):
    [incident] = incidents_open_for_alerts(alerts=[AlertFactory(system=own_system)], now=NOW)
    incident_links_on_open(incidents=[incident])

    graph = incident_graph(incident=incident, user=viewer)

    assert {n["type"] for n in graph["nodes"]} == {"incident", "system", "alert"}
    assert all(e["relation"] != "recorded_in" for e in graph["edges"])


def test_depth_one_shows_direct_neighbours_in_both_directions(chain, lead):
    a, b, c = chain

    graph = incident_graph(incident=b, user=lead)

    incident_nodes = {n["id"] for n in graph["nodes"] if n["type"] == "incident"}
    assert incident_nodes == {node(a), node(b), node(c)}
    edges = {(e["source"], e["target"], e["relation"]) for e in graph["edges"]}
    assert (node(b), node(a), "similar_to") in edges
    assert (node(c), node(b), "same_fingerprint") in edges


def test_depth_two_follows_incident_links_one_more_hop(chain, lead):
    a, b, c = chain

    shallow = incident_graph(incident=c, user=lead, depth=1)
    deep = incident_graph(incident=c, user=lead, depth=2)

    assert {n["id"] for n in shallow["nodes"] if n["type"] == "incident"} == {node(c), node(b)}
    assert {n["id"] for n in deep["nodes"] if n["type"] == "incident"} == {node(c), node(b), node(a)}
    assert (node(b), node(a), "similar_to") in {(e["source"], e["target"], e["relation"]) for e in deep["edges"]}


def test_incidents_of_other_teams_are_left_out_with_their_edges(own_system, foreign_system, lead, admin_user):
    foreign = past_incident(foreign_system, days_ago=5)  # same rule, other team
    incident = IncidentFactory(system=own_system, source_alert=AlertFactory(system=own_system))
    incident_links_on_open(incidents=[incident])
    assert IncidentLink.objects.filter(incident=incident, target_id=str(foreign.pk)).exists()

    for_lead = incident_graph(incident=incident, user=lead, depth=2)
    for_admin = incident_graph(incident=incident, user=admin_user, depth=2)

    assert node(foreign) not in {n["id"] for n in for_lead["nodes"]}
    assert all(node(foreign) not in (e["source"], e["target"]) for e in for_lead["edges"])
    assert node(foreign) in {n["id"] for n in for_admin["nodes"]}


def test_the_graph_of_an_incident_outside_the_callers_teams_is_refused(foreign_system, lead):
    with pytest.raises(PermissionDenied):
        incident_graph(incident=IncidentFactory(system=foreign_system), user=lead)


def test_related_incidents_are_linked_either_way_scoped_and_newest_first(chain, foreign_system, make_user, team):
    a, b, c = chain
    foreign = past_incident(foreign_system, days_ago=1)
    IncidentLink.objects.create(
        incident=b, target_type=LinkTarget.INCIDENT, target_id=str(foreign.pk), relation=LinkRelation.SIMILAR_TO
    )
    member = make_user(Role.SECURITY, teams=[team])

    related = list(related_incidents(incident=b, user=member))

    assert related == [c, a]
    assert list(related_incidents(incident=b, user=member, limit=1)) == [c]


def test_links_are_made_when_time_moves_on_between_open_and_refresh(own_system):
    incident = IncidentFactory(system=own_system)
    incident_links_on_open(incidents=[incident])
    with time_machine.travel(NOW + timedelta(hours=2), tick=False):
        audit_record(action=AuditAction.INCIDENT_ACKNOWLEDGED, target=incident)
        added = incident_links_refresh(incident_id=incident.pk)

    assert added == 1
    [entry] = links_of(incident, LinkRelation.RECORDED_IN).values()
    assert entry.data["at"] == (NOW + timedelta(hours=2)).isoformat()
