"""``/api/v1/events``: bulk ingest with per-item errors and nothing written on any error; team-scoped,
filtered, cursor-paginated reads."""

from __future__ import annotations

import json
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.choices import Role
from governance.models import AuditLog
from oversight.models import EventRaw, IngestBatch
from oversight.services.ingest import ingest_events
from tests.factories import AISystemFactory
from tests.oversight.factories import EventRawFactory, IngestBatchFactory, event_item, event_items

pytestmark = pytest.mark.django_db

URL = "/api/v1/events"
EVENT_FIELDS = {
    "event_id",
    "system",
    "system_name",
    "category",
    "severity",
    "signal",
    "value",
    "occurred_at",
    "received_at",
    "batch_id",
    "attributes",
    "scenario_id",
    "processed_at",
}


@pytest.fixture(autouse=True)
def no_processing():
    with mock.patch("oversight.tasks.process_batch.delay") as delay:
        yield delay


@pytest.fixture
def ingest_account(make_user, team):
    return make_user(Role.INGEST, teams=[team], username="svc-ingest", is_service_account=True)


@pytest.fixture
def sender(client_for, ingest_account):
    return client_for(ingest_account)


def post(client, body):
    """POST a body serialized exactly as given (NaN/Infinity literals included)."""
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post(URL, text, content_type="application/json")


def nothing_written() -> bool:
    return not IngestBatch.objects.exists() and not EventRaw.objects.exists() and not AuditLog.objects.exists()


def error_of(response, status: int = 400, code: str = "invalid") -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert list(body) == ["error"]
    assert body["error"]["code"] == code
    return body["error"]


# --- Ingest ----------------------------------------------------------------------------------------


def test_a_valid_batch_is_accepted_with_202_and_its_counts(sender, own_system):
    items = event_items(own_system, 3)

    response = post(sender, {"events": items})

    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"batch_id", "accepted", "duplicates"}
    assert (body["accepted"], body["duplicates"]) == (3, 0)
    assert EventRaw.objects.filter(batch_id=body["batch_id"]).count() == 3


def test_a_resent_batch_is_accepted_as_duplicates(sender, own_system):
    items = event_items(own_system, 3)
    post(sender, {"events": items})

    response = post(sender, {"events": items})

    assert response.status_code == 202
    assert (response.json()["accepted"], response.json()["duplicates"]) == (0, 3)
    assert EventRaw.objects.count() == 3


