"""``manage.py policy_lint FILE [FILE…]`` or ``--policy ID|KEY [--version N]``: lint AI-governance policy
documents like a compiler would.

Exit codes: 0 clean (warnings and info allowed), 1 errors (or warnings with ``--strict``), 2 bad usage, an
unreadable file or an unknown policy or version. ``-`` reads standard input. ``--policy`` lints a stored
version (default: the active one, else the latest) as it is stored, named ``<key>@v<N>.<yaml|json>``: the
linter may have changed since the version was stored, so the verdict can differ from its ``validated``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from governance.selectors import policy_get_by_ref
from governance.services.policy_lint import LEVELS, MAX_DOCUMENT_BYTES, LintReport, policy_lint, sarif_log

USAGE_ERROR = 2


class Command(BaseCommand):
    help = (
        "Lint policy documents (YAML or JSON). Text output is 'file:line:col: level VGLnnn name: message'. "
        "Exits 1 on errors (or warnings with --strict), 2 on bad usage or an unreadable file."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # ``--version`` is this command's (a policy version number), replacing Django's "show the version".
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*", metavar="FILE", help="Policy files; '-' reads standard input.")
        parser.add_argument("--policy", metavar="ID_OR_KEY", help="Lint a stored policy version instead of files.")
        parser.add_argument(
            "--version", type=int, metavar="N", dest="policy_version", help="With --policy: this version number."
        )
        parser.add_argument("--format", choices=["text", "json", "sarif"], default="text", dest="output_format")
        parser.add_argument("--strict", action="store_true", help="Fail on warnings too.")
        parser.add_argument("--output", metavar="PATH", help="Write the report to PATH instead of standard output.")

    def handle(self, *args, **options):
        if options["policy"] is not None and options["files"]:
            raise CommandError("give FILEs or --policy, not both", returncode=USAGE_ERROR)
        if options["policy"] is None and not options["files"]:
            raise CommandError("give at least one FILE, or --policy", returncode=USAGE_ERROR)
        if options["policy_version"] is not None and options["policy"] is None:
            raise CommandError("--version needs --policy", returncode=USAGE_ERROR)
        if options["policy"] is not None:
            reports = [self._lint_stored(options["policy"], options["policy_version"])]
        else:
            reports = [self._lint(name) for name in options["files"]]
        rendered = self._render(reports, options["output_format"])
        if options["output"]:
            try:
                Path(options["output"]).write_text(rendered + "\n")
            except OSError as exc:
                raise CommandError(f"cannot write {options['output']}: {exc.strerror}", returncode=USAGE_ERROR) from exc
        else:
            self.stdout.write(rendered)
        if options["output_format"] == "text" or options["output"]:
            self.stderr.write(_summary(reports))
        if any(report.fails(strict=options["strict"]) for report in reports):
            sys.exit(1)

    @staticmethod
    def _lint(name: str) -> LintReport:
        try:
            if name == "-":
                raw = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
            else:
                with Path(name).open("rb") as handle:  # read at most one byte past the limit: the linter reports it
                    raw = handle.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror or exc}", returncode=USAGE_ERROR) from exc
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CommandError(f"cannot read {name}: not UTF-8 text ({exc.reason})", returncode=USAGE_ERROR) from exc
        return policy_lint(text=text, filename="<stdin>" if name == "-" else name)

    @staticmethod
    def _lint_stored(ref: str, number: int | None) -> LintReport:
        policy = policy_get_by_ref(ref=ref)
        if policy is None:
            raise CommandError(f"no policy {ref!r} (give its id or key)", returncode=USAGE_ERROR)
        if number is not None:
            version = policy.versions.filter(version=number).first()
        else:
            version = policy.active_version or policy.versions.order_by("-version").first()
        if version is None:
            raise CommandError(f"policy {policy.key!r} has no version {number}", returncode=USAGE_ERROR)
        filename = f"{policy.key}@v{version.version}.{version.content_format}"
        return policy_lint(text=version.content, filename=filename)

    @staticmethod
    def _render(reports: list[LintReport], output_format: str) -> str:
        if output_format == "sarif":
            return json.dumps(sarif_log(reports), indent=2)
        if output_format == "json":
            document = {
                "ok": all(report.ok for report in reports),
                "counts": _totals(reports),
                "reports": [report.as_json() for report in reports],
            }
            return json.dumps(document, indent=2)
        return "\n".join(text for report in reports if (text := report.as_text()))


def _totals(reports: list[LintReport]) -> dict[str, int]:
    return {level: sum(report.counts[level] for report in reports) for level in LEVELS}


def _summary(reports: list[LintReport]) -> str:
    totals = _totals(reports)
    files = f"{len(reports)} file" + ("" if len(reports) == 1 else "s")
    return f"{totals['error']} error(s), {totals['warning']} warning(s), {totals['info']} info in {files}"
