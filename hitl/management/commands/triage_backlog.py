"""``manage.py triage_backlog --as demo-admin --enable-policy "…" --clear-low-risk``: the plan's backlog
scenario — auto-assist, auto-approval policies and "Clear Low Risk" — with a before/after report."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from governance.management.text_tables import text_table
from governance.models import AuditLog, User
from hitl.models import AutoApprovalPolicy
from hitl.services.automation import backlog_triage_run
from hitl.services.policies import PolicyPermissionDenied


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds / 3600:.1f} h" if seconds < 172_800 else f"{seconds / 86_400:.1f} d"


class Command(BaseCommand):
    help = (
        "Assist every pending review item, apply the auto-approval policies (optionally enabling some first, "
        "as an admin) and optionally Clear Low Risk; print the backlog before and after."
    )

    def add_arguments(self, parser):
        parser.add_argument("--as", dest="username", required=True, help="The user the run acts as (audited).")
        parser.add_argument(
            "--enable-policy",
            action="append",
            default=[],
            metavar="NAME",
            help="Enable this auto-approval policy first (needs the admin role; repeatable).",
        )
        parser.add_argument(
            "--clear-low-risk", action="store_true", help="Approve confidently low-risk low-severity items."
        )

    def handle(self, *args, **options):
        user = User.objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {options['username']!r}")
        known = set(AutoApprovalPolicy.objects.values_list("policy_name", flat=True))
        unknown = [name for name in options["enable_policy"] if name not in known]
        if unknown:
            raise CommandError(f"no auto-approval policy named {', '.join(map(repr, unknown))}")
        audit_before = AuditLog.objects.count()
        try:
            report = backlog_triage_run(
                user=user, enable_policies=options["enable_policy"], clear_low_risk=options["clear_low_risk"]
            )
        except PolicyPermissionDenied as exc:
            raise CommandError(f"{exc} ({user.username} is not an admin)") from exc
        before, after = report.before, report.after
        rows = [
            ("backlog", "before", "after"),
            ("pending", before.pending, after.pending),
            ("high + critical pending", _hc(before), report.high_critical_pending),
            ("past SLA", before.sla_breached, after.sla_breached),
            ("oldest pending", _age(before.oldest_age_seconds), _age(after.oldest_age_seconds)),
        ]
        self.stdout.write("\n".join(text_table(rows)))
        self.stdout.write(
            f"assisted {report.assisted}; policies decided {report.auto_decided} "
            f"(shadow proposals {report.shadow}, spot checks {report.spot_checks}); "
            f"Clear Low Risk approved {report.cleared_low_risk}; "
            f"{AuditLog.objects.count() - audit_before} audit entries written"
        )
        if report.enabled_policies:
            self.stdout.write(f"enabled: {', '.join(report.enabled_policies)}")
        verdict = "below 50: target met" if after.pending < 50 else "50 or more: target not met"
        judgement = after.pending - report.high_critical_pending
        self.stdout.write(
            f"HITL backlog {after.pending} ({verdict}): {report.high_critical_pending} high/critical items are "
            f"left for a human by design, {judgement} others need human judgement (no confident suggestion)"
        )


def _hc(health) -> int:
    return health.pending_by_severity["high"] + health.pending_by_severity["critical"]