def test_a_batch_is_sent_to_processing_once(sender, own_system, no_processing, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(sender, {"events": event_items(own_system, 2)})

    no_processing.assert_called_once_with(response.json()["batch_id"])


def test_the_batch_is_recorded_as_sent_by_the_caller(sender, own_system, ingest_account):
    response = post(sender, {"events": event_items(own_system, 1)})

    assert IngestBatch.objects.get(pk=response.json()["batch_id"]).submitted_by == ingest_account


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"system": "ghost-model"}, "system", "unknown AI system 'ghost-model'"),
        ({"category": "vibes"}, "category", "unknown category 'vibes'"),
        ({"severity": "urgent"}, "severity", "unknown severity 'urgent'"),
        ({"value": "0.5"}, "value", "must be a number"),
        ({"value": True}, "value", "must be a number"),
        ({"signal": 3}, "signal", "must be a string"),
        ({"attributes": []}, "attributes", "must be an object"),
        ({"scenario_id": "s" * 65}, "scenario_id", "at most 64 characters"),
        ({"event_id": "nope"}, "event_id", "must be a UUID"),
        ({"occurred_at": "2025-06-01T11:59:00"}, "occurred_at", "must include a timezone offset"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_a_bad_event_is_400_naming_its_field_and_nothing_is_written(sender, own_system, overrides, field, message):
    items = [event_item(own_system), {**event_item(own_system), **overrides}]

    error = error_of(post(sender, {"events": items}))

    assert list(error["fields"]) == [f"events.1.{field}"]
    assert message in error["fields"][f"events.1.{field}"][0]
    assert error["message"] == "1 of 2 events are invalid; nothing was stored."
    assert nothing_written()


def test_an_event_from_more_than_five_minutes_ahead_is_refused(sender, own_system):
    ahead = (timezone.now() + timedelta(minutes=6)).isoformat()

    error = error_of(post(sender, {"events": [event_item(own_system, occurred_at=ahead)]}))

    assert "more than 5 minutes in the future" in error["fields"]["events.0.occurred_at"][0]
    assert nothing_written()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_json_literal_is_400_on_its_field_not_a_parse_error(sender, own_system, literal):
    item = event_item(own_system, value=0.5)
    body = json.dumps({"events": [event_item(own_system), item]}).replace('"value": 0.5', f'"value": {literal}')

    error = error_of(post(sender, body))

    assert error["fields"] == {"events.1.value": ["must be a finite number (NaN and Infinity are not allowed)"]}
    assert nothing_written()


def test_a_nan_inside_attributes_is_400_on_the_attributes(sender, own_system):
    item = event_item(own_system, attributes={"drift": 1})
    body = json.dumps({"events": [item]}).replace('"drift": 1', '"drift": NaN')

    error = error_of(post(sender, body))

    assert error["fields"] == {"events.0.attributes": ["must not contain NaN or Infinity"]}


def test_every_bad_event_of_a_batch_is_reported_at_once(sender, own_system):
    items = event_items(own_system, 500)
    items[3]["severity"] = "urgent"
    items[40]["value"] = "high"
    items[499]["system"] = "ghost"

    error = error_of(post(sender, {"events": items}))

    assert set(error["fields"]) == {"events.3.severity", "events.40.value", "events.499.system"}
    assert error["message"] == "3 of 500 events are invalid; nothing was stored."
    assert nothing_written()


def test_a_repeated_event_id_in_a_batch_is_400_naming_the_first(sender, own_system):
    items = event_items(own_system, 3)
    items[2]["event_id"] = items[1]["event_id"]

    error = error_of(post(sender, {"events": items}))

    assert error["fields"] == {"events.2.event_id": ["duplicates the event_id of events.1"]}
    assert nothing_written()


@pytest.mark.parametrize("field", ["system", "category", "severity", "signal", "value", "occurred_at"])
def test_a_missing_required_field_is_400(sender, own_system, field):
    item = event_item(own_system)
    del item[field]

    assert error_of(post(sender, {"events": [item]}))["fields"] == {f"events.0.{field}": ["this field is required"]}


@pytest.mark.parametrize(
    "body", ['[{"system": "x"}]', '"events"', "{}", '{"events": {}}', '{"events": []}', '{"events": null}']
)
def test_a_body_without_a_list_of_events_is_400_naming_events(sender, body):
    error = error_of(post(sender, body))

    assert "events" in error["fields"]
    assert nothing_written()


def test_an_empty_body_is_400_naming_events(sender):
    error = error_of(sender.post(URL, b"", content_type="application/json"))

    assert error["fields"] == {"events": ["this field is required"]}


def test_malformed_json_is_400_parse_error(sender):
    error_of(post(sender, '{"events": [{"system": '), code="parse_error")

    assert nothing_written()


def test_5001_events_are_413_naming_events_and_nothing_is_written(sender, own_system):
    error = error_of(post(sender, {"events": event_items(own_system, 5001)}), status=413, code="request_too_large")

    assert error["fields"] == {"events": ["at most 5000 events per request"]}
    assert nothing_written()


def test_5000_events_are_accepted(sender, own_system):
    response = post(sender, {"events": event_items(own_system, 5000)})

    assert response.status_code == 202
    assert response.json()["accepted"] == 5000


def test_another_teams_system_is_unknown_to_a_team_ingest_account(sender, foreign_system):
    error = error_of(post(sender, {"events": [event_item(foreign_system)]}))

    assert error["fields"] == {"events.0.system": ["unknown AI system 'credit-limit-model'"]}
    assert nothing_written()


# --- Who may post ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.INGEST, Role.ADMIN, Role.GOVERNANCE_LEAD])
def test_ingest_accounts_admins_and_leads_may_post(client_for, make_user, team, own_system, role):
    user = make_user(role, teams=[team], is_service_account=role == Role.INGEST)

    assert post(client_for(user), {"events": event_items(own_system, 1)}).status_code == 202


@pytest.mark.parametrize("role", [Role.VIEWER, Role.REVIEWER, Role.SECURITY, Role.CICD])
def test_other_roles_may_not_post(client_for, make_user, team, own_system, role):
    user = make_user(role, teams=[team], is_service_account=role == Role.CICD)

    error_of(post(client_for(user), {"events": event_items(own_system, 1)}), status=403, code="permission_denied")
    assert nothing_written()


def test_an_anonymous_caller_is_401(anon_client, own_system):
    error_of(post(anon_client, {"events": event_items(own_system, 1)}), status=401, code="not_authenticated")
    assert nothing_written()


# --- Reading events --------------------------------------------------------------------------------


def test_an_event_is_listed_with_every_documented_field(client_for, viewer, own_system):
    event = EventRawFactory(system=own_system, attributes={"k": "v"}, scenario_id="scn-1")

    [row] = client_for(viewer).get(URL).json()["results"]

    assert set(row) == EVENT_FIELDS
    assert row["event_id"] == str(event.event_id)
    assert (row["system"], row["system_name"]) == (str(own_system.pk), "fraud-scorer")
    assert row["batch_id"] == str(event.batch_id)
    assert (row["attributes"], row["scenario_id"], row["processed_at"]) == ({"k": "v"}, "scn-1", None)


def test_the_list_shows_only_the_callers_teams_events(client_for, viewer, own_system, foreign_system):
    mine = EventRawFactory(system=own_system)
    EventRawFactory(system=foreign_system)

    rows = client_for(viewer).get(URL).json()["results"]

    assert [row["event_id"] for row in rows] == [str(mine.event_id)]


def test_an_ingest_account_may_read_its_teams_events(sender, own_system):
    EventRawFactory(system=own_system)

    assert len(sender.get(URL).json()["results"]) == 1


def test_a_ci_account_may_not_read_events(client_for, make_user, team):
    cicd = make_user(Role.CICD, teams=[team], is_service_account=True)

    assert client_for(cicd).get(URL).status_code == 403


def test_events_are_listed_newest_arrival_first(client_for, viewer, own_system):
    first, second = EventRawFactory(system=own_system), EventRawFactory(system=own_system)

    rows = client_for(viewer).get(URL).json()["results"]

    assert [row["event_id"] for row in rows] == [str(second.event_id), str(first.event_id)]


@pytest.fixture
def mixed_events(own_system, team):
    other = AISystemFactory(name="churn-model", team=team)
    base = timezone.now() - timedelta(hours=1)
    batch = IngestBatchFactory()
    return {
        "psi": EventRawFactory(system=own_system, signal="psi", occurred_at=base, batch=batch),
        "dp_gap": EventRawFactory(
            system=own_system,
            category="fairness",
            severity="high",
            signal="dp_gap",
            occurred_at=base + timedelta(minutes=10),
            scenario_id="scn-9",
            processed_at=timezone.now(),
        ),
        "accuracy": EventRawFactory(
            system=other, category="model_perf", signal="accuracy", occurred_at=base + timedelta(minutes=20)
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"system": "churn-model"}, {"accuracy"}),
        ({"category": "fairness"}, {"dp_gap"}),
        ({"severity": "high"}, {"dp_gap"}),
        ({"signal": "psi"}, {"psi"}),
        ({"scenario_id": "scn-9"}, {"dp_gap"}),
        ({"processed": "true"}, {"dp_gap"}),
        ({"processed": "false"}, {"psi", "accuracy"}),
    ],
)
def test_events_can_be_filtered(client_for, viewer, mixed_events, query, expected):
    rows = client_for(viewer).get(URL, query).json()["results"]

    assert {row["signal"] for row in rows} == expected


