"""The governed tables and the PostgreSQL triggers that log every write to them (``governed_changes``).

A table is governed when EVERY write Vigil itself makes to it is audited in the same transaction, so a
write whose transaction left no audit entry did not come through Vigil (``bypass_scan_direct_writes``).
Checked write paths (services, API, admin, data migrations) per table:

- ``governance_team``, ``governance_aisystem``: ``organization`` services and the audited admin;
  the synthetic fleet (``ensure_fleet`` / ``deactivate_fleet``) audits per system; no deletes anywhere.
- ``governance_user_groups``, ``governance_user_teams`` (roles and team memberships): ``user_create``,
  ``user_set_roles``, ``service_account_create``, the user admin (audits when roles or teams change;
  Django's ``set()`` writes nothing when nothing changes; users are deactivated, never deleted).
- ``platform_config``, ``platform_config_history``: ``registry.set`` / ``seed_missing``; the seeding
  data migrations count as accounted for (see below).
- ``auto_approval_policies``: the ``hitl.services.policies`` functions, which the API and admin call.
- ``rca_templates``: ``rca_template_update``; seeded by a data migration.
- ``governance_controlassessment``, ``governance_evaluationrun``: ``assessments`` services (the API,
  the eval suites, the demo seed) and the audited admin; evidence is never deleted.
- ``policies``, ``policy_versions``: the ``governance.services.policies`` functions, which the API, the admin
  and its actions call (the admin edits nothing directly); versions are never deleted (a trigger refuses it).
  Whoever fills a version's shadow report audits ``policy.shadow_replayed`` in the same transaction.

Not governed (Vigil writes them without an audit entry per write): ``governance_user`` (``last_login``
on every token), ``review_decisions`` (shadow-mode policies record what they would decide, unaudited),
``review_queue``, ``incidents`` (the lifecycle tick and auto-assist update rows in bulk), events, alerts,
metrics and rate-limit counters (hot, operational).

Accounted transactions: a statement trigger on ``audit_log`` records the txid of every transaction that
appended audit entries in ``audited_transactions``; one on ``django_migrations`` does the same for
transactions that applied a migration (Django records a data migration in the transaction that ran it),
so seeding defaults on install or upgrade is not reported. ``post_migrate`` re-seeding after a ``flush``
is not accounted for (a flush empties the audit log too: development and tests only).

Changing ``GOVERNED_TABLES`` needs a migration that calls ``triggers_install_sql`` / ``triggers_drop_sql``
for the difference (naming the tables itself: a migration must not read this tuple, which grows later);
both are idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ACCOUNTING_TABLES",
    "CRITICAL_TABLES",
    "GOVERNED_TABLES",
    "accounting_install_sql",
    "accounting_drop_sql",
    "function_install_sql",
    "function_drop_sql",
    "trigger_name",
    "triggers_drop_sql",
    "triggers_install_sql",
]

GOVERNED_TABLES: tuple[str, ...] = (
    "auto_approval_policies",
    "governance_aisystem",
    "governance_controlassessment",
    "governance_evaluationrun",
    "governance_team",
    "governance_user_groups",
    "governance_user_teams",
    "platform_config",
    "platform_config_history",
    "policies",
    "policy_versions",
    "rca_templates",
)
# A write to one of these is critical whatever the operation: configuration, privileges, and what
# decides without a human.
CRITICAL_TABLES = frozenset(
    {"platform_config", "platform_config_history", "governance_user_groups", "auto_approval_policies"}
)
# Tables whose inserts mark their transaction as accounted for (see the module docstring).
ACCOUNTING_TABLES: tuple[str, ...] = ("audit_log", "django_migrations")
# How many primary keys of the changed rows one change row keeps.
ROW_IDS_KEPT = 10

CHANGE_FUNCTION = "vigil_governed_change_record"
ACCOUNTING_FUNCTION = "vigil_accounted_transaction_record"
_OPERATIONS = {
    "insert": ("INSERT", "REFERENCING NEW TABLE AS new_rows"),
    "update": ("UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    "delete": ("DELETE", "REFERENCING OLD TABLE AS old_rows"),
}


def trigger_name(operation: str) -> str:
    """``vigil_governed_<insert|update|delete>`` (PostgreSQL trigger names are per table)."""
    return f"vigil_governed_{operation}"


def function_install_sql() -> str:
    """The statement-level trigger functions. SECURITY DEFINER: any database user's write is logged even
    without privileges on the log tables (``session_user`` still names who connected)."""
    return f"""
