"""A small, realistic governance estate for `make demo` and first-time exploration.

Idempotent: running it twice creates nothing new. Every write goes through the audited services, so
the demo's audit chain is real.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from governance.choices import AssessmentStatus, EntityType, RiskClass, Role
from governance.models import AISystem, ControlAssessment, EvaluationRun, Team, User
from governance.services import assessments, organization

TEAMS = [
    ("Fraud ML", "fraud-ml", "fraud-ml@example.com"),
    ("Credit Risk", "credit-risk", "credit-risk@example.com"),
    ("Customer AI", "customer-ai", "customer-ai@example.com"),
]
SYSTEMS = [
    ("fraud-scoring-v3", EntityType.MODEL, "fraud-ml", RiskClass.HIGH, "Card-fraud scoring model."),
    ("transactions-feature-store", EntityType.DATASET, "fraud-ml", RiskClass.LIMITED, "Features for fraud."),
    ("credit-decisioning", EntityType.SYSTEM, "credit-risk", RiskClass.HIGH, "Consumer credit decisions."),
    ("income-verification-llm", EntityType.MODEL, "credit-risk", RiskClass.HIGH, "LLM document extraction."),
    ("support-assistant", EntityType.SYSTEM, "customer-ai", RiskClass.LIMITED, "Customer chat assistant."),
    ("churn-propensity", EntityType.MODEL, "customer-ai", RiskClass.MINIMAL, "Marketing churn model."),
]
HIGH_RISK_CONTROLS = [
    ("human-oversight", "Art. 14"),
    ("record-keeping", "Art. 12"),
    ("accuracy-robustness", "Art. 15"),
]
# Results of the teams' own offline evaluation tools, reported as such: the suites the gateway runs
# (accuracy, robustness, toxicity, fairness) are only ever recorded by a gateway run.
EVALUATIONS = [("holdout", "accuracy", 0.94, 0.9), ("fairlearn", "dp_gap", 0.04, 0.1)]


@dataclass
class DemoSeedReport:
    created: dict[str, int] = field(default_factory=dict)
    admin_username: str = "demo-admin"
    admin_password: str | None = None  # set only when the admin was created in this run

    def count(self, what: str) -> None:
        self.created[what] = self.created.get(what, 0) + 1


@transaction.atomic
def demo_seed(*, actor: str = "system:demo") -> DemoSeedReport:
    """Create teams, an admin and a lead, AI systems, control assessments and evaluation runs."""
    report = DemoSeedReport()
    teams = {}
    for name, slug, email in TEAMS:
        team = Team.objects.filter(slug=slug).first()
        if team is None:
            team = organization.team_create(name=name, slug=slug, email=email, actor=actor)
            report.count("teams")
        teams[slug] = team

    if not User.objects.filter(username=report.admin_username).exists():
        report.admin_password = secrets.token_urlsafe(12)
        organization.user_create(
            username=report.admin_username,
            password=report.admin_password,
            roles=[Role.ADMIN],
            teams=list(teams.values()),
            email="admin@example.com",
            actor=actor,
        )
        report.count("users")

    now = timezone.now()
    for name, entity_type, team_slug, risk_class, description in SYSTEMS:
        system = AISystem.objects.filter(name=name).first()
        if system is None:
            system = organization.ai_system_register(
                name=name,
                entity_type=entity_type,
                team=teams[team_slug],
                risk_class=risk_class,
                description=description,
                actor=actor,
            )
            report.count("systems")
        if risk_class == RiskClass.HIGH:
            for control, reference in HIGH_RISK_CONTROLS:
                if not ControlAssessment.objects.filter(system=system, control=control).exists():
                    assessments.control_assessment_record(
                        system=system,
                        control=control,
                        reference=reference,
                        status=AssessmentStatus.EFFECTIVE,
                        assessed_at=now - timedelta(days=20),
                        next_review_due=(now + timedelta(days=345)).date(),
                        actor=actor,
                    )
                    report.count("control assessments")
            for suite, metric, value, threshold in EVALUATIONS:
                if not EvaluationRun.objects.filter(system=system, suite=suite, metric=metric).exists():
                    assessments.evaluation_run_record(
                        system=system,
                        suite=suite,
                        metric=metric,
                        value=value,
                        threshold=threshold,
                        higher_is_better=metric != "dp_gap",
                        ran_at=now - timedelta(days=2),
                        actor=actor,
                    )
                    report.count("evaluation runs")
    return report


def demo_estate_systems(*, actor: str) -> tuple[list[AISystem], str | None]:
    """The demo estate's active systems, seeding the estate first when any is missing (then the admin
    password created by that seed is returned, to be shown once; else None). Used by the scenario
    seeders (review backlog, incidents) so they all work on one estate."""
    names = [name for name, *_ in SYSTEMS]
    systems = list(AISystem.objects.filter(name__in=names, is_active=True).select_related("team"))
    password = None
    if len(systems) < len(names):
        password = demo_seed(actor=actor).admin_password
        systems = list(AISystem.objects.filter(name__in=names, is_active=True).select_related("team"))
    return systems, password


def demo_persona(*, username: str, role: str, systems: list[AISystem], email: str) -> User:
    """A seeded person (a reviewer, an on-call responder) with ``role`` on every team of ``systems``;
    created once with an unguessable password (nobody logs in as a persona)."""
    user = User.objects.filter(username=username).first()
    if user is None:
        user = organization.user_create(
            username=username,
            password=secrets.token_urlsafe(24),
            roles=[role],
            teams=list({system.team_id: system.team for system in systems}.values()),
            actor=None,
            email=email,
        )
    return user