def test_events_can_be_filtered_by_system_id(client_for, viewer, mixed_events, own_system):
    rows = client_for(viewer).get(URL, {"system": str(own_system.pk)}).json()["results"]

    assert {row["signal"] for row in rows} == {"psi", "dp_gap"}


def test_events_can_be_filtered_by_batch(client_for, viewer, mixed_events):
    rows = client_for(viewer).get(URL, {"batch": str(mixed_events["psi"].batch_id)}).json()["results"]

    assert [row["signal"] for row in rows] == ["psi"]


def test_events_can_be_filtered_by_event_time_window(client_for, viewer, mixed_events):
    since = mixed_events["dp_gap"].occurred_at
    until = mixed_events["accuracy"].occurred_at

    rows = client_for(viewer).get(URL, {"since": since.isoformat(), "until": until.isoformat()}).json()["results"]

    assert [row["signal"] for row in rows] == ["dp_gap"]


def test_an_unknown_filter_value_is_400(client_for, viewer):
    response = client_for(viewer).get(URL, {"category": "vibes"})

    assert response.status_code == 400
    assert "category" in response.json()["error"]["fields"]


def test_following_next_walks_every_event_once(client_for, viewer, own_system):
    stored = {str(EventRawFactory(system=own_system).event_id) for _ in range(7)}
    seen, url = [], f"{URL}?page_size=3"
    while url:
        body = client_for(viewer).get(url).json()
        seen += [row["event_id"] for row in body["results"]]
        url = body["next"]

    assert sorted(seen) == sorted(stored)


