"""``/simulations`` and ``/oversight/metrics``: shapes, roles, validation, conflicts."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from django.core.management import call_command
from django.utils import timezone

from governance.choices import Role
from oversight.models import Simulation, SimulationStatus
from oversight.services import simulation as service

pytestmark = [pytest.mark.django_db]


DETAIL_FIELDS = {
    "id",
    "status",
    "total",
    "batch_size",
    "rate_per_s",
    "seed",
    "mix",
    "started_at",
    "finished_at",
    "counters",
    "mttd_seconds",
    "mttr_seconds",
    "quality",
    "error",
}
BODY = {"total": 300, "batch_size": 100, "rate_per_s": None, "seed": 7}


@pytest.fixture(autouse=True)
def enqueued(monkeypatch):
    """Steps are recorded, not run: the API's job ends at starting the simulation."""
    sent = []
    monkeypatch.setattr(service, "enqueue_simulation_step", lambda pk, countdown=None: sent.append(str(pk)))
    return sent


def start(client, **overrides):
    return client.post("/api/v1/simulations", {**BODY, **overrides}, format="json")


# --- POST /simulations ----------------------------------------------------------------------------
def test_a_governance_lead_starts_a_simulation(client_for, lead, django_capture_on_commit_callbacks, enqueued):
    with django_capture_on_commit_callbacks(execute=True):
        response = start(client_for(lead), mix={"data_quality": 0.5, "security": 0.5})

    assert response.status_code == 201
    body = response.json()
    assert set(body) == DETAIL_FIELDS
    simulation = Simulation.objects.get(pk=body["id"])
    assert (body["status"], body["total"], body["batch_size"], body["rate_per_s"], body["seed"]) == (
        "pending",
        300,
        100,
        None,
        7,
    )
    assert body["mix"] == {"data_quality": 0.5, "security": 0.5}
    assert body["counters"] == dict.fromkeys(
        ("generated", "ingested", "processed", "alerts", "incidents", "reviews"), 0
    )
    assert simulation.created_by == lead
    assert enqueued == [body["id"]]


def test_defaults_apply_to_omitted_parameters(client_for, admin_user):
    response = client_for(admin_user).post("/api/v1/simulations", {"total": 50}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["batch_size"], body["rate_per_s"], body["seed"], body["mix"]) == (500, 1000.0, 42, None)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"total": 0}, "total"),
        ({"total": 2_000_000}, "total"),
        ({"batch_size": 6000}, "batch_size"),
        ({"rate_per_s": 60_000}, "rate_per_s"),
        ({"seed": "x"}, "seed"),
        ({"mix": {"data_quality": 0.2}}, "mix"),
        ({"mix": {"weather": 1.0}}, "mix.weather"),
        ({"mix": [1, 2]}, "mix"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(client_for, lead, overrides, field):
    response = start(client_for(lead), **overrides)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"]
    assert not Simulation.objects.exists()


def test_a_missing_total_is_refused(client_for, lead):
    response = client_for(lead).post("/api/v1/simulations", {}, format="json")

    assert response.status_code == 400
    assert "total" in response.json()["error"]["fields"]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.REVIEWER, Role.SECURITY])
def test_roles_other_than_admin_and_governance_lead_cannot_start_one(client_for, make_user, role):
    response = start(client_for(make_user(role)))

    assert response.status_code == 403
    assert not Simulation.objects.exists()


def test_an_anonymous_caller_cannot_start_one(anon_client):
    assert start(anon_client).status_code == 401


def test_a_third_active_simulation_is_a_conflict_naming_the_running_ones(client_for, lead):
    client = client_for(lead)
    first, second = start(client).json()["id"], start(client, seed=8).json()["id"]

    response = start(client, seed=9)

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert first in error["message"] and second in error["message"]


