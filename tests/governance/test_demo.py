"""The golden demo: scenarios, the orchestrator (outcomes, stop on failure, reproducibility, one run at a
time), the evidence package (export, verify, tampering), the commands and the API."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from governance.choices import AuditAction, DemoRunStatus, Role
from governance.models import AuditLog, DemoRun, DemoScenario
from governance.services import demo_steps
from governance.services.demo import (
    DemoRunConflict,
    DemoRunInvalid,
    demo_run_execute,
    demo_run_start,
    outcome_check,
    scenario_problems,
)
from governance.services.demo_evidence import MANIFEST, evidence_build, evidence_export, evidence_verify

QUICK_STEPS = [{"key": "estate", "params": {}}, {"key": "audit_verify", "params": {}}]
QUICK_EXPECTED = {"estate": {"systems": {"gte": 6}}, "audit_verify": {"chain_ok": {"eq": 1}}}


def make_scenario(name="quick", steps=None, expected=None, **fields) -> DemoScenario:
    return DemoScenario.objects.create(
        scenario_name=name,
        category=fields.pop("category", "training"),
        steps=steps or QUICK_STEPS,
        expected_outcomes=QUICK_EXPECTED if expected is None else expected,
        **fields,
    )


def play(scenario: DemoScenario, seed: int = 42) -> DemoRun:
    run = demo_run_start(scenario=scenario, seed=seed)
    return demo_run_execute(run_id=run.pk)


# --- scenarios ----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_migration_seeds_an_investor_an_audit_and_a_training_scenario_that_can_run():
    scenarios = {s.category: s for s in DemoScenario.objects.filter(enabled=True)}
    assert {"investor", "audit", "training"} <= set(scenarios)
    assert scenarios["investor"].duration_seconds <= 60
    assert scenarios["audit"].duration_seconds <= 300
    for scenario in scenarios.values():
        assert scenario_problems(steps=scenario.steps, expected_outcomes=scenario.expected_outcomes) == {}
        assert [step["key"] for step in scenario.steps][-1] == "kpi_proof"
    audit_steps = {step["key"]: step["params"] for step in scenarios["audit"].steps}
    assert audit_steps["simulate"]["total"] >= 10_000
    assert audit_steps["review_backlog"]["pending"] == 546
    assert audit_steps["incident_backlog"]["open"] == 218


def test_scenario_problems_name_unknown_steps_and_bad_bounds():
    problems = scenario_problems(
        steps=[{"key": "estate"}, {"key": "teleport"}],
        expected_outcomes={"estate": {"systems": {"about": 6}}, "simulate": {}},
    )
    assert "steps.1.key" in problems
    assert "expected_outcomes.estate.systems" in problems
    assert "expected_outcomes.simulate" in problems


def test_every_registered_step_has_its_narration():
    for step in demo_steps.STEPS.values():
        assert step.title and step.narration.what and step.narration.technically and step.narration.why


# --- outcome checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bounds", "held"),
    [
        ({"n": {"gte": 3}}, True),
        ({"n": {"gt": 3}}, False),
        ({"n": {"lt": "@m"}}, True),
        ({"n": {"eq": 3}, "status": {"in": ["met", "x"]}}, True),
        ({"missing": {"gte": 0}}, False),
        ({"status": {"lt": 5}}, False),  # a type mismatch is a failure, not an exception
    ],
)
def test_outcome_check_applies_each_bound(bounds, held):
    ok, failures = outcome_check(bounds, {"n": 3, "m": 4, "status": "met"})
    assert ok is held
    assert bool(failures) is not held


def test_a_failed_bound_says_what_was_expected_and_found():
    ok, failures = outcome_check({"recall": {"gte": 0.9}}, {"recall": 0.5})
    assert not ok
    assert failures == ["recall = 0.5, expected ≥ 0.9"]


# --- the orchestrator ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_run_records_every_step_its_timing_outcome_and_audit_slice():
    run = play(make_scenario())
    assert run.status == DemoRunStatus.SUCCEEDED
    assert not run.active and run.finished_at and run.error == ""
    assert [r["status"] for r in run.step_results] == ["succeeded", "succeeded"]
    estate = run.step_results[0]
    assert estate["counters"]["systems"] == 6
    assert estate["outcome"] == {"expected": {"systems": {"gte": 6}}, "actual": {"systems": 6}, "held": True,
                                 "failures": []}  # fmt: skip
    assert estate["duration_ms"] > 0 and estate["started_at"]
    assert run.kpis_before["kpis"] and run.kpis_after["kpis"]
    first, last = AuditLog.objects.get(seq=run.audit_seq_first), AuditLog.objects.get(seq=run.audit_seq_last)
    assert (first.action, last.action) == (AuditAction.DEMO_RUN_STARTED, AuditAction.DEMO_RUN_FINISHED)
    assert last.data["status"] == "succeeded" and last.data["steps_succeeded"] == 2


@pytest.mark.django_db
def test_a_failed_expectation_stops_the_run_with_a_message_and_skips_the_rest():
    scenario = make_scenario(expected={"estate": {"systems": {"gte": 99}}})
    run = play(scenario)
    assert run.status == DemoRunStatus.FAILED
    assert "estate" in run.error and "systems = 6, expected ≥ 99" in run.error
    assert [r["status"] for r in run.step_results] == ["failed", "skipped"]
    assert not run.active
    assert AuditLog.objects.get(seq=run.audit_seq_last).data["status"] == "failed"


@pytest.mark.django_db
def test_a_step_that_raises_fails_the_run_naming_the_step(monkeypatch):
    def broken(ctx, params):
        raise RuntimeError("the gate is down")

    monkeypatch.setitem(
        demo_steps.STEPS, "audit_verify", dataclasses.replace(demo_steps.STEPS["audit_verify"], run=broken)
    )
    run = play(make_scenario())
    assert run.status == DemoRunStatus.FAILED
    assert run.error == "step 'audit_verify' (Verify the audit chain) raised RuntimeError: the gate is down"
    assert run.step_results[1]["status"] == "failed"


@pytest.mark.django_db
def test_only_one_run_is_active_at_a_time():
    scenario = make_scenario()
    first = demo_run_start(scenario=scenario)
    with pytest.raises(DemoRunConflict, match=str(first.pk)):
        demo_run_start(scenario=scenario)
    demo_run_execute(run_id=first.pk)
    assert demo_run_start(scenario=scenario).status == DemoRunStatus.PENDING


@pytest.mark.django_db
def test_executing_a_run_twice_plays_it_once():
    run = demo_run_start(scenario=make_scenario())
    demo_run_execute(run_id=run.pk)
    finished = AuditLog.objects.filter(action=AuditAction.DEMO_RUN_FINISHED).count()
    assert demo_run_execute(run_id=run.pk).status == DemoRunStatus.SUCCEEDED
    assert AuditLog.objects.filter(action=AuditAction.DEMO_RUN_FINISHED).count() == finished


@pytest.mark.django_db
def test_a_disabled_scenario_or_a_bad_seed_is_refused():
    with pytest.raises(DemoRunInvalid) as exc:
        demo_run_start(scenario=make_scenario(enabled=False))
    assert "scenario" in exc.value.fields
    with pytest.raises(DemoRunInvalid) as exc:
        demo_run_start(scenario=make_scenario("other"), seed=2**70)
    assert "seed" in exc.value.fields


SMALL_STORY = [
    {"key": "estate", "params": {}},
    {"key": "simulate", "params": {"total": 400, "rate_per_s": 2000, "batch_size": 200}},
    {"key": "review_backlog", "params": {"pending": 40, "history": 400}},
    {"key": "review_triage", "params": {}},
    {"key": "human_review", "params": {"capacity": 5}},
    {"key": "incident_backlog", "params": {"open": 30}},
    {"key": "incident_triage", "params": {}},
    {"key": "incident_response", "params": {}},
    {"key": "policy_gate", "params": {}},
    {"key": "bypass_attempt", "params": {}},
    {"key": "audit_verify", "params": {}},
    {"key": "kpi_proof", "params": {}},
]


@pytest.mark.django_db(transaction=True)
def test_a_small_story_plays_every_step_and_its_evidence_verifies(tmp_path):
    """Every step against a small estate, with batches processed on commit as in production."""
    scenario = make_scenario(
        "small",
        steps=SMALL_STORY,
        expected={
            "simulate": {"status": {"eq": "finished"}, "ingested": {"eq": 400}},
            "review_triage": {"pending_after": {"lt": "@pending_before"}},
            "incident_triage": {"open_after": {"lt": "@open_before"}, "unfinished_rca_closed": {"eq": 0}},
            "policy_gate": {"lint_errors": {"eq": 0}, "gate_decision": {"eq": "deny"}},
            "bypass_attempt": {"circumvention": {"eq": 1}, "detections": {"gte": 1}, "security_incidents": {"gte": 1}},
            "kpi_proof": {"mttr_critical": {"in": ["met", "not_measured"]}},
        },
    )
    run = play(scenario, seed=7)
    assert run.status == DemoRunStatus.SUCCEEDED, run.error
    counters = run.counters
    assert counters["review_backlog"]["pending"] >= 40
    assert counters["incident_response"]["open_after"] < counters["incident_backlog"]["open"]
    assert counters["kpi_proof"]["events_ingested"] == "not_met"  # 400 events: the proof does not pretend

    package = evidence_export(run=run, destination=tmp_path)
    result = evidence_verify(package.path)
    assert result.ok, result.problem
    with zipfile.ZipFile(package.path) as archive:
        incidents = json.loads(archive.read("incidents.json"))
        audit = archive.read("audit_log.jsonl").decode().splitlines()
    assert any(row["system__name"] == "vigil-platform" for row in incidents)  # the caught bypass
    assert json.loads(audit[0])["action"] == AuditAction.DEMO_RUN_STARTED
    assert json.loads(audit[-1])["action"] == AuditAction.DEMO_RUN_FINISHED


@pytest.mark.django_db(transaction=True)
def test_the_same_seed_replays_the_same_counters():
    steps = [{"key": "estate", "params": {}}, {"key": "simulate", "params": {"total": 300, "rate_per_s": 2000}}]
    scenario = make_scenario("replay", steps=steps, expected={})
    first, second = play(scenario, seed=11), play(scenario, seed=11)
    assert first.status == second.status == DemoRunStatus.SUCCEEDED
    assert first.counters == second.counters
    assert first.counters["simulate"]["alerts"] > 0


# --- evidence -----------------------------------------------------------------------------------------
@pytest.fixture
def package_bytes(db) -> bytes:
    run = play(make_scenario())
    data, _ = evidence_build(run)
    return data


def rewrite(data: bytes, name: str, change) -> bytes:
    """The package with ``name``'s bytes replaced by ``change(bytes)``, everything else (comment too) kept."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info.filename)
            target.writestr(info.filename, change(content) if info.filename == name else content)
        target.comment = source.comment
    return out.getvalue()


