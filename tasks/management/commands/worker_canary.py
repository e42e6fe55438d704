import time

from django.core.management.base import BaseCommand, CommandError

from tasks.tasks import canary


class Command(BaseCommand):
    help = "Send the canary task through the broker and wait for a worker to run it (needs a result backend)."

    def add_arguments(self, parser):
        parser.add_argument("--fail", action="store_true", help="Ask the canary to fail (tests error alerting).")
        parser.add_argument("--timeout", type=float, default=30.0)

    def handle(self, *args, fail: bool, timeout: float, **options):
        started = time.monotonic()
        result = canary.apply_async(kwargs={"mode": "fail" if fail else "ok"}, ignore_result=False)
        if result.backend.__class__.__name__ == "DisabledBackend":
            self.stdout.write(f"canary sent (task id {result.id}); set CELERY_RESULT_BACKEND to wait for it")
            return
        try:
            value = result.get(timeout=timeout, propagate=False)
        except Exception as exc:
            raise CommandError(f"no answer within {timeout:g} s: is a worker consuming the 'default' queue?") from exc
        elapsed = time.monotonic() - started
        if result.failed():
            self.stdout.write(f"canary failed as asked in {elapsed:.2f} s: {value!r}")
        else:
            self.stdout.write(self.style.SUCCESS(f"canary answered {value!r} in {elapsed:.2f} s"))