CREATE OR REPLACE FUNCTION {CHANGE_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    changed bigint;
    ids jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO changed FROM old_rows;
        SELECT coalesce(jsonb_agg(sample.id), '[]'::jsonb) INTO ids
            FROM (SELECT id::text AS id FROM old_rows LIMIT {ROW_IDS_KEPT}) AS sample;
    ELSE
        SELECT count(*) INTO changed FROM new_rows;
        SELECT coalesce(jsonb_agg(sample.id), '[]'::jsonb) INTO ids
            FROM (SELECT id::text AS id FROM new_rows LIMIT {ROW_IDS_KEPT}) AS sample;
    END IF;
    IF changed = 0 THEN  -- a guarded UPDATE that matched nothing changed nothing
        RETURN NULL;
    END IF;
    INSERT INTO governed_changes
        (table_name, operation, "rows", row_ids, txid, changed_at, db_user, application_name, client_addr)
    VALUES (TG_TABLE_NAME, TG_OP, changed, ids, txid_current(), now(), session_user::text,
            coalesce(current_setting('application_name', true), ''), host(inet_client_addr()));
    RETURN NULL;
END;
$$;
CREATE OR REPLACE FUNCTION {ACCOUNTING_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO audited_transactions (txid, recorded_at, source)
    VALUES (txid_current(), now(), TG_TABLE_NAME)
    ON CONFLICT (txid) DO NOTHING;
    RETURN NULL;
END;
$$;
"""  # noqa: S608 -- module constants only, no input


def function_drop_sql() -> str:
    return f"DROP FUNCTION IF EXISTS {CHANGE_FUNCTION}();\nDROP FUNCTION IF EXISTS {ACCOUNTING_FUNCTION}();\n"


def triggers_install_sql(tables: Iterable[str]) -> str:
    """Three AFTER … FOR EACH STATEMENT triggers per table (PostgreSQL allows transition tables only on
    single-event triggers), each writing ONE ``governed_changes`` row per statement that changed rows."""
    statements = []
    for table in tables:
        for operation, (event, referencing) in _OPERATIONS.items():
            name = trigger_name(operation)
            statements.append(
                f'DROP TRIGGER IF EXISTS {name} ON "{table}";\n'
                f'CREATE TRIGGER {name} AFTER {event} ON "{table}" {referencing}\n'
                f"    FOR EACH STATEMENT EXECUTE FUNCTION {CHANGE_FUNCTION}();"
            )
    return "\n".join(statements)


def triggers_drop_sql(tables: Iterable[str]) -> str:
    return "\n".join(
        f'DROP TRIGGER IF EXISTS {trigger_name(operation)} ON "{table}";'
        for table in tables
        for operation in _OPERATIONS
    )


def accounting_install_sql() -> str:
    """One AFTER INSERT statement trigger per accounting table: one index probe per statement, whatever
    the number of rows (``audit_log`` is hot; its append-only row triggers are left as they are)."""
    return "\n".join(
        f'DROP TRIGGER IF EXISTS vigil_accounted_transaction ON "{table}";\n'
        f'CREATE TRIGGER vigil_accounted_transaction AFTER INSERT ON "{table}"\n'
        f"    FOR EACH STATEMENT EXECUTE FUNCTION {ACCOUNTING_FUNCTION}();"
        for table in ACCOUNTING_TABLES
    )


def accounting_drop_sql() -> str:
    return "\n".join(f'DROP TRIGGER IF EXISTS vigil_accounted_transaction ON "{table}";' for table in ACCOUNTING_TABLES)