def flip_one_byte(content: bytes) -> bytes:
    index = len(content) // 2
    return content[:index] + bytes([content[index] ^ 0x01]) + content[index + 1 :]


def test_an_untouched_package_verifies(package_bytes):
    result = evidence_verify(package_bytes)
    assert result.ok, result.problem
    assert result.files == 10 and result.audit_rows >= 2


def test_the_package_has_every_file_the_manifest_lists(package_bytes):
    with zipfile.ZipFile(io.BytesIO(package_bytes)) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read(MANIFEST))
    expected = {"step_log.json", "kpis_before.json", "kpis_after.json", "alerts.json", "reviews.json",
                "incidents.json", "decisions.json", "audit_log.jsonl", "config.json", "report.html"}  # fmt: skip
    assert set(manifest["files"]) == expected and names == expected | {MANIFEST}
    assert manifest["audit_chain"]["head_hash"] and manifest["run"]["seed"] == 42


@pytest.mark.parametrize(
    "name",
    [
        "step_log.json",
        "kpis_before.json",
        "kpis_after.json",
        "alerts.json",
        "reviews.json",
        "incidents.json",
        "decisions.json",
        "audit_log.jsonl",
        "config.json",
        "report.html",
        MANIFEST,
    ],  # fmt: skip
)
def test_one_changed_byte_in_any_file_fails_naming_that_file(package_bytes, name):
    result = evidence_verify(rewrite(package_bytes, name, flip_one_byte))
    assert not result.ok
    assert result.problem.startswith(name)


