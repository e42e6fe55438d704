"""Bypass detector ``direct_write``: writes to governed tables whose transaction left no audit entry.

PostgreSQL only (triggers). The tests that write run with ``transaction=True``: each raw statement commits
on its own, as a real psql session would, and only committed transactions are judged. Fixtures are made
with factories (writes without audit entries), so each test starts by forgetting the changes logged so far.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from config import registry
from governance.choices import AuditAction, Role
from governance.governed_tables import GOVERNED_TABLES
from governance.models import AISystem, AuditedTransaction, AuditLog, GovernedChange
from governance.services.bypass import BYPASS_CONFIG_KEY, PLATFORM_SYSTEM_NAME, platform_system_ensure
from governance.services.bypass.direct_writes import bypass_scan_direct_writes, governed_changes_purge
from governance.services.organization import ai_system_update
from hitl.models import ReviewStatus
from incidents.models import Incident, RCATemplate
from incidents.services.templates import rca_template_update
from oversight.models import EventRaw
from tests.factories import AISystemFactory, TeamFactory
from tests.hitl.factories import ReviewItemFactory


def forget_logged_changes() -> None:
    """What fixtures and the previous test's flush wrote is not part of the test. The platform system
    detections are reported against is created first (its creation is audited, but logged too)."""
    platform_system_ensure()
    GovernedChange.objects.all().delete()


def raw(sql: str, params: list | None = None) -> int:
    """One statement in its own transaction, as psql in autocommit mode runs it."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.rowcount


def scan() -> int:
    """A scan once the grace (60 s by default) has passed for everything written so far."""
    return bypass_scan_direct_writes(now=timezone.now() + timedelta(seconds=61))


def db_user() -> str:
    return connection.settings_dict["USER"] or "postgres"


