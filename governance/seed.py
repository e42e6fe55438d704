"""The role groups and the 12 governance capabilities: seeded by migration, re-ensured after ``flush``.

``ensure_roles_and_capabilities`` is idempotent. It runs from the data migration and again on
``post_migrate`` (as Django does for permissions), so a ``manage.py flush`` — which the test runner
uses between transactional tests — never leaves Vigil without its roles or capabilities.
"""

from django.apps import apps as global_apps

from governance.choices import Role

ROLES = list(Role.values)

CAPABILITIES = [
    (
        1,
        "inventory",
        "AI system inventory",
        "Every AI system (model, service, dataset) is registered with an owning team.",
        "governance: AISystem registry",
        ["EU AI Act Art. 49", "ISO/IEC 42001 cl. 8.1"],
    ),
    (
        2,
        "risk_classification",
        "Risk classification",
        "Each system carries its EU AI Act risk tier; high-risk systems have current control assessments.",
        "governance: risk class + ControlAssessment",
        ["EU AI Act Art. 6", "EU AI Act Art. 9"],
    ),
    (
        3,
        "access_control",
        "Access control",
        "Every API endpoint requires an authenticated caller with a role; objects are scoped to teams.",
        "governance: JWT auth, roles, team scoping (rate limits: issue 6)",
        ["EU AI Act Art. 15(5)"],
    ),
    (
        4,
        "configuration_management",
        "Centralized configuration",
        "Thresholds, SLOs, escalation and policy settings live in one versioned, validated, audited registry.",
        "config: platform_config registry",
        ["ISO/IEC 42001 cl. 7.5"],
    ),
    (
        5,
        "audit_trail",
        "Tamper-evident audit trail",
        "Every state change is recorded in a hash-chained log that is verified hourly.",
        "governance: audit_log + audit_verify",
        ["EU AI Act Art. 12", "EU AI Act Art. 19"],
    ),
    (
        6,
        "continuous_monitoring",
        "Continuous monitoring",
        "Telemetry on data quality, performance, fairness, security and compliance is evaluated against rules.",
        "oversight: event pipeline and detection",
        ["EU AI Act Art. 72", "NIST AI RMF MEASURE"],
    ),
    (
        7,
        "evaluation",
        "Evaluation and testing",
        "High-risk systems are evaluated at least every 30 days, results recorded with pass/fail verdicts.",
        "governance: EvaluationRun",
        ["EU AI Act Art. 15", "NIST AI RMF MEASURE 2"],
    ),
    (
        8,
        "human_oversight",
        "Human oversight",
        "Decisions that need judgement go to a human review queue with SLAs; automation is bounded and audited.",
        "hitl: review queue, auto-assist, auto-approval",
        ["EU AI Act Art. 14"],
    ),
    (
        9,
        "incident_management",
        "Incident management and reporting",
        "Serious problems become incidents driven to closure within SLAs, with RCA and regulatory deadlines.",
        "incidents: lifecycle engine",
        ["EU AI Act Art. 73"],
    ),
    (
        10,
        "policy_as_code",
        "Policy as code and release gating",
        "Versioned, linted policies and a CI/CD gate that blocks non-compliant releases.",
        "governance: policies, policy lint, CI/CD gate",
        ["EU AI Act Art. 17", "ISO/IEC 42001 cl. 6.1"],
    ),
    (
        11,
        "observability",
        "Platform observability",
        "Every task and endpoint of Vigil reports invocations, latency, errors and cold starts.",
        "tasks: function metrics",
        ["ISO/IEC 42001 cl. 9.1"],
    ),
    (
        12,
        "predictive_governance",
        "Predictive governance",
        "Drift, compliance and incident risk are predicted from history before they happen, with measured quality.",
        "governance: predictive analysis",
        ["NIST AI RMF MANAGE 4"],
    ),
]


def ensure_roles_and_capabilities(apps=global_apps, schema_editor=None) -> None:
    Group = apps.get_model("auth", "Group")
    Capability = apps.get_model("governance", "Capability")
    for role in ROLES:
        Group.objects.get_or_create(name=role)
    for number, code, name, description, enforced_by, refs in CAPABILITIES:
        Capability.objects.update_or_create(
            code=code,
            defaults={
                "number": number,
                "name": name,
                "description": description,
                "enforced_by": enforced_by,
                "regulatory_refs": refs,
            },
        )


def ensure_after_migrate(sender, using="default", apps=global_apps, **kwargs) -> None:
    """``post_migrate`` handler: re-create roles and capabilities if a flush removed them."""
    from django.db import connections

    if "governance_capability" in connections[using].introspection.table_names():
        ensure_roles_and_capabilities(apps)