def test_an_audit_row_altered_with_its_file_hash_fixed_still_fails_the_chain(package_bytes):
    import hashlib

    def alter(content: bytes) -> bytes:
        lines = content.decode().splitlines()
        row = json.loads(lines[1])
        row["actor"] = "someone-else"
        lines[1] = json.dumps(row, sort_keys=True)
        return ("\n".join(lines) + "\n").encode()

    source = zipfile.ZipFile(io.BytesIO(package_bytes))
    altered = alter(source.read("audit_log.jsonl"))
    manifest = json.loads(source.read(MANIFEST))
    manifest["files"]["audit_log.jsonl"] = hashlib.sha256(altered).hexdigest()
    manifest_bytes = json.dumps(manifest).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = {"audit_log.jsonl": altered, MANIFEST: manifest_bytes}.get(info.filename)
            target.writestr(info.filename, content if content is not None else source.read(info.filename))
        target.comment = b"vigil-evidence manifest sha256=" + hashlib.sha256(manifest_bytes).hexdigest().encode()
    result = evidence_verify(out.getvalue())
    assert not result.ok
    assert result.problem.startswith("audit_log.jsonl line 2") and "altered" in result.problem


def test_a_removed_audit_row_fails_the_chain(package_bytes):
    def drop_first(content: bytes) -> bytes:
        return b"\n".join(content.split(b"\n")[1:])

    result = evidence_verify(rewrite(package_bytes, "audit_log.jsonl", drop_first))
    assert not result.ok and result.problem.startswith("audit_log.jsonl")


