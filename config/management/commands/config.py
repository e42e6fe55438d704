import json

from django.core.management.base import BaseCommand, CommandError

from config import registry


class Command(BaseCommand):
    help = "Read or change platform configuration: `config list`, `config get KEY`, `config set KEY JSON --reason R`."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="verb", required=True)
        sub.add_parser("list", help="Every key with its version and category.")
        get = sub.add_parser("get", help="Print a key's value as JSON.")
        get.add_argument("key")
        put = sub.add_parser("set", help="Validate and store a new value (audited as system:cli).")
        put.add_argument("key")
        put.add_argument("value", help="The new value as JSON.")
        put.add_argument("--reason", required=True)
        put.add_argument("--version", type=int, help="Refuse if the stored version differs (optimistic lock).")
        sub.add_parser("seed", help="Insert declared keys missing from the database with their defaults.")

    def handle(self, *args, verb: str, **options):
        try:
            getattr(self, f"_{verb}")(**options)
        except registry.UnknownConfigKey as exc:
            raise CommandError(f"unknown key {exc.args[0]!r}") from exc
        except registry.ConfigValidationError as exc:
            raise CommandError("; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in exc.errors.items())) from exc
        except registry.StaleConfigVersion as exc:
            raise CommandError(str(exc)) from exc

    def _list(self, **options):
        for entry in registry.entries():
            stored = "" if entry.stored else "  (default, not stored)"
            self.stdout.write(f"{entry.key:<40} v{entry.version:<4} {entry.category}{stored}")

    def _get(self, key: str, **options):
        self.stdout.write(json.dumps(registry.get(key), indent=2))

    def _set(self, key: str, value: str, reason: str, version: int | None, **options):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise CommandError(f"value is not JSON: {exc}") from exc
        row = registry.set(key, parsed, user="system:cli", reason=reason, expected_version=version)
        self.stdout.write(self.style.SUCCESS(f"{key} is now version {row.version}"))

    def _seed(self, **options):
        created = registry.seed_missing(actor="system:cli")
        self.stdout.write(f"seeded {len(created)} keys" + (f": {', '.join(created)}" if created else ""))
