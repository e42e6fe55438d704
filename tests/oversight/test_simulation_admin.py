"""The simulation admin: list columns, start form (the same service as the API), live JSON, stop,
read-only scenario labels."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.choices import Role
from governance.models import AuditLog
from oversight.models import ScenarioLabel, Simulation, SimulationStatus
from oversight.services import simulation as service

pytestmark = [pytest.mark.django_db]


START = {"total": "300", "batch_size": "100", "rate_per_s": "", "seed": "7", "mix": ""}


@pytest.fixture(autouse=True)
def enqueued(monkeypatch):
    sent = []
    monkeypatch.setattr(service, "enqueue_simulation_step", lambda pk, countdown=None: sent.append(str(pk)))
    return sent


@pytest.fixture
def lead_client(client, lead):
    client.force_login(lead)
    return client


def started(**overrides) -> Simulation:
    return service.simulation_start(**{"total": 300, "batch_size": 100, "rate_per_s": None, "seed": 7, **overrides})


def change_url(simulation) -> str:
    return reverse("admin:oversight_simulation_change", args=[simulation.pk])


# --- start ----------------------------------------------------------------------------------------
def test_the_add_page_offers_the_start_form(lead_client):
    response = lead_client.get(reverse("admin:oversight_simulation_add"))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="simulation_start_form"' in page
    for field in ("total", "batch_size", "rate_per_s", "seed", "mix"):
        assert f'name="{field}"' in page


def test_the_start_form_starts_a_simulation_through_the_service(
    lead_client, lead, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = lead_client.post(
            reverse("admin:oversight_simulation_add"), {**START, "mix": '{"fairness": 0.5, "security": 0.5}'}
        )

    simulation = Simulation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == change_url(simulation)
    assert (simulation.total, simulation.batch_size, simulation.rate_per_s, simulation.seed) == (300, 100, None, 7)
    assert simulation.mix == {"fairness": 0.5, "security": 0.5}
    assert simulation.created_by == lead
    assert ScenarioLabel.objects.filter(simulation=simulation).exists()
    assert AuditLog.objects.filter(action="simulation.started", actor=lead.username).count() == 1
    assert enqueued == [str(simulation.pk)]


def test_the_start_form_shows_field_errors_and_starts_nothing(lead_client):
    response = lead_client.post(
        reverse("admin:oversight_simulation_add"), {**START, "total": "0", "mix": '{"weather": 1}'}
    )

    assert response.status_code == 200
    form = response.context["form"]
    assert "total" in form.errors
    assert "weather: unknown category" in " ".join(form.errors["mix"])
    assert not Simulation.objects.exists()


def test_the_start_form_names_the_mix_problem_from_the_service(lead_client):
    response = lead_client.post(reverse("admin:oversight_simulation_add"), {**START, "mix": '{"fairness": 0.3}'})

    assert response.status_code == 200
    assert "shares must sum to 1" in " ".join(response.context["form"].errors["mix"])
    assert not Simulation.objects.exists()


def test_a_third_active_simulation_is_refused_on_the_form(lead_client):
    started()
    started(seed=8)

    response = lead_client.post(reverse("admin:oversight_simulation_add"), START)

    assert response.status_code == 200
    assert "At most 2 simulations" in " ".join(response.context["form"].non_field_errors())
    assert Simulation.objects.count() == 2


def test_a_viewer_cannot_start_a_simulation(client, viewer):
    client.force_login(viewer)

    assert client.post(reverse("admin:oversight_simulation_add"), START).status_code == 403
    assert not Simulation.objects.exists()


# --- list and change page -------------------------------------------------------------------------
def test_the_list_shows_status_progress_and_quality(lead_client):
    simulation = started()
    Simulation.objects.filter(pk=simulation.pk).update(
        cursor=150,
        status=SimulationStatus.FINISHED,
        report={"quality": {"precision": 0.9712, "recall": 1.0}},
    )

    page = lead_client.get(reverse("admin:oversight_simulation_changelist")).content.decode()

    assert simulation.id.hex[:8] in page
    assert "50%" in page
    assert "97.1%" in page and "100.0%" in page
    assert "as fast as possible" in page


def test_the_change_page_has_the_live_panel_and_a_stop_button_while_active(lead_client):
    simulation = started()

    page = lead_client.get(change_url(simulation)).content.decode()

    assert 'id="simulation-live"' in page
    assert reverse("admin:oversight_simulation_live", args=[simulation.pk]) in page
    assert 'id="simulation-chart"' in page
    assert 'id="simulation-stop"' in page
    assert 'name="_save"' not in page  # nothing to edit by hand


def test_the_change_page_of_a_final_simulation_has_no_stop_button(lead_client):
    simulation = started()
    Simulation.objects.filter(pk=simulation.pk).update(status=SimulationStatus.FINISHED)

    page = lead_client.get(change_url(simulation)).content.decode()

    assert 'id="simulation-live"' in page
    assert 'id="simulation-stop"' not in page


def test_the_live_view_returns_the_api_shape_progress_and_the_timeline(lead_client, django_capture_on_commit_callbacks):
    simulation = started()
    with django_capture_on_commit_callbacks(execute=True):
        service.simulation_step(simulation_id=simulation.pk, budget_seconds=0)

    body = lead_client.get(reverse("admin:oversight_simulation_live", args=[simulation.pk])).json()

    assert body["status"] == "running"
    assert body["progress"] == pytest.approx(1 / 3, abs=1e-3)
    assert body["counters"]["processed"] == 100
    assert sum(body["timeline"]["events"]) == 100
    assert len(body["timeline"]["events"]) == len(body["timeline"]["alerts"])
    assert body["timeline"]["bucket_seconds"] >= 1


def test_a_viewer_reads_the_live_view_but_cannot_stop(client, viewer):
    simulation = started()
    client.force_login(viewer)

    assert client.get(reverse("admin:oversight_simulation_live", args=[simulation.pk])).status_code == 200
    assert client.post(reverse("admin:oversight_simulation_stop", args=[simulation.pk])).status_code == 403
    assert Simulation.objects.get(pk=simulation.pk).status == SimulationStatus.PENDING


# --- stop -----------------------------------------------------------------------------------------
def test_the_stop_button_stops_through_the_service(lead_client, lead):
    simulation = started()

    response = lead_client.post(reverse("admin:oversight_simulation_stop", args=[simulation.pk]))

    assert response.status_code == 302
    simulation.refresh_from_db()
    assert simulation.status == SimulationStatus.STOPPED
    assert AuditLog.objects.filter(action="simulation.stopped", actor=lead.username).count() == 1


def test_the_stop_action_stops_active_ones_and_reports_final_ones(lead_client):
    active, final = started(), started(seed=8)
    Simulation.objects.filter(pk=final.pk).update(status=SimulationStatus.FINISHED, finished_at=timezone.now())

    response = lead_client.post(
        reverse("admin:oversight_simulation_changelist"),
        {"action": "stop_simulations", "_selected_action": [str(active.pk), str(final.pk)]},
        follow=True,
    )

    messages = [str(m) for m in response.context["messages"]]
    assert any(active.id.hex[:8] in m and "Stop requested" in m for m in messages)
    assert any("already finished" in m for m in messages)
    assert Simulation.objects.get(pk=active.pk).status == SimulationStatus.STOPPED


def test_simulations_cannot_be_deleted(client, make_user):
    client.force_login(make_user(Role.ADMIN))
    simulation = started()

    assert client.post(reverse("admin:oversight_simulation_delete", args=[simulation.pk])).status_code == 403
    assert Simulation.objects.filter(pk=simulation.pk).exists()


# --- scenario labels ------------------------------------------------------------------------------
def test_scenario_labels_are_listed_read_only_and_filterable_by_simulation(client, make_user):
    client.force_login(make_user(Role.ADMIN))
    mine, other = started(), started(seed=8)
    url = reverse("admin:oversight_scenariolabel_changelist")

    response = client.get(url, {"simulation__id__exact": str(mine.pk)})

    assert response.status_code == 200
    shown = {label.scenario_id for label in response.context["cl"].result_list}
    assert shown == set(ScenarioLabel.objects.filter(simulation=mine).values_list("scenario_id", flat=True))
    assert not shown & set(ScenarioLabel.objects.filter(simulation=other).values_list("scenario_id", flat=True))
    label = ScenarioLabel.objects.filter(simulation=mine).first()
    change = client.post(reverse("admin:oversight_scenariolabel_change", args=[label.pk]), {"expected_rule": "x"})
    assert change.status_code == 403