def test_a_file_added_to_the_package_is_named(package_bytes):
    out = io.BytesIO(package_bytes)
    with zipfile.ZipFile(out, "a") as archive:
        archive.writestr("extra.txt", b"hello")
    result = evidence_verify(out.getvalue())
    assert not result.ok and result.problem.startswith("extra.txt")


@pytest.mark.django_db
def test_evidence_of_an_active_run_is_refused():
    from governance.services.demo_evidence import EvidenceNotReady

    run = demo_run_start(scenario=make_scenario())
    with pytest.raises(EvidenceNotReady):
        evidence_build(run)


# --- commands -----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_demo_command_plays_a_scenario_and_prints_the_kpi_table(tmp_path):
    make_scenario()
    out = io.StringIO()
    call_command("demo", scenario="quick", evidence=str(tmp_path / "run.zip"), no_color=True, stdout=out)
    text = out.getvalue()
    assert "Register the AI estate" in text and "Why" in text
    assert "The plan's KPIs" in text and "Open incidents" in text
    assert "succeeded" in text
    assert (tmp_path / "run.zip").is_file()
    verified = io.StringIO()
    call_command("verify_evidence", str(tmp_path / "run.zip"), stdout=verified)
    assert verified.getvalue().startswith("evidence OK")


@pytest.mark.django_db
def test_the_demo_command_fails_when_a_step_fails():
    make_scenario(expected={"estate": {"systems": {"gte": 99}}})
    with pytest.raises(CommandError, match="systems = 6, expected ≥ 99"):
        call_command("demo", scenario="quick", no_color=True, stdout=io.StringIO())


@pytest.mark.django_db
def test_the_demo_command_names_an_unknown_scenario():
    with pytest.raises(CommandError, match="no demo scenario 'nope'"):
        call_command("demo", scenario="nope", stdout=io.StringIO())


def test_verify_evidence_exits_non_zero_naming_the_bad_file(package_bytes, tmp_path):
    path = tmp_path / "bad.zip"
    path.write_bytes(rewrite(package_bytes, "config.json", flip_one_byte))
    with pytest.raises(CommandError, match="config.json"):
        call_command("verify_evidence", str(path), stdout=io.StringIO())
    with pytest.raises(CommandError, match="no such file"):
        call_command("verify_evidence", str(tmp_path / "missing.zip"), stdout=io.StringIO())


# --- API ----------------------------------------------------------------------------------------------
RUNS = "/api/v1/demo/runs"


