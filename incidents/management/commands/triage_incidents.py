"""``manage.py triage_incidents --as demo-admin --close-stale --bulk-resolve-older-than-hours 4 --reason
"Stale, no impact"``: the plan's open-incident scenario — one lifecycle tick (auto-close of stale low/info incidents)
and bulk resolution of what needs no more judgement — with a before/after report."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from config import registry
from governance.choices import Severity
from governance.management.text_tables import text_table
from governance.models import AuditLog, User
from incidents.services.backlog import OPEN_INCIDENTS_TARGET, IncidentBacklog, incident_backlog_triage
from incidents.services.bulk import BulkResolveError


def _age(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    seconds = delta.total_seconds()
    return f"{seconds / 3600:.1f} h" if seconds < 172_800 else f"{seconds / 86_400:.1f} d"


def _serious_without_rca(backlog: IncidentBacklog) -> str:
    return f"{backlog.without_rca[Severity.CRITICAL]} critical, {backlog.without_rca[Severity.HIGH]} high"


def _describe(tick: Any) -> str:
    if dataclasses.is_dataclass(tick):
        return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in dataclasses.asdict(tick).items())
    return str(tick)


class Command(BaseCommand):
    help = (
        "Run one lifecycle tick (escalations, auto-close of stale low/info incidents, follow-ups) and bulk-resolve "
        "open medium/low/info incidents older than N hours (and critical/high ones whose RCA is complete) with one "
        "configured reason; print the open incidents before and after. Critical and high incidents without a "
        "complete RCA are never resolved here."
    )

    def add_arguments(self, parser):
        parser.add_argument("--as", dest="username", required=True, help="The user the run acts as (audited).")
        parser.add_argument(
            "--close-stale",
            action="store_true",
            help="Run one lifecycle tick first: due escalations, auto-close of stale low/info incidents, follow-ups.",
        )
        parser.add_argument(
            "--bulk-resolve-older-than-hours",
            type=float,
            metavar="N",
            help="Bulk-resolve what may be resolved without more judgement, opened more than N hours ago.",
        )
        parser.add_argument("--reason", default="", help="The resolution reason (one of incidents.resolution_reasons).")
        parser.add_argument("--note", default="", help="An optional note on every resolved incident's timeline.")
        parser.add_argument("--close", action="store_true", help="Close the resolved incidents too.")

    def handle(self, *args, **options):
        user = User.objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {options['username']!r}")
        hours = options["bulk_resolve_older_than_hours"]
        if hours is not None and hours < 0:
            raise CommandError("--bulk-resolve-older-than-hours must not be negative")
        reasons = registry.get("incidents.resolution_reasons")
        if hours is not None and options["reason"] not in reasons:
            raise CommandError(f"--reason must be one of: {', '.join(map(repr, reasons))}")
        if not options["close_stale"] and hours is None:
            raise CommandError("nothing to do: give --close-stale and/or --bulk-resolve-older-than-hours N --reason …")
        audit_before = AuditLog.objects.count()
        try:
            report = incident_backlog_triage(
                user=user,
                run_tick=options["close_stale"],
                resolve_older_than=timedelta(hours=hours) if hours is not None else None,
                resolution_reason=options["reason"],
                note=options["note"],
                close=options["close"],
            )
        except BulkResolveError as exc:
            raise CommandError(f"bulk resolution refused, nothing in that batch changed: {exc}") from exc
        before, after = report.before, report.after
        rows = [
            ("open incidents", "before", "after"),
            ("open", before.open, after.open),
            *(
                (f"  {severity}", before.open_by_severity[severity], after.open_by_severity[severity])
                for severity in Severity.values
            ),
            ("past an SLA target", before.sla_breached, after.sla_breached),
            ("critical/high without a complete RCA", _serious_without_rca(before), _serious_without_rca(after)),
            ("oldest open", _age(before.oldest_age), _age(after.oldest_age)),
        ]
        self.stdout.write("\n".join(text_table(rows)))
        if report.tick is not None:
            tick = _describe(report.tick)
            self.stdout.write(f"lifecycle tick: {tick}; {report.closed_by_tick} incident(s) auto-closed")
        if hours is not None:
            by_severity = ", ".join(f"{n} {s}" for s, n in sorted(report.resolved_by_severity.items())) or "none"
            closed = f", {report.closed} closed" if options["close"] else ""
            self.stdout.write(
                f"bulk resolution ({options['reason']!r}, opened over {hours:g} h ago): {report.resolved} resolved"
                f"{closed} ({by_severity})"
            )
        self.stdout.write(f"{AuditLog.objects.count() - audit_before} audit entries written")
        verdict = (
            f"below {OPEN_INCIDENTS_TARGET}: target met"
            if report.target_met
            else f"{OPEN_INCIDENTS_TARGET} or more: target not met"
        )
        self.stdout.write(
            f"open incidents {after.open} ({verdict}); critical/high incidents closed or resolved without a complete "
            f"RCA: {report.unfinished_rca_closed}; left open for their RCA: {_serious_without_rca(after)}"
        )
