"""Policy circumvention, part 1: a deployment the CI/CD gate denied (or was never asked about), and a result
of a gateway evaluation suite posted without an eval run, each become one detection and a security incident
linked to the audit entries concerned."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, EvaluationProvenance, Role, Severity
from governance.models import AuditLog, Deployment, EvaluationRun
from governance.services.bypass import BYPASS_CONFIG_KEY, PLATFORM_SYSTEM_NAME
from governance.services.bypass.gate_circumvention import bypass_scan_gate_circumvention
from governance.services.deployments import deployment_record
from incidents.models import Incident, IncidentLink
from oversight.models import EventRaw
from tests.governance.test_eval_api import knowledgeable, model, run_url
from tests.governance.test_gateway_api import serve_fake_upstream
from tests.incidents.factories import IncidentFactory

pytestmark = pytest.mark.django_db

GATE_URL = "/api/v1/cicd/gate"
DEPLOYMENTS_URL = "/api/v1/deployments"
EVALUATION_RUNS_URL = "/api/v1/evaluation-runs"
ARTIFACT = "registry.example.com/fraud-scorer@sha256:" + "cd" * 32


@pytest.fixture
def pipeline(make_user, team):
    return make_user(Role.CICD, teams=[team], username="svc-deploy", is_service_account=True)


@pytest.fixture
def upstream(settings):
    yield from serve_fake_upstream(settings)


def ask_gate(client, system, artifact=ARTIFACT):
    answer = client.post(GATE_URL, {"system": system.name, "artifact": artifact})
    assert answer.status_code == 200, answer.json()
    return answer.json()["decision"]


def report_deployment(client, system, artifact=ARTIFACT, **extra):
    answer = client.post(DEPLOYMENTS_URL, {"system": system.name, "artifact": artifact, **extra})
    assert answer.status_code == 201, answer.json()
    return answer.json()


def detections():
    return list(EventRaw.objects.filter(signal="bypass_policy_circumvention").order_by("received_at"))


def entry_of(action: str, object_id) -> AuditLog:
    return AuditLog.objects.get(action=action, object_id=str(object_id))


def linked_audit_entries(incident) -> set[str]:
    return set(
        IncidentLink.objects.filter(incident=incident, target_type="audit", relation="evidenced_by").values_list(
            "target_id", flat=True
        )
    )


def switch_detector(admin_user, enabled: bool) -> None:
    value = registry.get(BYPASS_CONFIG_KEY)
    value["policy_circumvention"]["enabled"] = enabled
    registry.set(BYPASS_CONFIG_KEY, value, user=admin_user, reason="test")


# --- deployments ---------------------------------------------------------------------------------------------
def test_a_deployment_after_a_denied_gate_is_a_critical_detection_and_a_security_incident(
    pipeline, own_system, client_for, django_capture_on_commit_callbacks
):
    IncidentFactory(system=own_system, severity=Severity.CRITICAL, title="Model leaks PII")
    client = client_for(pipeline)
    assert ask_gate(client, own_system) == "deny"
    gate_entry = AuditLog.objects.get(action=AuditAction.CICD_GATE_DECIDED)

    with django_capture_on_commit_callbacks(execute=True):
        answer = report_deployment(client, own_system, environment="staging")

    deployment = Deployment.objects.get(pk=answer["id"])
    assert (deployment.gate_decision, deployment.circumvention) == ("deny", True)
    assert deployment.gate_audit_entry == gate_entry.pk
    recorded = entry_of(AuditAction.DEPLOYMENT_RECORDED, deployment.pk)
    assert (recorded.data["gate_decision"], recorded.data["gate_audit_entry"]) == ("deny", str(gate_entry.pk))
    [event] = detections()
    assert (event.severity, event.category, event.value) == ("critical", "security", 1.0)
    attributes = event.attributes
    assert (attributes["detector"], attributes["source"]) == ("policy_circumvention", f"deployment:{deployment.pk}")
    assert "fraud-scorer" in attributes["summary"] and ARTIFACT in attributes["summary"]
    assert "denied" in attributes["summary"]
    assert attributes["details"] == {
        "system": str(own_system.pk),
        "system_name": "fraud-scorer",
        "artifact": ARTIFACT,
        "environment": "staging",
        "deployment": str(deployment.pk),
        "gate_decision": "deny",
        "reasons": gate_entry.data["reasons"],
    }
    assert "Model leaks PII" in attributes["details"]["reasons"][0]
    detection_entry = AuditLog.objects.get(action=AuditAction.BYPASS_DETECTED)
    assert attributes["audit_refs"] == [str(gate_entry.pk), str(recorded.pk), str(detection_entry.pk)]
    incident = Incident.objects.get(system__name=PLATFORM_SYSTEM_NAME)
    assert (incident.team.slug, incident.severity) == ("security", "critical")
    assert linked_audit_entries(incident) >= {str(gate_entry.pk), str(recorded.pk)}


def test_a_deployment_the_gate_allowed_is_no_detection(
    pipeline, own_system, client_for, django_capture_on_commit_callbacks
):
    client = client_for(pipeline)
    assert ask_gate(client, own_system) == "allow"

    with django_capture_on_commit_callbacks(execute=True):
        answer = report_deployment(client, own_system)

    assert answer["gate"]["decision"] == "allow" and answer["circumvention"] is False
    assert detections() == []
    assert not AuditLog.objects.filter(action=AuditAction.BYPASS_DETECTED).exists()
    assert not Incident.objects.exists()


def test_a_deployment_without_any_gate_call_is_a_high_missing_detection(
    pipeline, own_system, client_for, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        answer = report_deployment(client_for(pipeline), own_system)

    assert answer["gate"] == {"decision": "missing", "audit_entry": None}
    assert answer["circumvention"] is True
    [event] = detections()
    assert event.severity == "high"
    assert event.attributes["details"]["gate_decision"] == "missing"
    assert "reasons" not in event.attributes["details"]
    recorded = entry_of(AuditAction.DEPLOYMENT_RECORDED, answer["id"])
    assert event.attributes["audit_refs"][0] == str(recorded.pk)
    incident = Incident.objects.get(system__name=PLATFORM_SYSTEM_NAME)
    assert (incident.team.slug, incident.severity) == ("security", "high")
    assert str(recorded.pk) in linked_audit_entries(incident)


def test_deploying_another_artifact_than_the_allowed_one_is_missing(
    pipeline, own_system, client_for, django_capture_on_commit_callbacks
):
    client = client_for(pipeline)
    assert ask_gate(client, own_system, artifact=ARTIFACT) == "allow"

    with django_capture_on_commit_callbacks(execute=True):
        answer = report_deployment(client, own_system, artifact=ARTIFACT.replace("cd", "ef"))

    assert answer["gate"]["decision"] == "missing"
    assert [event.attributes["details"]["gate_decision"] for event in detections()] == ["missing"]


def test_the_latest_gate_decision_before_the_deployment_counts(pipeline, own_system, client_for):
    incident = IncidentFactory(system=own_system, severity=Severity.CRITICAL)
    now = timezone.now()
    with time_machine.travel(now - timedelta(minutes=30), tick=False):
        assert ask_gate(client_for(pipeline), own_system) == "deny"
    Incident.objects.filter(pk=incident.pk).update(status="resolved", resolved_at=now)
    with time_machine.travel(now - timedelta(minutes=10), tick=False):
        assert ask_gate(client_for(pipeline), own_system) == "allow"
    allowed_entry = AuditLog.objects.filter(action=AuditAction.CICD_GATE_DECIDED).order_by("-seq").first()
    client = client_for(pipeline)

    later = report_deployment(client, own_system, deployed_at=(now - timedelta(minutes=5)).isoformat())
    between = report_deployment(client, own_system, deployed_at=(now - timedelta(minutes=20)).isoformat())
    before = report_deployment(client, own_system, deployed_at=(now - timedelta(hours=1)).isoformat())

    assert later["gate"] == {"decision": "allow", "audit_entry": str(allowed_entry.pk)}
    assert between["gate"]["decision"] == "deny"
    assert before["gate"]["decision"] == "missing"


def test_a_switched_off_detector_records_the_circumvention_but_reports_nothing(
    pipeline, own_system, admin_user, client_for, django_capture_on_commit_callbacks
):
    switch_detector(admin_user, enabled=False)

    with django_capture_on_commit_callbacks(execute=True):
        answer = report_deployment(client_for(pipeline), own_system)

    assert answer["circumvention"] is True
    assert detections() == []
    assert bypass_scan_gate_circumvention() == 0


def test_the_minute_scan_reports_a_detection_lost_after_commit_once(pipeline, own_system, client_for):
    # Without running the commit hooks, the detection is lost: the scan is the safety net.
    answer = report_deployment(client_for(pipeline), own_system)
    assert detections() == []

    assert bypass_scan_gate_circumvention() == 1
    assert bypass_scan_gate_circumvention() == 0
    [event] = detections()
    assert event.attributes["source"] == f"deployment:{answer['id']}"
    recorded = entry_of(AuditAction.DEPLOYMENT_RECORDED, answer["id"])
    assert str(recorded.pk) in event.attributes["audit_refs"]


def test_the_commit_hook_and_the_scan_name_the_same_detection(
    pipeline, own_system, client_for, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        report_deployment(client_for(pipeline), own_system)
    # An hour boundary between the two does not make it a second detection: its period is the recording.
    with time_machine.travel(timezone.now() + timedelta(minutes=59), tick=False):
        assert bypass_scan_gate_circumvention() == 0
    assert len(detections()) == 1


def test_the_service_refuses_naive_and_future_times(own_system, pipeline):
    from governance.services.deployments import DeploymentInvalid

    with pytest.raises(DeploymentInvalid) as naive:
        deployment_record(
            system=own_system, artifact="a", environment="production", deployed_at=timezone.now().replace(tzinfo=None),
            actor=pipeline,
        )  # fmt: skip
    with pytest.raises(DeploymentInvalid) as future:
        deployment_record(
            system=own_system, artifact="a", environment="production",
            deployed_at=timezone.now() + timedelta(minutes=6), actor=pipeline,
        )  # fmt: skip
    assert set(naive.value.fields) == set(future.value.fields) == {"deployed_at"}
    assert not Deployment.objects.exists()


# --- evaluation results without an eval run --------------------------------------------------------------------
def test_a_posted_result_of_a_gateway_suite_is_a_detection_and_never_a_pass_at_the_gate(
    pipeline, own_system, client_for, django_capture_on_commit_callbacks
):
    client = client_for(pipeline)
    payload = {
        "system": own_system.name,
        "suite": "accuracy",
        "metric": "exact_match",
        "value": 1.0,
        "threshold": 0.8,
        "ran_at": timezone.now().isoformat(),
    }

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(EVALUATION_RUNS_URL, {**payload, "system": str(own_system.pk)})

    assert answer.status_code == 201, answer.json()
    assert (answer.json()["passed"], answer.json()["provenance"]) == (True, "reported")
    run = EvaluationRun.objects.get()
    assert run.provenance == EvaluationProvenance.REPORTED
    recorded = entry_of(AuditAction.EVALUATION_RECORDED, run.pk)
    assert recorded.data["provenance"] == "reported"
    [event] = detections()
    assert event.severity == "high"
    assert event.attributes["source"] == f"evaluation_run:{run.pk}"
    assert event.attributes["details"] == {
        "system": str(own_system.pk),
        "system_name": "fraud-scorer",
        "suite": "accuracy",
        "evaluation_run": str(run.pk),
    }
    assert event.attributes["audit_refs"][0] == str(recorded.pk)
    incident = Incident.objects.get(system__name=PLATFORM_SYSTEM_NAME)
    assert incident.team.slug == "security"
    assert str(recorded.pk) in linked_audit_entries(incident)
    # The gate is not fooled: the posted "pass" is a deny reason.
    gate = client.post(GATE_URL, {"system": own_system.name, "artifact": ARTIFACT}).json()
    assert gate["decision"] == "deny"
    [reason] = gate["reasons"]
    assert reason.startswith("latest accuracy/exact_match result posted by svc-deploy without an eval run")
    assert str(run.pk) in reason


def test_a_posted_pass_does_not_hide_a_failed_gateway_run(upstream, pipeline, own_system, client_for):
    client = client_for(pipeline)
    upstream.respond = model(lambda prompt: "I do not know.")
    failed = client.post(run_url("accuracy"), {"system": own_system.name}).json()
    assert failed["passed"] is False
    posted = client.post(
        EVALUATION_RUNS_URL,
        {"system": str(own_system.pk), "suite": "accuracy", "metric": "exact_match", "value": 1.0, "threshold": 0.8,
         "ran_at": (timezone.now() + timedelta(seconds=1)).isoformat()},
    )  # fmt: skip
    assert posted.status_code == 201

    gate = client.post(GATE_URL, {"system": own_system.name, "artifact": ARTIFACT}).json()

    assert gate["decision"] == "deny"
    assert "without an eval run" in gate["reasons"][0]


def test_a_posted_result_of_an_external_suite_is_accepted_as_before(
    pipeline, own_system, client_for, django_capture_on_commit_callbacks
):
    client = client_for(pipeline)
    payload = {"system": str(own_system.pk), "suite": "holdout", "metric": "auc", "value": 0.91, "threshold": 0.85,
               "ran_at": timezone.now().isoformat()}  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(EVALUATION_RUNS_URL, payload).status_code == 201

    assert detections() == []
    assert bypass_scan_gate_circumvention() == 0
    assert ask_gate(client, own_system) == "allow"


def test_a_real_eval_run_through_the_gateway_is_no_detection(
    upstream, pipeline, own_system, client_for, django_capture_on_commit_callbacks
):
    upstream.respond = model(knowledgeable)
    client = client_for(pipeline)

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(run_url("accuracy"), {"system": own_system.name})

    assert answer.status_code == 201, answer.json()
    assert answer.json()["provenance"] == "gateway"
    assert EvaluationRun.objects.get().provenance == EvaluationProvenance.GATEWAY
    assert detections() == []
    assert bypass_scan_gate_circumvention() == 0
    assert ask_gate(client, own_system) == "allow"