@pytest.mark.django_db
def test_a_lead_starts_a_run_and_follows_it(client_for, lead):
    make_scenario()
    response = client_for(lead).post(RUNS, {"scenario": "quick", "seed": 5}, format="json")
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]
    body = client_for(lead).get(f"{RUNS}/{run_id}").json()  # eager Celery: already played
    assert body["status"] == "succeeded" and body["seed"] == 5 and body["steps_done"] == 2
    assert body["steps"][0]["narration"]["why"] and body["kpis_after"]["kpis"]
    evidence = client_for(lead).get(f"{RUNS}/{run_id}/evidence")
    assert evidence.status_code == 200 and evidence["Content-Type"] == "application/zip"
    assert evidence_verify(evidence.content).ok


@pytest.mark.django_db
def test_a_second_run_while_one_is_active_is_409(client_for, admin_user):
    demo_run_start(scenario=make_scenario())
    response = client_for(admin_user).post(RUNS, {"scenario": "quick"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


@pytest.mark.django_db
def test_the_evidence_of_a_running_run_is_409(client_for, admin_user):
    run = demo_run_start(scenario=make_scenario())
    assert client_for(admin_user).get(f"{RUNS}/{run.pk}/evidence").status_code == 409


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "scenario"),
        ({"scenario": "nope"}, "scenario"),
        ({"mode": "party"}, "mode"),
        ({"mode": "audit", "seed": "x"}, "seed"),
    ],
)
def test_bad_start_requests_are_400_naming_the_field(client_for, admin_user, payload, field):
    response = client_for(admin_user).post(RUNS, payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_unknown_runs_are_404(client_for, admin_user):
    assert client_for(admin_user).get(f"{RUNS}/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client_for(admin_user).get(f"{RUNS}/not-a-uuid/evidence").status_code == 404


@pytest.mark.django_db
def test_a_viewer_reads_scenarios_but_cannot_start_a_run(client_for, make_user):
    viewer = make_user(Role.VIEWER)
    scenarios = client_for(viewer).get("/api/v1/demo/scenarios")
    assert scenarios.status_code == 200
    assert {"investor-pitch", "audit-walkthrough", "training-tour"} <= {s["scenario_name"] for s in scenarios.json()}
    assert client_for(viewer).post(RUNS, {"mode": "investor"}, format="json").status_code == 403


# --- admin --------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_run_page_has_the_live_panel_and_the_live_view_the_api_shape(client, make_user):
    user = make_user(Role.GOVERNANCE_LEAD)
    client.force_login(user)
    run = play(make_scenario())
    page = client.get(reverse("admin:governance_demorun_change", args=[run.pk])).content.decode()
    assert 'id="demo-live"' in page and 'id="demo-stepper"' in page and 'id="demo-kpis"' in page
    live = client.get(reverse("admin:governance_demorun_live", args=[run.pk])).json()
    assert live["status"] == "succeeded" and len(live["steps"]) == 2
    evidence = client.get(reverse("admin:governance_demorun_evidence", args=[run.pk]))
    assert evidence["Content-Type"] == "application/zip" and evidence_verify(evidence.content).ok


@pytest.mark.django_db
def test_run_now_starts_and_plays_the_selected_scenario(client, make_user):
    client.force_login(make_user(Role.ADMIN))
    scenario = make_scenario()
    response = client.post(
        reverse("admin:governance_demoscenario_changelist"),
        {"action": "run_now", "_selected_action": [str(scenario.pk)]},
    )
    run = DemoRun.objects.get(scenario=scenario)
    assert response.status_code == 302 and str(run.pk) in response["Location"]
    run.refresh_from_db()
    assert run.status == DemoRunStatus.SUCCEEDED


@pytest.mark.django_db
def test_the_scorecard_counts_the_function_metrics_this_process_has_not_flushed_yet():
    """A short run can reach its KPI proof before the periodic flush: the proof writes the buffer first,
    so 'platform observability' reflects what the run did (it read 'nothing flushed' before)."""
    from governance.services.demo import demo_scorecard
    from tasks import metrics
    from tasks.models import FunctionMetric

    metrics.record(name="governance.demo_run", kind="task", latency_ms=12.0)
    assert not FunctionMetric.objects.exists()

    report = demo_scorecard()

    assert FunctionMetric.objects.filter(function_name="governance.demo_run").exists()
    observability = next(c for c in report["capabilities"]["items"] if c["code"] == "observability")
    assert observability["status"] == "enforced", observability["evidence"]
