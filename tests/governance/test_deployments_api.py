"""``/deployments``: CI/CD pipelines report what they deployed; validation, roles, team scoping, list
filters, the rate-limit group and the admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from governance.choices import AuditAction, Role, Severity
from governance.models import AuditLog, Deployment, RateLimit
from tests.incidents.factories import IncidentFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/deployments"
ARTIFACT = "registry.example.com/fraud-scorer@sha256:" + "12" * 32
NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def pipeline(make_user, team):
    return make_user(Role.CICD, teams=[team], username="svc-deploy", is_service_account=True)


def report(client, system_ref, **extra):
    return client.post(URL, {"system": system_ref, "artifact": ARTIFACT, **extra})


def error_fields(response) -> set[str]:
    return set(response.json()["error"]["fields"])


def test_a_pipeline_reports_a_deployment_by_system_name_with_defaults(pipeline, own_system, client_for):
    with time_machine.travel(NOW, tick=False):
        response = report(client_for(pipeline), own_system.name)

    assert response.status_code == 201, response.json()
    body = response.json()
    deployment = Deployment.objects.get()
    assert body == {
        "id": str(deployment.pk),
        "system": str(own_system.pk),
        "system_name": "fraud-scorer",
        "artifact": ARTIFACT,
        "environment": "production",
        "deployed_at": "2026-11-02T09:30:00Z",
        "reported_by": "svc-deploy",
        "gate": {"decision": "missing", "audit_entry": None},
        "circumvention": True,
    }
    assert (deployment.reported_by, deployment.deployed_at) == (pipeline, NOW)
    entry = AuditLog.objects.get(action=AuditAction.DEPLOYMENT_RECORDED)
    assert (entry.actor, entry.actor_type, entry.object_id) == ("svc-deploy", "service", str(deployment.pk))
    assert entry.data["artifact"] == ARTIFACT and entry.data["circumvention"] is True


def test_a_lead_reports_by_system_id_with_environment_and_time(lead, own_system, client_for):
    deployed_at = (timezone.now() - timedelta(hours=2)).replace(microsecond=0)

    response = report(client_for(lead), str(own_system.pk), environment="eu-west", deployed_at=deployed_at.isoformat())

    assert response.status_code == 201, response.json()
    deployment = Deployment.objects.get()
    assert (deployment.environment, deployment.deployed_at, deployment.reported_by) == ("eu-west", deployed_at, lead)


def test_the_gate_verdict_names_the_gate_entry(pipeline, own_system, client_for):
    IncidentFactory(system=own_system, severity=Severity.CRITICAL)
    client = client_for(pipeline)
    assert (
        client.post("/api/v1/cicd/gate", {"system": own_system.name, "artifact": ARTIFACT}).json()["decision"] == "deny"
    )
    gate_entry = AuditLog.objects.get(action=AuditAction.CICD_GATE_DECIDED)

    body = report(client, own_system.name).json()

    assert body["gate"] == {"decision": "deny", "audit_entry": str(gate_entry.pk)}
    assert body["circumvention"] is True


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"system": "no-such-system", "artifact": ARTIFACT}, "system"),
        ({"system": "fraud-scorer"}, "artifact"),
        ({"system": "fraud-scorer", "artifact": ""}, "artifact"),
        ({"system": "fraud-scorer", "artifact": "x" * 301}, "artifact"),
        ({"system": "fraud-scorer", "artifact": ARTIFACT, "environment": "e" * 65}, "environment"),
        ({"system": "fraud-scorer", "artifact": ARTIFACT, "deployed_at": "2026-11-02T09:30:00"}, "deployed_at"),
        ({"system": "fraud-scorer", "artifact": ARTIFACT, "deployed_at": "yesterday"}, "deployed_at"),
        ({"system": "fraud-scorer", "artifact": ARTIFACT, "deployed_at": "2026-11-02T09:36:00Z"}, "deployed_at"),
    ],
)
def test_invalid_reports_are_400_naming_the_field_and_record_nothing(pipeline, own_system, client_for, payload, field):
    with time_machine.travel(NOW, tick=False):
        response = client_for(pipeline).post(URL, payload)

    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == "validation_error"
    assert error_fields(response) == {field}
    assert not Deployment.objects.exists()
    assert not AuditLog.objects.filter(action=AuditAction.DEPLOYMENT_RECORDED).exists()


def test_a_naive_time_is_refused_with_a_message_about_the_offset(pipeline, own_system, client_for):
    response = report(client_for(pipeline), own_system.name, deployed_at="2026-11-02T09:30:00")
    assert "timezone offset" in response.json()["error"]["fields"]["deployed_at"][0]


def test_up_to_five_minutes_ahead_is_accepted(pipeline, own_system, client_for):
    with time_machine.travel(NOW, tick=False):
        response = report(client_for(pipeline), own_system.name, deployed_at="2026-11-02T09:35:00Z")
    assert response.status_code == 201, response.json()


def test_another_teams_system_is_400_like_an_unknown_one(pipeline, foreign_system, client_for):
    response = report(client_for(pipeline), foreign_system.name)

    assert response.status_code == 400
    assert error_fields(response) == {"system"}
    assert not Deployment.objects.exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.REVIEWER, Role.SECURITY, Role.INGEST])
def test_other_roles_may_not_report(make_user, team, own_system, client_for, role):
    user = make_user(role, teams=[team], is_service_account=role == Role.INGEST)

    response = report(client_for(user), own_system.name)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not Deployment.objects.exists()


def test_unauthenticated_callers_are_401(anon_client, own_system):
    assert report(anon_client, own_system.name).status_code == 401


def make_deployment(client, system, **extra):
    response = report(client, system.name, **extra)
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def test_the_list_is_team_scoped_and_a_foreign_deployment_is_404(
    pipeline, own_system, foreign_system, make_user, other_team, viewer, client_for
):
    own = make_deployment(client_for(pipeline), own_system)
    other_pipeline = make_user(Role.CICD, teams=[other_team], is_service_account=True)
    foreign = make_deployment(client_for(other_pipeline), foreign_system)
    client = client_for(viewer)

    listed = client.get(URL).json()["results"]

    assert [d["id"] for d in listed] == [own]
    assert client.get(f"{URL}/{own}").json()["id"] == own
    missing = client.get(f"{URL}/{foreign}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get(f"{URL}/not-a-uuid").status_code == 404


def test_an_admin_sees_every_team(pipeline, own_system, foreign_system, make_user, other_team, admin_user, client_for):
    make_deployment(client_for(pipeline), own_system)
    make_deployment(client_for(make_user(Role.CICD, teams=[other_team], is_service_account=True)), foreign_system)

    assert len(client_for(admin_user).get(URL).json()["results"]) == 2


def test_a_pipeline_may_report_but_not_read(pipeline, own_system, client_for):
    make_deployment(client_for(pipeline), own_system)
    assert client_for(pipeline).get(URL).status_code == 403


def test_list_filters(pipeline, own_system, make_user, team, lead, client_for):
    from tests.factories import AISystemFactory

    second = AISystemFactory(name="churn-model", team=team)
    client = client_for(pipeline)
    assert (
        client.post("/api/v1/cicd/gate", {"system": own_system.name, "artifact": ARTIFACT}).json()["decision"]
        == "allow"
    )
    allowed = make_deployment(client, own_system)
    missing_staging = make_deployment(client, own_system, environment="staging", artifact="other:1")
    other_system = make_deployment(client, second)
    reader = client_for(lead)

    def ids(**query) -> set[str]:
        response = reader.get(URL, query)
        assert response.status_code == 200, response.json()
        return {d["id"] for d in response.json()["results"]}

    assert ids(system="fraud-scorer") == {allowed, missing_staging}
    assert ids(system=str(second.pk)) == {other_system}
    assert ids(environment="staging") == {missing_staging}
    assert ids(circumvention="true") == {missing_staging, other_system}
    assert ids(circumvention="false") == {allowed}
    assert ids(gate_decision="allow") == {allowed}
    assert ids(gate_decision="missing") == {missing_staging, other_system}
    assert reader.get(URL, {"gate_decision": "maybe"}).status_code == 400


def test_reports_count_against_the_cicd_gate_rate_limit(pipeline, own_system, client_for):
    make_deployment(client_for(pipeline), own_system)

    assert RateLimit.objects.filter(key=f"user:{pipeline.pk}", bucket="cicd_gate").get().count == 1


def test_the_admin_changelist_and_change_page_render(admin_user, pipeline, own_system, client_for):
    IncidentFactory(system=own_system, severity=Severity.CRITICAL)
    client = client_for(pipeline)
    client.post("/api/v1/cicd/gate", {"system": own_system.name, "artifact": ARTIFACT})
    deployment_id = make_deployment(client, own_system)
    make_deployment(client, own_system, artifact="registry.example.com/fraud-scorer:never-gated")
    browser = Client()
    browser.force_login(admin_user)

    changelist = browser.get(reverse("admin:governance_deployment_changelist"), {"circumvention__exact": "1"})
    change = browser.get(reverse("admin:governance_deployment_change", args=[deployment_id]))

    assert changelist.status_code == 200
    assert ARTIFACT in changelist.content.decode() and "never-gated" in changelist.content.decode()
    assert change.status_code == 200
    gate_entry = AuditLog.objects.get(action=AuditAction.CICD_GATE_DECIDED)
    assert reverse("admin:governance_auditlog_change", args=[gate_entry.pk]) in change.content.decode()
    searched = browser.get(reverse("admin:governance_deployment_changelist"), {"q": "never-gated"})
    assert "never-gated" in searched.content.decode() and ARTIFACT not in searched.content.decode()
    assert browser.post(reverse("admin:governance_deployment_add")).status_code == 403
