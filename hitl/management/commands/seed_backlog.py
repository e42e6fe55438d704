"""``manage.py seed_backlog --pending 546``: a realistic review backlog with a human decision history,
then (unless ``--no-train``) the auto-assist model trained on that history — when the run created
history, or no model is active yet."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from hitl.models import AssistModel
from hitl.services.assist import assist_model_train
from hitl.services.automation import routine_policy_ensure
from hitl.services.backlog_seed import SEED_ACTOR, backlog_seed


class Command(BaseCommand):
    help = (
        "Seed pending review items (mostly routine, ~1.5% critical and ~5.5% high) and a history of human "
        "decisions to learn from; re-running creates only what is missing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pending", type=int, default=546, help="Pending items in the plan (default 546).")
        parser.add_argument("--history", type=int, default=3000, help="Decided items in the plan (default 3000).")
        parser.add_argument("--seed", type=int, default=42, help="The same seed plans the same backlog.")
        parser.add_argument("--no-train", action="store_true", help="Do not train the assist model afterwards.")

    def handle(self, *args, **options):
        if options["pending"] < 0 or options["history"] < 0:
            raise CommandError("--pending and --history must not be negative")
        report = backlog_seed(pending=options["pending"], history=options["history"], seed=options["seed"])
        severities = ", ".join(f"{n} {s}" for s, n in sorted(report.pending_by_severity.items())) or "none"
        decisions = ", ".join(f"{n} {d}" for d, n in sorted(report.history_by_decision.items())) or "none"
        self.stdout.write(f"pending items created: {report.created_pending} ({severities})")
        self.stdout.write(f"decided history created: {report.created_history} ({decisions})")
        if report.admin_password:
            self.stdout.write(f"demo estate created; admin login: demo-admin / {report.admin_password} (shown once)")
        policy, created = routine_policy_ensure(actor=SEED_ACTOR)
        if created:
            self.stdout.write(f"auto-approval policy {policy.policy_name!r} created, disabled (an admin enables it)")
        if options["no_train"]:
            return
        if report.created_history or not AssistModel.objects.filter(active=True).exists():
            outcome = assist_model_train(actor=SEED_ACTOR)
            self.stdout.write(f"assist model: {outcome.reason}")
        else:
            self.stdout.write("assist model: no new history, the active model stays")
