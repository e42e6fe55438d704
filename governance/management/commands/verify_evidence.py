"""``manage.py verify_evidence PACKAGE.zip``: re-check a golden-demo evidence package.

Recomputes the SHA-256 of every file against the manifest (the manifest against the archive's seal)
and re-verifies the audit slice's hash chain row by row. Exit 0 when everything holds; exit 1 naming
the first bad file or audit row. Reads nothing from the database.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from governance.services.demo_evidence import evidence_verify


class Command(BaseCommand):
    help = "Verify a golden-demo evidence package: every file's SHA-256 and the audit chain slice."

    def add_arguments(self, parser):
        parser.add_argument("package", help="The evidence .zip written by `manage.py demo`, the admin or the API.")
        parser.add_argument(
            "--sha256", help="Also require the package's own SHA-256 to be this (as printed at export)."
        )

    def handle(self, *args, **options):
        path = Path(options["package"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        if options["sha256"]:
            import hashlib

            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != options["sha256"].lower():
                raise CommandError(f"{path}: package SHA-256 is {digest}, expected {options['sha256']}")
        result = evidence_verify(path)
        if not result.ok:
            raise CommandError(result.describe())
        self.stdout.write(result.describe())
