import sys

from django.core.management.base import BaseCommand

from governance.services.audit import audit_chain_verify_and_record


class Command(BaseCommand):
    help = "Verify the hash-chained audit log; names the first broken row and exits 1 if the chain is broken."

    def handle(self, *args, **options):
        result = audit_chain_verify_and_record()
        if result.ok:
            self.stdout.write(self.style.SUCCESS(result.describe()))
            return
        self.stderr.write(self.style.ERROR(result.describe()))
        sys.exit(1)
