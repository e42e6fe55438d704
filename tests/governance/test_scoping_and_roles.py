"""Team scoping (objects outside the caller's teams do not exist for them) and role-based access."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from governance.choices import AuditAction, Role
from governance.models import AISystem, AuditLog, EvaluationRun, User
from governance.services.organization import service_account_create
from tests.factories import AISystemFactory, ControlAssessmentFactory, EvaluationRunFactory, TeamFactory

pytestmark = pytest.mark.django_db

SYSTEMS_URL = "/api/v1/systems"
LONG_AGO = "2020-01-01T00:00:00Z"


def ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def assert_not_found(response) -> None:
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def assert_forbidden(response) -> None:
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "permission_denied",
        "message": "Your role does not allow this operation.",
        "fields": {},
    }


def new_system_payload(team, **extra) -> dict:
    return {
        "name": "chargeback-classifier",
        "entity_type": "model",
        "team": str(team.pk),
        "risk_class": "high",
        **extra,
    }


def service_account(role: str, *teams, name: str) -> User:
    return service_account_create(name=name, role=role, teams=list(teams), actor="system:test").user


# --- Objects outside the caller's teams -------------------------------------------------------


def test_another_teams_system_by_id_is_404(client_for, lead, foreign_system):
    assert_not_found(client_for(lead).get(f"{SYSTEMS_URL}/{foreign_system.pk}"))


def test_another_teams_system_by_name_is_404(client_for, lead, foreign_system):
    assert_not_found(client_for(lead).get(f"{SYSTEMS_URL}/{foreign_system.name}"))


def test_own_system_is_found_by_id_and_by_name(client_for, lead, own_system):
    client = client_for(lead)

    by_id = client.get(f"{SYSTEMS_URL}/{own_system.pk}")
    by_name = client.get(f"{SYSTEMS_URL}/{own_system.name}")

    assert by_id.status_code == by_name.status_code == 200
    assert by_id.json()["id"] == by_name.json()["id"] == str(own_system.pk)


def test_patching_another_teams_system_is_404_and_changes_nothing(client_for, lead, foreign_system):
    response = client_for(lead).patch(f"{SYSTEMS_URL}/{foreign_system.pk}", {"risk_class": "minimal"})

    assert_not_found(response)
    foreign_system.refresh_from_db()
    assert foreign_system.risk_class == "limited"
    assert not AuditLog.objects.exists()


def test_another_teams_control_assessment_is_404(client_for, lead, foreign_system):
    assessment = ControlAssessmentFactory(system=foreign_system)

    assert_not_found(client_for(lead).get(f"/api/v1/control-assessments/{assessment.pk}"))


def test_another_teams_evaluation_run_is_404(client_for, lead, foreign_system):
    run = EvaluationRunFactory(system=foreign_system)

    assert_not_found(client_for(lead).get(f"/api/v1/evaluation-runs/{run.pk}"))


def test_another_team_is_404(client_for, lead, other_team):
    assert_not_found(client_for(lead).get(f"/api/v1/teams/{other_team.pk}"))


def test_the_system_list_shows_only_the_callers_teams(client_for, lead, own_system, foreign_system):
    assert ids(client_for(lead).get(SYSTEMS_URL)) == {str(own_system.pk)}


def test_filtering_by_another_teams_id_reveals_nothing(client_for, lead, own_system, foreign_system, other_team):
    response = client_for(lead).get(SYSTEMS_URL, {"team": str(other_team.pk)})

    assert ids(response) == set()


def test_a_member_of_two_teams_sees_both_teams_systems_once(client_for, make_user, team, other_team):
    both = make_user(Role.VIEWER, teams=[team, other_team])
    systems = {str(AISystemFactory(team=team).pk), str(AISystemFactory(team=other_team).pk)}
    AISystemFactory(team=TeamFactory())

    response = client_for(both).get(SYSTEMS_URL)

    assert ids(response) == systems
    assert len(response.json()["results"]) == 2


def test_the_team_list_shows_only_the_callers_teams(client_for, lead, team, other_team):
    assert ids(client_for(lead).get("/api/v1/teams")) == {str(team.pk)}


def test_the_assessment_and_run_lists_show_only_the_callers_teams(client_for, lead, own_system, foreign_system):
    own_assessment, own_run = ControlAssessmentFactory(system=own_system), EvaluationRunFactory(system=own_system)
    ControlAssessmentFactory(system=foreign_system)
    EvaluationRunFactory(system=foreign_system)
    client = client_for(lead)

    assert ids(client.get("/api/v1/control-assessments")) == {str(own_assessment.pk)}
    assert ids(client.get("/api/v1/evaluation-runs")) == {str(own_run.pk)}


def test_a_user_without_teams_sees_no_systems(client_for, make_user, own_system):
    assert ids(client_for(make_user(Role.VIEWER)).get(SYSTEMS_URL)) == set()


def test_the_admin_role_sees_every_teams_systems(client_for, admin_user, own_system, foreign_system):
    assert ids(client_for(admin_user).get(SYSTEMS_URL)) == {str(own_system.pk), str(foreign_system.pk)}


def test_the_admin_role_finds_another_teams_system_by_name(client_for, admin_user, foreign_system):
    assert client_for(admin_user).get(f"{SYSTEMS_URL}/{foreign_system.name}").status_code == 200


def test_a_superuser_sees_every_teams_systems(client_for, make_user, own_system, foreign_system):
    root = make_user(is_superuser=True)

    assert ids(client_for(root).get(SYSTEMS_URL)) == {str(own_system.pk), str(foreign_system.pk)}


# --- Writes naming another team's objects -----------------------------------------------------


def test_creating_a_system_for_another_teams_id_is_400_naming_team(client_for, lead, other_team):
    response = client_for(lead).post(SYSTEMS_URL, new_system_payload(other_team))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert set(response.json()["error"]["fields"]) == {"team"}
    assert not AISystem.objects.exists()


def test_moving_an_own_system_to_another_team_is_400_naming_team(client_for, lead, own_system, other_team):
    response = client_for(lead).patch(f"{SYSTEMS_URL}/{own_system.pk}", {"team": str(other_team.pk)})

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"team"}
    own_system.refresh_from_db()
    assert own_system.team_id != other_team.pk


def test_recording_an_assessment_on_another_teams_system_is_400_naming_system(client_for, lead, foreign_system):
    payload = {"system": str(foreign_system.pk), "control": "human-oversight", "status": "effective"}
    response = client_for(lead).post("/api/v1/control-assessments", {**payload, "assessed_at": LONG_AGO})

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"system"}


# --- Read-only fields ---------------------------------------------------------------------------


def test_read_only_fields_in_a_new_system_are_ignored(client_for, lead, team, make_user):
    someone_else = make_user(Role.GOVERNANCE_LEAD, teams=[team])
    forged_id = "00000000-0000-0000-0000-000000000001"
    payload = new_system_payload(
        team, id=forged_id, created_at=LONG_AGO, updated_at=LONG_AGO, owner=someone_else.username
    )

    response = client_for(lead).post(SYSTEMS_URL, payload)

    assert response.status_code == 201, response.content
    stored = AISystem.objects.get(name="chargeback-classifier")
    assert str(stored.pk) == response.json()["id"] != forged_id
    assert stored.owner == lead
    assert stored.created_at.year > 2020
    assert stored.updated_at.year > 2020


def test_read_only_fields_in_a_system_patch_are_ignored(client_for, lead, own_system, make_user, team):
    someone_else = make_user(Role.GOVERNANCE_LEAD, teams=[team])
    original_pk, original_created = own_system.pk, own_system.created_at
    payload = {
        "id": "00000000-0000-0000-0000-000000000001",
        "name": "renamed",
        "owner": someone_else.username,
        "created_at": LONG_AGO,
        "description": "Scores card payments.",
    }

    response = client_for(lead).patch(f"{SYSTEMS_URL}/{own_system.pk}", payload)

    assert response.status_code == 200, response.content
    stored = AISystem.objects.get(pk=original_pk)
    assert (stored.name, stored.owner, stored.created_at) == ("fraud-scorer", None, original_created)
    assert stored.description == "Scores card payments."
    assert AuditLog.objects.get(action=AuditAction.SYSTEM_UPDATED).data == {
        "changes": {"description": {"from": "", "to": "Scores card payments."}}
    }


def test_privilege_fields_in_a_new_user_are_ignored(client_for, admin_user, team):
    payload = {
        "username": "mallory",
        "password": "a-long-and-unusual-passphrase-7",
        "roles": [Role.VIEWER],
        "teams": [str(team.pk)],
        "is_service_account": True,
        "is_superuser": True,
        "is_staff": True,
        "is_active": False,
    }

    response = client_for(admin_user).post("/api/v1/users", payload)

    assert response.status_code == 201, response.content
    stored = User.objects.get(username="mallory")
    assert (stored.is_service_account, stored.is_superuser, stored.is_staff) == (False, False, False)
    assert stored.is_active
    assert stored.role_names == {Role.VIEWER}


# --- Roles ------------------------------------------------------------------------------------


def test_a_viewer_cannot_create_a_system(client_for, viewer, team):
    assert_forbidden(client_for(viewer).post(SYSTEMS_URL, new_system_payload(team)))
    assert not AISystem.objects.exists()


def test_a_viewer_cannot_patch_an_own_teams_system(client_for, viewer, own_system):
    assert_forbidden(client_for(viewer).patch(f"{SYSTEMS_URL}/{own_system.pk}", {"risk_class": "minimal"}))


def test_a_governance_lead_can_create_a_system_for_their_team(client_for, lead, team):
    response = client_for(lead).post(SYSTEMS_URL, new_system_payload(team))

    assert response.status_code == 201
    assert AuditLog.objects.get(action=AuditAction.SYSTEM_REGISTERED).object_id == response.json()["id"]


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.SECURITY, Role.VIEWER])
def test_human_roles_can_read_their_teams_systems(client_for, make_user, team, own_system, role):
    reader = make_user(role, teams=[team])

    assert ids(client_for(reader).get(SYSTEMS_URL)) == {str(own_system.pk)}


def test_a_user_without_a_role_cannot_read_systems(client_for, make_user, team, own_system):
    assert_forbidden(client_for(make_user(teams=[team])).get(SYSTEMS_URL))


def test_only_admins_create_teams(client_for, lead, admin_user):
    assert_forbidden(client_for(lead).post("/api/v1/teams", {"name": "Payments"}))
    assert client_for(admin_user).post("/api/v1/teams", {"name": "Payments"}).status_code == 201


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.REVIEWER, 403), (Role.SECURITY, 200)])
def test_the_audit_log_is_readable_only_by_admin_lead_and_security(client_for, make_user, team, role, status):
    assert client_for(make_user(role, teams=[team])).get("/api/v1/audit").status_code == status


def test_a_governance_lead_can_verify_the_audit_chain(client_for, lead):
    response = client_for(lead).post("/api/v1/audit/verify")

    assert response.status_code == 200
    assert response.json()["ok"] is True


def test_an_ingest_service_account_cannot_read_systems(client_for, team, own_system):
    ingest = service_account(Role.INGEST, team, name="telemetry-ingest")

    assert_forbidden(client_for(ingest).get(SYSTEMS_URL))


def test_a_cicd_service_account_cannot_register_systems(client_for, team):
    cicd = service_account(Role.CICD, team, name="ci-pipeline")

    assert_forbidden(client_for(cicd).post(SYSTEMS_URL, new_system_payload(team)))


def test_a_cicd_service_account_may_record_an_evaluation_run_for_its_team(client_for, team, own_system):
    cicd = service_account(Role.CICD, team, name="ci-pipeline")
    payload = {
        "system": str(own_system.pk),
        "suite": "robustness",
        "metric": "accuracy",
        "value": 0.87,
        "threshold": 0.9,
        "ran_at": datetime(2026, 3, 2, 12, 0, tzinfo=UTC).isoformat(),
    }

    response = client_for(cicd).post("/api/v1/evaluation-runs", payload)

    assert response.status_code == 201, response.content
    run = EvaluationRun.objects.get()
    assert (run.system, run.value, run.passed, run.triggered_by) == (own_system, 0.87, False, "ci-pipeline")
    entry = AuditLog.objects.get(action=AuditAction.EVALUATION_RECORDED)
    assert (entry.actor, entry.actor_type) == ("ci-pipeline", "service")


def test_a_cicd_service_account_cannot_record_a_run_for_another_teams_system(client_for, team, foreign_system):
    cicd = service_account(Role.CICD, team, name="ci-pipeline")
    payload = {"system": str(foreign_system.pk), "suite": "robustness", "metric": "accuracy", "value": 0.95}

    response = client_for(cicd).post("/api/v1/evaluation-runs", {**payload, "threshold": 0.9, "ran_at": LONG_AGO})

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"system"}
    assert not EvaluationRun.objects.exists()


def test_a_cicd_service_account_cannot_read_evaluation_runs(client_for, team, own_system):
    cicd = service_account(Role.CICD, team, name="ci-pipeline")
    EvaluationRunFactory(system=own_system)

    assert_forbidden(client_for(cicd).get("/api/v1/evaluation-runs"))