# --- detection -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sql", "operation", "severity"),
    [
        ("UPDATE governance_aisystem SET risk_class = 'minimal' WHERE name = 'credit-scorer'", "UPDATE", "high"),
        (
            "INSERT INTO governance_aisystem (id, name, entity_type, team_id, risk_class, description, metadata,"
            " is_active, created_at, updated_at) SELECT gen_random_uuid(), 'shadow-model', 'model', team_id,"
            " 'minimal', '', '{}', true, now(), now() FROM governance_aisystem WHERE name = 'credit-scorer'",
            "INSERT",
            "high",
        ),
        ("DELETE FROM governance_evaluationrun", "DELETE", "critical"),
    ],
)
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_raw_sql_write_becomes_one_detection_and_a_security_incident(sql, operation, severity):
    system = AISystemFactory(name="credit-scorer", risk_class="high")
    system.evaluation_runs.create(suite="fairness", metric="dp_gap", value=0.2, passed=False, ran_at=timezone.now())
    forget_logged_changes()

    assert raw(sql) == 1
    assert bypass_scan_direct_writes() == 0  # within the grace: not judged yet
    assert GovernedChange.objects.get().audited is None

    assert scan() == 1
    change = GovernedChange.objects.get()
    assert (change.operation, change.rows, change.audited, change.db_user) == (operation, 1, False, db_user())
    assert change.application_name == "vigil"  # this connection is Vigil's; it still did not audit
    platform = AISystem.objects.get(name=PLATFORM_SYSTEM_NAME)
    event = EventRaw.objects.get(system=platform)
    assert (event.signal, event.category, event.severity) == ("bypass_direct_write", "security", severity)
    source = f"db:{db_user()}@{change.client_addr or 'local'}/vigil"
    assert event.attributes["source"] == source
    details = event.attributes["details"]
    assert (details["table"], details["operation"], details["rows"], details["count"]) == (
        [change.table_name],
        [operation],
        1,
        1,
    )
    assert details["txid"] == [change.txid]
    assert details["row_ids"] == [f"{change.table_name}:{change.row_ids[0]}"]
    incident = Incident.objects.get(system=platform)
    assert (incident.team.slug, incident.severity) == ("security", severity)
    entry = AuditLog.objects.get(action=AuditAction.BYPASS_DETECTED)
    assert entry.data["detector"] == "direct_write" and entry.data["source"] == source

    assert scan() == 0  # judged once; a second scan finds nothing new
    assert EventRaw.objects.filter(system=platform).count() == 1
    assert GovernedChange.objects.filter(audited=False).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_change_through_vigil_is_judged_audited(admin_user):
    system = AISystemFactory(name="credit-scorer", risk_class="high")
    forget_logged_changes()

    ai_system_update(system=system, actor=admin_user, risk_class="minimal")
    assert scan() == 0
    change = GovernedChange.objects.get()
    assert (change.table_name, change.operation, change.audited) == ("governance_aisystem", "UPDATE", True)
    assert AuditedTransaction.objects.filter(txid=change.txid, source="audit_log").exists()
    assert not EventRaw.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_raw_write_wrapped_with_an_unrelated_audit_free_transaction_is_still_caught(admin_user):
    """An audit entry in ANOTHER transaction does not account for a change."""
    system = AISystemFactory(name="credit-scorer", risk_class="high")
    forget_logged_changes()
    raw("UPDATE governance_aisystem SET risk_class = 'minimal' WHERE id = %s", [system.pk])
    ai_system_update(system=system, actor=admin_user, description="touched through Vigil")
    assert scan() == 1
    assert sorted(GovernedChange.objects.values_list("audited", flat=True)) == [False, True]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_vigil_flows_that_write_governed_tables_leave_no_false_positive(client_for, admin_user, password):
    forget_logged_changes()
    client = client_for(admin_user)
    team = client.post("/api/v1/teams", {"name": "Fraud ML", "slug": "fraud-ml"}, format="json")
    assert team.status_code == 201, team.content
    team_id = team.json()["id"]
    system = client.post(
        "/api/v1/systems",
        {"name": "fraud-scorer", "entity_type": "model", "team": team_id, "risk_class": "high"},
        format="json",
    )
    assert system.status_code == 201, system.content
    system_id = system.json()["id"]
    assert client.patch(f"/api/v1/systems/{system_id}", {"risk_class": "limited"}, format="json").status_code == 200
    user = client.post(
        "/api/v1/users",
        {"username": "rita", "password": password, "roles": [Role.REVIEWER], "teams": [team_id]},
        format="json",
    )
    assert user.status_code == 201, user.content
    value = registry.get(BYPASS_CONFIG_KEY)
    value["direct_write"]["retention_days"] = 14
    registry.set(BYPASS_CONFIG_KEY, value, user=admin_user, reason="keep the change log longer")
    policy = client.post(
        "/api/v1/auto-approval-policies",
        {"policy_name": "routine drift", "severity_filter": ["low"], "auto_action": "approve", "max_risk_score": 20},
        format="json",
    )
    assert policy.status_code == 201, policy.content
    enabled = client.patch(f"/api/v1/auto-approval-policies/{policy.json()['id']}", {"enabled": True}, format="json")
    assert enabled.status_code == 200, enabled.content
    run = client.post(
        "/api/v1/evaluation-runs",
        {
            "system": system_id,
            "suite": "robustness",
            "metric": "accuracy",
            "value": 0.93,
            "threshold": 0.9,
            "ran_at": timezone.now().isoformat(),
        },  # fmt: skip
        format="json",
    )
    assert run.status_code == 201, run.content
    assessment = client.post(
        "/api/v1/control-assessments",
        {
            "system": system_id,
            "control": "human-oversight",
            "reference": "Art. 14",
            "status": "effective",
            "assessed_at": timezone.now().isoformat(),
        },  # fmt: skip
        format="json",
    )
    assert assessment.status_code == 201, assessment.content
    rca_template_update(template=RCATemplate.objects.first(), actor=admin_user, data={"name": "Renamed template"})
    item = ReviewItemFactory(system=AISystem.objects.get(pk=system_id))
    decided = client.post(f"/api/v1/reviews/{item.id}/decide", {"decision": "approve", "rationale": "fine"})
    assert decided.status_code == 200, decided.content
    item.refresh_from_db()
    assert item.status == ReviewStatus.APPROVED

    assert scan() == 0
    assert not EventRaw.objects.filter(signal="bypass_direct_write").exists()
    written = set(GovernedChange.objects.values_list("table_name", flat=True))
    assert written >= {
        "governance_team", "governance_aisystem", "governance_user_groups", "governance_user_teams",
        "platform_config", "platform_config_history", "auto_approval_policies", "governance_evaluationrun",
        "governance_controlassessment", "rca_templates",
    }  # fmt: skip
    assert not GovernedChange.objects.exclude(audited=True).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_bulk_update_logs_one_change_per_statement():
    team = TeamFactory()
    AISystemFactory.create_batch(40, team=team, risk_class="high")
    forget_logged_changes()

    assert raw("UPDATE governance_aisystem SET risk_class = 'minimal' WHERE team_id = %s", [team.pk]) == 40
    assert raw("UPDATE governance_aisystem SET risk_class = 'minimal' WHERE false") == 0  # changed nothing

    change = GovernedChange.objects.get()
    assert (change.rows, len(change.row_ids)) == (40, 10)
    assert scan() == 1
    assert EventRaw.objects.get().attributes["details"]["rows"] == 40


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_source_in_one_hour_is_one_detection_and_writes_to_config_are_critical():
    AISystemFactory(name="credit-scorer")
    forget_logged_changes()
    raw("UPDATE governance_aisystem SET description = 'x' WHERE name = 'credit-scorer'")
    raw("UPDATE platform_config SET description = 'edited by hand' WHERE key = %s", [BYPASS_CONFIG_KEY])

    assert scan() == 1
    event = EventRaw.objects.get()
    assert event.severity == "critical"
    assert event.attributes["details"]["table"] == ["governance_aisystem", "platform_config"]
    assert event.attributes["details"]["count"] == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_switched_off_detector_neither_judges_nor_reports(admin_user):
    value = registry.get(BYPASS_CONFIG_KEY)
    value["direct_write"]["enabled"] = False
    registry.set(BYPASS_CONFIG_KEY, value, user=admin_user, reason="test")
    AISystemFactory(name="credit-scorer")
    forget_logged_changes()
    raw("UPDATE governance_aisystem SET description = 'x' WHERE name = 'credit-scorer'")
    assert scan() == 0
    assert GovernedChange.objects.get().judged_at is None


