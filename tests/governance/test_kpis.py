"""The KPI scorecard and the 12 capabilities: computed from data, "not measured" where no engine exists."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from config.keys import KEYS
from config.models import PlatformConfig
from governance.choices import RiskClass, Role
from governance.models import Capability
from governance.services import kpis
from governance.services.audit import audit_chain_verify_and_record
from governance.services.kpis import KPIS, kpi_report
from tests.factories import AISystemFactory, ControlAssessmentFactory, EvaluationRunFactory

pytestmark = pytest.mark.django_db

NOT_YET_MEASURED = [
    "mttd_critical",
    "mttr_critical",
]
KPI_FIELDS = {"code", "label", "baseline", "target", "value", "display", "status", "detail"}


def kpi(code: str, report: dict | None = None) -> dict:
    report = report or kpi_report()
    return next(item for item in report["kpis"] if item["code"] == code)


def capability(code: str, report: dict | None = None) -> dict:
    report = report or kpi_report()
    return next(item for item in report["capabilities"]["items"] if item["code"] == code)


# --- the API ----------------------------------------------------------------------------------------
def test_the_kpis_endpoint_returns_every_kpi_of_the_plan_and_the_capabilities(client_for, viewer):
    response = client_for(viewer).get("/api/v1/kpis")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"generated_at", "kpis", "capabilities", "response_times"}
    assert [item["code"] for item in body["kpis"]] == [spec.code for spec in KPIS]
    assert all(set(item) == KPI_FIELDS for item in body["kpis"])
    assert all(item["status"] in {"met", "not_met", "not_measured"} for item in body["kpis"])
    caps = body["capabilities"]
    assert caps["total"] == 12
    assert [item["number"] for item in caps["items"]] == list(range(1, 13))
    assert set(caps["items"][0]) == {"number", "code", "name", "status", "evidence"}


def test_the_kpis_endpoint_requires_authentication(anon_client):
    assert anon_client.get("/api/v1/kpis").status_code == 401


@pytest.mark.parametrize("code", NOT_YET_MEASURED)
def test_a_figure_whose_engine_has_not_landed_is_null_and_not_measured(client_for, viewer, code):
    item = kpi(code, client_for(viewer).get("/api/v1/kpis").json())

    assert item["value"] is None
    assert item["status"] == "not_measured"
    assert item["display"] == "not measured"


def test_a_failing_provider_is_reported_as_not_measured_not_as_a_number(monkeypatch):
    def broken():
        raise RuntimeError("database gone")

    kpis._discover()
    monkeypatch.setitem(kpis._kpi_providers, "config_centralization", broken)

    item = kpi("config_centralization")

    assert (item["value"], item["status"]) == (None, "not_measured")
    assert item["detail"] == "measurement failed: RuntimeError"


def test_a_failing_capability_check_is_reported_as_not_measured(monkeypatch):
    def broken():
        raise RuntimeError("boom")

    kpis._discover()
    monkeypatch.setitem(kpis._capability_checks, "inventory", broken)

    item = capability("inventory")

    assert (item["status"], item["evidence"]) == ("not_measured", "check failed: RuntimeError")


def test_a_provider_for_an_undeclared_kpi_is_refused():
    with pytest.raises(ValueError, match="unknown KPI"):
        kpis.kpi_provider("coffee_consumption")


# --- config centralization --------------------------------------------------------------------------
def test_config_centralization_is_100_percent_after_migrations():
    item = kpi("config_centralization")

    assert item["value"] == 100.0
    assert item["status"] == "met"
    assert item["display"] == f"100% ({len(KEYS)}/{len(KEYS)} keys)"
    assert capability("configuration_management")["status"] == "enforced"


def test_config_centralization_drops_and_names_a_deleted_key():
    PlatformConfig.objects.filter(key="incidents.auto_close").delete()

    report = kpi_report()

    item = kpi("config_centralization", report)
    assert item["value"] == round((len(KEYS) - 1) / len(KEYS) * 100, 1)
    assert item["status"] == "not_met"
    assert item["detail"] == "incidents.auto_close (not stored)"
    cap = capability("configuration_management", report)
    assert cap["status"] == "not_enforced"
    assert "incidents.auto_close (not stored)" in cap["evidence"]


def test_config_centralization_drops_and_names_a_key_holding_an_invalid_value():
    # Drift: a value written around the registry (no validation, no version bump).
    PlatformConfig.objects.filter(key="slo.mttd_seconds").update(value={"critical": "soon"})

    report = kpi_report()

    item = kpi("config_centralization", report)
    assert item["status"] == "not_met"
    assert item["value"] < 100
    assert item["detail"] == "slo.mttd_seconds (invalid)"
    assert capability("configuration_management", report)["status"] == "not_enforced"


def test_config_drift_shows_on_a_scorecard_this_process_has_already_served(settings):
    settings.CONFIG_REFRESH_SECONDS = 0  # not a matter of the refresh interval: drift bumps no version
    assert kpi("config_centralization")["status"] == "met"

    PlatformConfig.objects.filter(key="slo.mttd_seconds").update(value={"critical": "soon"})

    item = kpi("config_centralization")
    assert (item["status"], item["detail"]) == ("not_met", "slo.mttd_seconds (invalid)")


# --- capabilities -----------------------------------------------------------------------------------
def test_the_capabilities_figure_counts_the_enforced_items():
    AISystemFactory()
    audit_chain_verify_and_record()

    report = kpi_report()

    enforced = [item["code"] for item in report["capabilities"]["items"] if item["status"] == "enforced"]
    figure = kpi("capabilities", report)
    assert report["capabilities"]["enforced"] == len(enforced)
    assert figure["value"] == len(enforced)
    assert figure["display"] == f"{len(enforced)}/12"
    assert figure["target"] == "12/12"
    assert figure["status"] == "not_met"  # nothing is evaluated, no policy is active, no prediction made
    for item in report["capabilities"]["items"]:
        if item["status"] != "enforced":
            assert item["code"] in figure["detail"]


def test_every_capability_has_a_check_so_none_is_not_measured():
    report = kpi_report()

    assert [item["code"] for item in report["capabilities"]["items"] if item["status"] == "not_measured"] == []


def test_inventory_is_enforced_once_an_active_system_exists():
    assert capability("inventory")["status"] == "not_enforced"

    AISystemFactory(name="fraud-scoring")

    item = capability("inventory")
    assert item["status"] == "enforced"
    assert item["evidence"] == "1 active AI systems registered across 1 teams"


def test_inventory_ignores_retired_systems():
    AISystemFactory(is_active=False)

    assert capability("inventory")["status"] == "not_enforced"


def test_the_capabilities_figure_rises_when_a_capability_becomes_enforced():
    before = kpi("capabilities")["value"]

    AISystemFactory(risk_class=RiskClass.MINIMAL)

    assert kpi("capabilities")["value"] == before + 2  # inventory and risk classification


def test_risk_classification_is_not_enforced_while_a_high_risk_system_lacks_a_control_assessment():
    AISystemFactory(name="credit-decisioning", risk_class=RiskClass.HIGH)

    item = capability("risk_classification")

    assert item["status"] == "not_enforced"
    assert "credit-decisioning" in item["evidence"]


def test_risk_classification_is_enforced_once_every_high_risk_system_is_assessed():
    system = AISystemFactory(name="credit-decisioning", risk_class=RiskClass.HIGH)
    AISystemFactory(risk_class=RiskClass.MINIMAL)

    ControlAssessmentFactory(system=system)

    item = capability("risk_classification")
    assert item["status"] == "enforced"
    assert item["evidence"] == "2 systems classified; all 1 high-risk systems assessed"


def test_a_control_assessment_older_than_a_year_does_not_count():
    system = AISystemFactory(name="credit-decisioning", risk_class=RiskClass.HIGH)
    ControlAssessmentFactory(system=system, assessed_at=timezone.now() - timedelta(days=400))

    assert capability("risk_classification")["status"] == "not_enforced"


def test_evaluation_is_enforced_when_every_high_risk_system_was_evaluated_in_30_days():
    system = AISystemFactory(risk_class=RiskClass.HIGH)
    assert capability("evaluation")["status"] == "not_enforced"

    EvaluationRunFactory(system=system, ran_at=timezone.now() - timedelta(days=3))

    assert capability("evaluation")["status"] == "enforced"


def test_evaluation_is_not_enforced_while_a_high_risk_system_has_only_old_runs():
    evaluated = AISystemFactory(risk_class=RiskClass.HIGH)
    stale = AISystemFactory(name="income-verification-llm", risk_class=RiskClass.HIGH)
    EvaluationRunFactory(system=evaluated)
    EvaluationRunFactory(system=stale, ran_at=timezone.now() - timedelta(days=45))

    item = capability("evaluation")

    assert item["status"] == "not_enforced"
    assert "income-verification-llm" in item["evidence"]


def test_audit_trail_is_enforced_after_a_successful_chain_verification():
    assert capability("audit_trail")["status"] == "not_enforced"

    audit_chain_verify_and_record()

    item = capability("audit_trail")
    assert item["status"] == "enforced"
    assert item["evidence"].startswith("chain of ")


def test_audit_trail_lapses_when_the_last_verification_is_older_than_two_hours():
    audit_chain_verify_and_record()

    with time_machine.travel(timezone.now() + timedelta(hours=3)):
        item = capability("audit_trail")

    assert item["status"] == "not_enforced"
    assert item["evidence"].startswith("last verification is older than 2 h")


def test_access_control_is_enforced_when_every_api_endpoint_requires_authentication():
    item = capability("access_control")

    assert item["status"] == "enforced"
    assert item["evidence"].startswith("all ")


def test_every_capability_in_the_table_is_reported():
    report = kpi_report()

    assert [item["code"] for item in report["capabilities"]["items"]] == list(
        Capability.objects.order_by("number").values_list("code", flat=True)
    )


# --- the command and the admin home page ------------------------------------------------------------
def test_the_kpis_command_prints_the_scorecard_table():
    out = StringIO()

    call_command("kpis", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["KPI", "Baseline", "Target", "Now", "Status"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    config_row = next(line for line in lines if line.startswith("Config centralization"))
    assert f"100% ({len(KEYS)}/{len(KEYS)} keys)" in config_row
    assert config_row.endswith("✔ met")
    mttd_row = next(line for line in lines if line.startswith("MTTD (critical)"))
    assert mttd_row.endswith("— not measured")
    assert any(line.startswith("Governance capabilities: ") and line.endswith("/12 enforced") for line in lines)
    assert any("1. AI system inventory: no active AI system is registered" in line for line in lines)


def test_the_kpis_command_prints_json_with_json_flag():
    out = StringIO()

    call_command("kpis", "--json", stdout=out)

    report = json.loads(out.getvalue())
    assert [item["code"] for item in report["kpis"]] == [spec.code for spec in KPIS]
    assert kpi("config_centralization", report)["status"] == "met"
    assert report["capabilities"]["total"] == 12


def test_the_admin_home_page_shows_the_kpi_table(client, make_user, team):
    client.force_login(make_user(Role.VIEWER, teams=[team]))

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="vigil-kpis"' in page
    for spec in KPIS:
        assert f'data-kpi="{spec.code}"' in page
    assert 'class="kpi-row kpi-met" data-kpi="config_centralization"' in page
    assert 'class="kpi-row kpi-not_measured" data-kpi="mttd_critical"' in page
    assert page.count('class="capability-row') == 12


def test_the_admin_home_page_is_not_shown_to_a_service_account(client, make_user):
    client.force_login(make_user(Role.INGEST, is_service_account=True))

    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_policy_as_code_is_enforced_once_a_validated_policy_is_active(admin_user):
    import yaml

    from governance.services.policies import policy_create, policy_version_activate

    document = {"apiVersion": "vigil/v1", "kind": "Policy", "metadata": {"id": "gate", "name": "Gate"},
                "spec": {"default_action": "allow", "rules": [
                    {"id": "floor", "category": "model_perf", "severity": "high", "action": "deny",
                     "when": [{"metric": "exact_match", "suite": "accuracy", "op": "<", "value": 0.8}]}]}}  # fmt: skip
    version = policy_create(text=yaml.safe_dump(document), actor=admin_user)
    item = capability("policy_as_code")
    assert item["status"] == "not_enforced"
    assert item["evidence"] == "no policy is active (1 stored, none activated)"

    policy_version_activate(version=version, actor=admin_user)

    item = capability("policy_as_code")
    assert item["status"] == "enforced"
    assert item["evidence"].startswith("1 active validated policies; 0 gate decisions in 30 days")
