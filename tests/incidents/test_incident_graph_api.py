"""``GET /api/v1/incidents/{id}/graph?depth=1|2``: the incident's knowledge graph as nodes and edges,
scoped to the caller's teams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from governance.choices import Role
from incidents.models import IncidentLink, LinkRelation, LinkTarget
from incidents.services.graph import incident_links_on_open
from oversight.models import DetectionRule
from tests.incidents.factories import IncidentFactory
from tests.oversight.factories import AlertFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/incidents"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def reviewer(make_user, team):
    return make_user(Role.REVIEWER, teams=[team], username="rita")


def graph(client, incident, **params):
    return client.get(f"{URL}/{incident.id}/graph", params)


def node_ids(body) -> list[str]:
    return [node["id"] for node in body["nodes"]]


def incident_link(source, target, relation=LinkRelation.SIMILAR_TO) -> IncidentLink:
    return IncidentLink.objects.create(
        incident=source, target_type=LinkTarget.INCIDENT, target_id=str(target.id), relation=relation,
        label=target.title,
    )  # fmt: skip


def test_the_graph_starts_with_the_incident_and_links_its_system_and_alert(client_for, reviewer, own_system):
    alert = AlertFactory(system=own_system, rule=DetectionRule.objects.get(name="threshold:fairness"))
    incident = IncidentFactory(system=own_system, source_alert=alert)
    incident_links_on_open(incidents=[incident])

    response = graph(client_for(reviewer), incident)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"nodes", "edges"}
    root = f"incident:{incident.id}"
    assert body["nodes"][0]["id"] == root
    assert body["nodes"][0]["type"] == "incident"
    assert {f"system:{own_system.id}", f"alert:{alert.id}"} <= set(node_ids(body))
    assert {"source": root, "target": f"system:{own_system.id}", "relation": "affects"} in body["edges"]
    assert {"source": root, "target": f"alert:{alert.id}", "relation": "triggered_by"} in body["edges"]
    assert all(set(node) == {"id", "type", "label", "data"} for node in body["nodes"])


def test_depth_two_follows_incident_links_one_more_hop(client_for, reviewer, own_system):
    first = IncidentFactory(system=own_system, opened_at=NOW - timedelta(days=3))
    second = IncidentFactory(system=own_system, opened_at=NOW - timedelta(days=2))
    third = IncidentFactory(system=own_system, opened_at=NOW - timedelta(days=1))
    incident_link(third, second)
    incident_link(second, first)
    client = client_for(reviewer)

    shallow = graph(client, third).json()
    deep = graph(client, third, depth=2).json()

    assert set(node_ids(shallow)) == {f"incident:{third.id}", f"incident:{second.id}"}
    assert set(node_ids(deep)) == {f"incident:{third.id}", f"incident:{second.id}", f"incident:{first.id}"}
    assert {"source": f"incident:{second.id}", "target": f"incident:{first.id}", "relation": "similar_to"} in deep[
        "edges"
    ]


def test_incidents_of_other_teams_are_left_out_with_their_edges(client_for, reviewer, own_system, foreign_system):
    mine = IncidentFactory(system=own_system)
    foreign = IncidentFactory(system=foreign_system)
    incident_link(mine, foreign)

    body = graph(client_for(reviewer), mine).json()

    assert f"incident:{foreign.id}" not in node_ids(body)
    assert all(f"incident:{foreign.id}" not in (edge["source"], edge["target"]) for edge in body["edges"])


@pytest.mark.parametrize("depth", ["3", "0", "deep"])
def test_a_depth_other_than_one_or_two_is_a_400_naming_it(client_for, reviewer, own_system, depth):
    incident = IncidentFactory(system=own_system)

    response = graph(client_for(reviewer), incident, depth=depth)

    assert response.status_code == 400
    assert "depth" in response.json()["error"]["fields"]


def test_the_graph_of_another_teams_incident_is_404(client_for, reviewer, foreign_system):
    incident = IncidentFactory(system=foreign_system)

    assert graph(client_for(reviewer), incident).status_code == 404


def test_a_viewer_may_read_the_graph(client_for, viewer, own_system):
    incident = IncidentFactory(system=own_system)

    response = graph(client_for(viewer), incident)

    assert response.status_code == 200
    assert node_ids(response.json()) == [f"incident:{incident.id}"]