# --- the triggers ---------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db
def test_triggers_exist_on_exactly_the_governed_tables():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND t.tgname LIKE 'vigil_%%'"
        )
        triggers = cursor.fetchall()
    governed = {(table, f"vigil_governed_{op}") for table in GOVERNED_TABLES for op in ("insert", "update", "delete")}
    accounting = {("audit_log", "vigil_accounted_transaction"), ("django_migrations", "vigil_accounted_transaction")}
    assert set(triggers) == governed | accounting
    assert len(triggers) == len(governed | accounting)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_audit_log_stays_append_only_with_the_accounting_trigger(admin_user):
    from django.db import DatabaseError, transaction

    ai_system_update(system=AISystemFactory(), actor=admin_user, description="audited")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.update(actor="mallory")


# --- purge ----------------------------------------------------------------------------------------------
def _change(*, days_ago: float, judged: bool, txid: int) -> GovernedChange:
    changed_at = timezone.now() - timedelta(days=days_ago)
    return GovernedChange.objects.create(
        table_name="governance_aisystem", operation="UPDATE", rows=1, row_ids=[], txid=txid, changed_at=changed_at,
        db_user="mallory", audited=False if judged else None, judged_at=changed_at if judged else None,
    )  # fmt: skip


@pytest.mark.django_db
def test_purge_deletes_only_judged_changes_older_than_the_retention():
    GovernedChange.objects.all().delete()
    old_judged = _change(days_ago=8, judged=True, txid=1)
    old_unjudged = _change(days_ago=9, judged=False, txid=2)
    recent_judged = _change(days_ago=6, judged=True, txid=3)
    AuditedTransaction.objects.bulk_create(
        [
            AuditedTransaction(txid=2, recorded_at=old_unjudged.changed_at, source="audit_log"),
            AuditedTransaction(txid=4, recorded_at=old_unjudged.changed_at - timedelta(hours=1), source="audit_log"),
        ]
    )
    assert governed_changes_purge() == 1  # retention_days: 7
    assert set(GovernedChange.objects.values_list("pk", flat=True)) == {old_unjudged.pk, recent_judged.pk}
    assert not GovernedChange.objects.filter(pk=old_judged.pk).exists()
    # The unjudged change's transaction row stays until it is judged; older ones go.
    assert list(AuditedTransaction.objects.filter(txid__in=[2, 4]).values_list("txid", flat=True)) == [2]
    assert governed_changes_purge() == 0


# --- SQLite ---------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_without_postgresql_the_scan_reports_nothing():
    if connection.vendor == "postgresql":
        pytest.skip("SQLite behaviour")
    AISystemFactory()
    assert bypass_scan_direct_writes(now=datetime(2030, 1, 1, tzinfo=UTC)) == 0
    assert not GovernedChange.objects.exists()