def test_listing_costs_the_same_queries_for_many_systems_as_for_one(client_for, viewer, team, own_system):
    EventRawFactory(system=own_system)
    client = client_for(viewer)
    client.get(URL)  # warm the caller's role and team lookups alike for both measurements
    with CaptureQueriesContext(connection) as one:
        client.get(URL)
    for system in AISystemFactory.create_batch(10, team=team):
        EventRawFactory(system=system)

    with CaptureQueriesContext(connection) as many:
        assert len(client.get(URL).json()["results"]) == 11

    assert len(many) == len(one)


def test_an_event_is_fetched_by_its_client_event_id(client_for, viewer, own_system):
    event = EventRawFactory(system=own_system)

    response = client_for(viewer).get(f"{URL}/{event.event_id}")

    assert response.status_code == 200
    assert response.json()["event_id"] == str(event.event_id)


def test_another_teams_event_is_404(client_for, viewer, foreign_system):
    event = EventRawFactory(system=foreign_system)

    assert client_for(viewer).get(f"{URL}/{event.event_id}").status_code == 404


@pytest.mark.parametrize("ref", ["6f1c0b7e-0000-4000-8000-000000000002", "not-a-uuid"])
def test_an_unknown_event_id_is_404(client_for, viewer, ref):
    assert client_for(viewer).get(f"{URL}/{ref}").status_code == 404


def test_an_ingested_event_reads_back_as_sent(sender, own_system):
    item = event_item(own_system, value=0.42, attributes={"segment": "eu"}, scenario_id="scn-3")
    post(sender, {"events": [item]})

    row = sender.get(f"{URL}/{item['event_id']}").json()

    assert (row["value"], row["attributes"], row["scenario_id"]) == (0.42, {"segment": "eu"}, "scn-3")


def test_an_event_ingested_by_the_service_is_listed_by_the_api(client_for, viewer, own_system):
    result = ingest_events(items=event_items(own_system, 2), submitted_by=None)

    rows = client_for(viewer).get(URL, {"batch": str(result.batch_id)}).json()["results"]

    assert len(rows) == 2