# --- GET ------------------------------------------------------------------------------------------
def test_every_human_role_reads_a_simulation_with_live_metrics(client_for, lead, viewer, step_once):
    simulation_id = start(client_for(lead), total=300, batch_size=100).json()["id"]
    step_once(simulation_id)

    response = client_for(viewer).get(f"/api/v1/simulations/{simulation_id}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == DETAIL_FIELDS
    assert body["status"] == "running"
    assert body["counters"]["generated"] == body["counters"]["ingested"] == 100
    assert body["counters"]["processed"] == 100  # measured from data while running
    assert set(body["quality"]) == {"precision", "recall", "f1", "by_category"}
    assert set(body["mttd_seconds"]["all"]) == {"p50", "p95"}
    for figures in body["quality"]["by_category"].values():
        assert set(figures) == {"precision", "recall", "f1"}


def test_a_finished_simulation_serves_its_stored_report(client_for, lead):
    simulation_id = start(client_for(lead)).json()["id"]
    report = {
        "counters": {"generated": 300, "ingested": 300, "processed": 300, "alerts": 4, "incidents": 2, "reviews": 1},
        "mttd_seconds": {"high": {"p50": 0.4, "p95": 0.9, "count": 3}, "all": {"p50": 0.4, "p95": 0.9, "count": 3}},
        "mttr_seconds": {},
        "quality": {
            "precision": 0.75,
            "recall": 1.0,
            "f1": 0.8571,
            "by_category": {"fairness": {"precision": 0.75, "recall": 1.0, "f1": 0.8571, "alerts": 4}},
        },
    }
    Simulation.objects.filter(pk=simulation_id).update(
        status=SimulationStatus.FINISHED, finished_at=timezone.now(), report=report
    )

    body = client_for(lead).get(f"/api/v1/simulations/{simulation_id}").json()

    assert body["status"] == "finished"
    assert body["counters"] == report["counters"]
    assert body["mttd_seconds"] == {"high": {"p50": 0.4, "p95": 0.9}, "all": {"p50": 0.4, "p95": 0.9}}
    assert body["mttr_seconds"] == {}
    assert body["quality"] == {
        "precision": 0.75,
        "recall": 1.0,
        "f1": 0.8571,
        "by_category": {"fairness": {"precision": 0.75, "recall": 1.0, "f1": 0.8571}},
    }


def test_an_unknown_simulation_is_not_found(client_for, viewer):
    assert client_for(viewer).get("/api/v1/simulations/not-a-uuid").status_code == 404
    assert client_for(viewer).get("/api/v1/simulations/6f1c1a52-8a3e-4d0b-9d57-0c1bd0b3b8a1").status_code == 404


def test_the_list_is_newest_first_and_filters_by_status(client_for, lead, viewer):
    client = client_for(lead)
    older, newer = start(client).json()["id"], start(client, seed=8).json()["id"]
    Simulation.objects.filter(pk=older).update(status=SimulationStatus.STOPPED)

    listed = client_for(viewer).get("/api/v1/simulations").json()
    pending = client_for(viewer).get("/api/v1/simulations?status=pending").json()

    assert [item["id"] for item in listed["results"]] == [newer, older]
    assert [item["id"] for item in pending["results"]] == [newer]
    assert set(listed["results"][0]) == DETAIL_FIELDS


def test_reading_requires_authentication(anon_client):
    assert anon_client.get("/api/v1/simulations").status_code == 401


# --- POST /simulations/{id}/stop ------------------------------------------------------------------
def test_stop_answers_the_simulation_and_a_second_stop_of_a_final_one_is_a_conflict(client_for, lead):
    client = client_for(lead)
    simulation_id = start(client).json()["id"]

    stopped = client.post(f"/api/v1/simulations/{simulation_id}/stop")
    again = client.post(f"/api/v1/simulations/{simulation_id}/stop")

    assert stopped.status_code == 200
    assert stopped.json()["status"] == "stopped"  # it was still pending
    assert set(stopped.json()) == DETAIL_FIELDS
    assert again.status_code == 409
    assert "already stopped" in again.json()["error"]["message"]


def test_a_running_simulation_goes_to_stopping(client_for, lead, step_once):
    client = client_for(lead)
    simulation_id = start(client).json()["id"]
    step_once(simulation_id)

    response = client.post(f"/api/v1/simulations/{simulation_id}/stop")

    assert response.status_code == 200
    assert response.json()["status"] == "stopping"


def test_a_viewer_cannot_stop_a_simulation(client_for, lead, viewer):
    simulation_id = start(client_for(lead)).json()["id"]

    assert client_for(viewer).post(f"/api/v1/simulations/{simulation_id}/stop").status_code == 403
    assert Simulation.objects.get(pk=simulation_id).status == SimulationStatus.PENDING


@pytest.fixture
def step_once(django_capture_on_commit_callbacks):
    def run(simulation_id: str) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            service.simulation_step(simulation_id=simulation_id, budget_seconds=0)

    return run


# --- GET /oversight/metrics -----------------------------------------------------------------------
def test_the_metrics_default_to_the_last_24_hours(client_for, viewer):
    response = client_for(viewer).get("/api/v1/oversight/metrics")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "since",
        "until",
        "events",
        "outbox",
        "alerts",
        "mttd_seconds",
        "incidents",
        "latest_simulation",
    }
    since, until = (timezone.datetime.fromisoformat(body[key]) for key in ("since", "until"))
    assert until - since == timedelta(hours=24)
    assert abs((timezone.now() - until).total_seconds()) < 60


def test_the_metrics_take_an_explicit_window(client_for, viewer):
    response = client_for(viewer).get(
        "/api/v1/oversight/metrics", {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}
    )

    assert response.status_code == 200
    assert response.json()["since"] == "2026-01-01T00:00:00+00:00"
    assert response.json()["until"] == "2026-01-02T00:00:00+00:00"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ],
)
def test_bad_metric_windows_are_refused_naming_the_field(client_for, viewer, params, field):
    response = client_for(viewer).get("/api/v1/oversight/metrics", params)

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_the_metrics_require_authentication(anon_client):
    assert anon_client.get("/api/v1/oversight/metrics").status_code == 401


# --- OpenAPI --------------------------------------------------------------------------------------
def test_the_openapi_schema_describes_these_endpoints_without_warnings(tmp_path):
    schema_file = tmp_path / "openapi.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(schema_file))

    schema = yaml.safe_load(schema_file.read_text())
    paths = schema["paths"]
    assert set(paths["/api/v1/simulations"]) == {"get", "post"}
    assert "201" in paths["/api/v1/simulations"]["post"]["responses"]
    assert "409" in paths["/api/v1/simulations/{id}/stop"]["post"]["responses"]
    assert {p["name"] for p in paths["/api/v1/oversight/metrics"]["get"]["parameters"]} == {"since", "until"}
    simulation = schema["components"]["schemas"]["Simulation"]["properties"]
    assert set(simulation) == DETAIL_FIELDS
