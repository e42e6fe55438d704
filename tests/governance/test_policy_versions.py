"""Policies and their versions through the services: creation, numbering, linting verdicts, activation and
rollback, immutability (model and PostgreSQL triggers), concurrency, diffs, the governed-table accounting,
and ``manage.py policy_lint --policy``."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from governance.choices import AuditAction, Role
from governance.models import AuditLog, GovernedChange, Policy, PolicyVersion, PolicyVersionImmutable
from governance.services.policies import (
    PolicyInvalid,
    PolicyKeyTaken,
    PolicyPermissionDenied,
    PolicyTooLarge,
    PolicyVersionDuplicate,
    PolicyVersionNotValidated,
    policy_create,
    policy_deactivate,
    policy_version_activate,
    policy_version_create,
    policy_version_diff,
)
from governance.services.policy_lint import MAX_DOCUMENT_BYTES
from tests.governance.policy_documents import KEY, invalid_policy_text, policy_document, policy_text, rule

pytestmark = pytest.mark.django_db


def actions() -> list[str]:
    return list(AuditLog.objects.order_by("seq").values_list("action", flat=True))


@pytest.fixture
def created(admin_user, team):
    return policy_create(text=policy_text(), actor=admin_user)


@pytest.fixture
def policy(created):
    return created.policy


# --- creation -------------------------------------------------------------------------------------------------
def test_creating_from_yaml_stores_version_1_exactly_as_submitted(admin_user, team):
    text = "# owned by fraud-ml\n" + policy_text(description="Fairness gaps go to a human.")

    version = policy_create(text=text, actor=admin_user)

    policy = Policy.objects.get()
    assert (policy.key, policy.name, policy.description, policy.team) == (
        KEY, "Fairness guard", "Fairness gaps go to a human.", team,
    )  # fmt: skip
    assert policy.active_version is None and policy.is_active is False and policy.created_by == admin_user
    stored = PolicyVersion.objects.get()
    assert stored == version and stored.version == 1
    assert stored.content == text
    assert stored.content_format == "yaml"
    assert stored.content_sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert stored.document == yaml.safe_load(text)
    assert stored.validated is True
    assert stored.lint_counts["error"] == 0 and stored.lint_counts["warning"] > 0
    assert {f["level"] for f in stored.validation_errors} == {"warning"}
    assert len(stored.validation_errors) == stored.lint_counts["warning"]
    assert stored.created_by == admin_user and stored.activated_at is None and stored.shadow_report is None
    assert actions() == [AuditAction.POLICY_CREATED, AuditAction.POLICY_VERSION_CREATED]


def test_creating_from_json_text_and_from_a_document_stores_json(admin_user, team):
    json_text = json.dumps(policy_document(key="from-json-text"))
    from_text = policy_create(text=json_text, filename="p.json", actor=admin_user)
    from_document = policy_create(document=policy_document(key="from-document"), actor=admin_user)

    assert from_text.content == json_text and from_text.content_format == "json"
    assert from_document.content_format == "json"
    assert json.loads(from_document.content) == policy_document(key="from-document")
    assert from_document.document == policy_document(key="from-document")
    assert from_text.validated and from_document.validated


def test_json_text_is_recognised_without_a_json_filename(admin_user, team):
    version = policy_create(text=json.dumps(policy_document()), actor=admin_user)

    assert version.content_format == "json"


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("apiVersion: [unclosed", "text", "invalid YAML"),
        (policy_text(key="Not A Slug"), "metadata.id", "a slug"),
        (yaml.safe_dump({"apiVersion": "vigil/v1", "kind": "Policy", "spec": {}}), "metadata.id", "missing"),
        (policy_text(key="lint"), "metadata.id", "reserved"),
        (policy_text(owner_team="nobody"), "metadata.owner_team", "no team with the slug 'nobody'"),
        ('metadata: {id: nul, name: "a\\0b"}\n', "text", "NUL"),
    ],
)
def test_a_document_that_cannot_become_a_policy_is_refused_naming_the_field(admin_user, team, text, field, message):
    with pytest.raises(PolicyInvalid) as refused:
        policy_create(text=text, actor=admin_user)

    assert message in refused.value.fields[field][0]
    assert not Policy.objects.exists() and not PolicyVersion.objects.exists() and actions() == []


def test_a_policy_with_lint_errors_is_created_with_an_unvalidated_version_1(admin_user, team):
    version = policy_create(text=invalid_policy_text(), actor=admin_user)

    assert version.validated is False
    assert "duplicate-id" in {f["name"] for f in version.validation_errors}


def test_an_existing_key_is_refused(created, admin_user):
    with pytest.raises(PolicyKeyTaken) as refused:
        policy_create(text=policy_text(name="Another"), actor=admin_user)

    assert "already exists" in refused.value.fields["metadata.id"][0]
    assert Policy.objects.count() == 1


def test_a_governance_lead_writes_only_their_teams_and_platform_wide_policies(make_user, team, other_team):
    outsider = make_user(Role.GOVERNANCE_LEAD, teams=[other_team])
    viewer = make_user(Role.VIEWER, teams=[team])

    with pytest.raises(PolicyPermissionDenied):
        policy_create(text=policy_text(), actor=outsider)
    with pytest.raises(PolicyPermissionDenied):
        policy_create(text=policy_text(owner_team=None), actor=viewer)
    assert policy_create(text=policy_text(owner_team=None), actor=outsider).policy.team is None
    assert not Policy.objects.filter(team=team).exists()


# --- versions -------------------------------------------------------------------------------------------------
def test_versions_are_numbered_1_to_n(policy, admin_user):
    for value in (0.2, 0.3, 0.4):
        policy_version_create(policy=policy, text=policy_text(rules=[rule("dp-gap", value=value)]), actor=admin_user)

    assert list(policy.versions.order_by("version").values_list("version", flat=True)) == [1, 2, 3, 4]
    assert actions().count(AuditAction.POLICY_VERSION_CREATED) == 4
    entry = AuditLog.objects.filter(action=AuditAction.POLICY_VERSION_CREATED).order_by("-seq").first()
    assert entry.data["version"] == 4 and entry.data["policy"]["key"] == KEY


def test_a_version_with_lint_errors_is_stored_unvalidated_with_its_errors_and_warnings(policy, admin_user):
    version = policy_version_create(policy=policy, text=invalid_policy_text(), actor=admin_user)

    assert version.version == 2 and version.validated is False
    assert version.lint_counts["error"] >= 1
    levels = [f["level"] for f in version.validation_errors]
    assert set(levels) == {"error", "warning"}
    assert levels.count("error") == version.lint_counts["error"]
    duplicate = next(f for f in version.validation_errors if f["name"] == "duplicate-id")
    assert duplicate["code"] == "VGL010" and duplicate["line"] is not None


def test_a_version_that_does_not_parse_is_stored_without_a_document(policy, admin_user):
    version = policy_version_create(policy=policy, text="spec: [unclosed\n", actor=admin_user)

    assert version.document is None and version.validated is False
    assert version.validation_errors[0]["name"] == "syntax"


def test_a_version_must_name_the_policy_and_keep_its_owner(policy, admin_user, other_team):
    with pytest.raises(PolicyInvalid) as wrong_id:
        policy_version_create(policy=policy, text=policy_text(key="other-policy"), actor=admin_user)
    with pytest.raises(PolicyInvalid) as wrong_team:
        policy_version_create(policy=policy, text=policy_text(owner_team=other_team.slug), actor=admin_user)

    assert KEY in wrong_id.value.fields["metadata.id"][0]
    assert "fraud-ml" in wrong_team.value.fields["metadata.owner_team"][0]
    assert policy.versions.count() == 1


def test_content_identical_to_the_latest_version_is_refused(policy, admin_user):
    with pytest.raises(PolicyVersionDuplicate) as refused:
        policy_version_create(policy=policy, text=policy_text(), actor=admin_user)

    assert "identical to version 1" in refused.value.fields["text"][0]
    assert policy.versions.count() == 1


def test_a_version_over_the_linters_size_bound_is_refused(policy, admin_user):
    text = policy_text() + "#" * MAX_DOCUMENT_BYTES

    with pytest.raises(PolicyTooLarge) as refused:
        policy_version_create(policy=policy, text=text, actor=admin_user)

    assert refused.value.too_many and "at most 1,000,000" in refused.value.fields["text"][0]


def test_a_lead_of_another_team_cannot_add_a_version(policy, make_user, other_team):
    outsider = make_user(Role.GOVERNANCE_LEAD, teams=[other_team])

    with pytest.raises(PolicyPermissionDenied):
        policy_version_create(policy=policy, text=policy_text(name="Changed"), actor=outsider)


def test_a_lead_of_the_owner_team_adds_versions(policy, lead):
    version = policy_version_create(policy=policy, text=policy_text(name="Changed"), actor=lead)

    assert version.version == 2 and version.created_by == lead


# --- activation -----------------------------------------------------------------------------------------------
def test_activation_of_an_unvalidated_version_is_refused_and_changes_nothing(policy, admin_user):
    invalid = policy_version_create(policy=policy, text=invalid_policy_text(), actor=admin_user)
    before = actions()

    with pytest.raises(PolicyVersionNotValidated) as refused:
        policy_version_activate(version=invalid, actor=admin_user)

    assert refused.value.error_count == invalid.lint_counts["error"] >= 1
    policy.refresh_from_db()
    invalid.refresh_from_db()
    assert policy.active_version is None and invalid.activated_at is None
    assert actions() == before


def test_activation_sets_the_active_version_and_is_audited(created, policy, admin_user):
    activated = policy_version_activate(version=created, actor=admin_user, reason="reviewed in GOV-12")

    policy.refresh_from_db()
    assert policy.active_version == created and policy.is_active
    assert activated.activated_by == admin_user and activated.activated_at is not None and activated.is_active
    entry = AuditLog.objects.get(action=AuditAction.POLICY_ACTIVATED)
    assert entry.object_id == str(policy.pk)
    assert entry.data == {
        "policy": {"id": str(policy.pk), "key": KEY}, "version": 1, "version_id": str(created.pk),
        "previous_version": None, "rollback": False, "reason": "reviewed in GOV-12",
        "shadow_replay": "not replayed",
    }  # fmt: skip


def test_the_policy_takes_the_name_and_description_of_the_activated_version(policy, admin_user):
    renamed = policy_version_create(
        policy=policy, text=policy_text(name="Fairness guard v2", description="Stricter."), actor=admin_user
    )

    policy_version_activate(version=renamed, actor=admin_user)

    policy.refresh_from_db()
    assert (policy.name, policy.description) == ("Fairness guard v2", "Stricter.")


def test_rolling_back_to_an_older_validated_version_is_audited_as_an_activation(created, policy, admin_user):
    newer = policy_version_create(policy=policy, text=policy_text(rules=[rule("dp-gap", value=0.2)]), actor=admin_user)
    policy_version_activate(version=newer, actor=admin_user)

    policy_version_activate(version=created, actor=admin_user, reason="v2 blocks too much")

    policy.refresh_from_db()
    assert policy.active_version == created
    entries = AuditLog.objects.filter(action=AuditAction.POLICY_ACTIVATED).order_by("seq")
    assert [(e.data["previous_version"], e.data["version"], e.data["rollback"]) for e in entries] == [
        (None, 2, False),
        (2, 1, True),
    ]
    assert entries.last().data["reason"] == "v2 blocks too much"


def test_activating_the_active_version_again_changes_and_audits_nothing(created, admin_user):
    policy_version_activate(version=created, actor=admin_user)
    before = actions()

    policy_version_activate(version=created, actor=admin_user)

    assert actions() == before


def test_deactivation_is_audited_and_idempotent(created, policy, admin_user):
    policy_version_activate(version=created, actor=admin_user)

    policy_deactivate(policy=policy, actor=admin_user, reason="superseded")
    policy_deactivate(policy=policy, actor=admin_user, reason="again")

    policy.refresh_from_db()
    assert policy.active_version is None
    entry = AuditLog.objects.get(action=AuditAction.POLICY_DEACTIVATED)
    assert (entry.data["previous_version"], entry.data["reason"]) == (1, "superseded")


def test_a_lead_of_another_team_cannot_activate_or_deactivate(created, policy, make_user, other_team):
    outsider = make_user(Role.GOVERNANCE_LEAD, teams=[other_team])

    with pytest.raises(PolicyPermissionDenied):
        policy_version_activate(version=created, actor=outsider)
    with pytest.raises(PolicyPermissionDenied):
        policy_deactivate(policy=policy, actor=outsider)


# --- immutability ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [("content", "changed"), ("validated", False), ("validation_errors", []), ("version", 9), ("document", {})],
)
def test_save_refuses_to_change_what_a_version_says(created, field, value):
    setattr(created, field, value)

    with pytest.raises(PolicyVersionImmutable, match=field):
        created.save()

    assert getattr(PolicyVersion.objects.get(pk=created.pk), field) != value


def test_save_allows_the_activation_and_shadow_columns(created):
    created.shadow_report = {"would_deny": 3}
    created.shadow_replayed_at = timezone.now()
    created.save()

    created.refresh_from_db()
    assert created.shadow_report == {"would_deny": 3}


def test_a_version_refuses_to_be_deleted(created):
    with pytest.raises(PolicyVersionImmutable):
        created.delete()

    assert PolicyVersion.objects.filter(pk=created.pk).exists()


def _raw(sql: str, params: list) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "assignment",
    ["content = 'x'", "validated = false", "validation_errors = '[]'::jsonb", "version = 7", "content_sha256 = 'x'"],
)
def test_the_database_refuses_an_update_of_what_a_version_says(created, assignment):
    with pytest.raises(DatabaseError, match="immutable"):
        _raw(f"UPDATE policy_versions SET {assignment} WHERE id = %s", [created.pk])

    assert PolicyVersion.objects.get(pk=created.pk).content == created.content


@pytest.mark.postgres
def test_the_database_refuses_deleting_a_version(created):
    with pytest.raises(DatabaseError, match="DELETE refused"):
        _raw("DELETE FROM policy_versions WHERE id = %s", [created.pk])

    assert PolicyVersion.objects.filter(pk=created.pk).exists()


@pytest.mark.postgres
def test_the_database_lets_the_shadow_replay_columns_be_written(created):
    _raw("UPDATE policy_versions SET shadow_report = '{\"n\": 1}'::jsonb, shadow_replayed_at = now() WHERE id = %s",
         [created.pk])  # fmt: skip

    assert PolicyVersion.objects.get(pk=created.pk).shadow_report == {"n": 1}


# --- concurrency and accounting (PostgreSQL) ------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_version_creation_never_collides(admin_user, team):
    policy = policy_create(text=policy_text(), actor=admin_user).policy
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def add(value: float) -> None:
        try:
            barrier.wait(timeout=10)
            policy_version_create(
                policy=policy, text=policy_text(rules=[rule("dp-gap", value=value)]), actor=admin_user
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=add, args=(value,)) for value in (0.2, 0.3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(policy.versions.values_list("version", flat=True)) == [1, 2, 3]
    assert AuditLog.objects.filter(action=AuditAction.POLICY_VERSION_CREATED).count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_every_policy_write_through_the_services_is_accounted_for(admin_user, team):
    from governance.services.bypass.direct_writes import bypass_scan_direct_writes

    GovernedChange.objects.all().delete()
    first = policy_create(text=policy_text(), actor=admin_user)
    policy_version_create(policy=first.policy, text=invalid_policy_text(), actor=admin_user)
    policy_version_activate(version=first, actor=admin_user)
    policy_deactivate(policy=first.policy, actor=admin_user)

    bypass_scan_direct_writes(now=timezone.now() + timedelta(seconds=61))

    changes = GovernedChange.objects.filter(table_name__in=["policies", "policy_versions"])
    assert {(c.table_name, c.operation) for c in changes} == {
        ("policies", "INSERT"), ("policies", "UPDATE"), ("policy_versions", "INSERT"), ("policy_versions", "UPDATE"),
    }  # fmt: skip
    assert set(changes.values_list("audited", flat=True)) == {True}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_direct_write_to_a_policy_is_judged_unaudited(admin_user, team):
    from governance.services.bypass.direct_writes import bypass_scan_direct_writes

    policy = policy_create(text=policy_text(), actor=admin_user).policy
    GovernedChange.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE policies SET name = 'renamed' WHERE id = %s", [policy.pk])

    bypass_scan_direct_writes(now=timezone.now() + timedelta(seconds=61))

    change = GovernedChange.objects.get(table_name="policies")
    assert (change.operation, change.audited) == ("UPDATE", False)


# --- diff -----------------------------------------------------------------------------------------------------
def test_the_diff_shows_the_text_and_the_rules_by_id(policy, created, admin_user):
    newer = policy_version_create(
        policy=policy,
        text=policy_text(
            rules=[rule("eo-gap", signal="eo_gap"), rule("dp-gap", value=0.05, action="deny")], default_action="deny"
        ),
        actor=admin_user,
    )

    diff = policy_version_diff(version=newer, against=created)

    assert (diff["policy"], diff["version"], diff["against"]) == (KEY, 2, 1)
    assert diff["text"].startswith(f"--- {KEY} v1\n+++ {KEY} v2\n")
    lines = diff["text"].splitlines()
    added = [line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")]
    removed = [line[1:].strip() for line in lines if line.startswith("-") and not line.startswith("---")]
    assert {"value: 0.05", "action: deny", "- id: eo-gap"} <= set(added)
    assert "default_action: allow" in removed and "default_action: deny" in added
    assert diff["rules"] == {
        "added": ["eo-gap"], "removed": [], "changed": [{"id": "dp-gap", "keys": ["action", "when"]}],
        "order_changed": False,
    }  # fmt: skip
    assert diff["default_action"] == {"from": "allow", "to": "deny", "changed": True}
    assert diff["scope"] == {"from": None, "to": None, "changed": False}


def test_the_diff_notices_removed_and_reordered_rules(admin_user, team):
    first = policy_create(text=policy_text(rules=[rule("a"), rule("b", signal="b"), rule("c", signal="c")]),
                          actor=admin_user)  # fmt: skip
    second = policy_version_create(
        policy=first.policy, text=policy_text(rules=[rule("c", signal="c"), rule("a")]), actor=admin_user
    )

    rules = policy_version_diff(version=second, against=first)["rules"]

    assert (rules["removed"], rules["changed"], rules["order_changed"]) == (["b"], [], True)


# --- manage.py policy_lint --policy ---------------------------------------------------------------------------
def run_lint(*args: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("policy_lint", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue()


def test_the_command_lints_the_active_version_else_the_latest(policy, created, admin_user):
    policy_version_create(policy=policy, text=invalid_policy_text(), actor=admin_user)

    latest_code, latest_out = run_lint("--policy", KEY)
    policy_version_activate(version=created, actor=admin_user)
    active_code, active_out = run_lint("--policy", str(policy.pk), "--format", "json")

    assert latest_code == 1 and f"{KEY}@v2.yaml:" in latest_out and "VGL010 duplicate-id" in latest_out
    assert active_code == 0
    assert json.loads(active_out)["reports"][0]["filename"] == f"{KEY}@v1.yaml"


def test_the_command_lints_a_named_version_and_refuses_unknown_ones(policy, admin_user):
    policy_version_create(policy=policy, text=invalid_policy_text(), actor=admin_user)

    assert run_lint("--policy", KEY, "--version", "1")[0] == 0
    assert run_lint("--policy", KEY, "--version", "2")[0] == 1
    with pytest.raises(Exception, match="no version 3"):
        call_command("policy_lint", "--policy", KEY, "--version", "3", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(Exception, match="no policy 'missing'"):
        call_command("policy_lint", "--policy", "missing", stdout=StringIO(), stderr=StringIO())
