"""``manage.py cicd_gate``: ask the CI/CD gate whether an artifact may be deployed; exit 0 allow, 1 deny, 2 error.

Two ways to reach the gate, the same decision and audit entry either way:

- against a running Vigil (what pipelines do): ``--url https://vigil.example.com`` with a bearer token in the
  environment variable named by ``--token-env`` (default ``VIGIL_TOKEN``), or a service account's
  credentials in ``--username`` and the variable named by ``--password-env`` (default ``VIGIL_PASSWORD``);
- in-process, next to the database (``--as <username>`` names the deciding account, e.g. the cicd service
  account), for operators and tests.
"""

from __future__ import annotations

import json
import os
from typing import Any

import requests
from django.core.management.base import BaseCommand, CommandError

EXIT_ALLOW, EXIT_DENY, EXIT_ERROR = 0, 1, 2
TIMEOUT_SECONDS = 30


class Command(BaseCommand):
    help = "Ask the CI/CD gate whether an artifact of an AI system may be deployed (exit 0 allow, 1 deny, 2 error)."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # ``--version`` is the artifact's version here, replacing Django's "show the version".
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser) -> None:
        parser.add_argument("--system", required=True, help="The AI system's id or unique name.")
        parser.add_argument("--artifact", required=True, help="What is to be deployed (image digest, model URI…).")
        parser.add_argument("--version", default="", help="The artifact's version (recorded).")
        parser.add_argument("--policy", action="append", default=[], dest="policies",
                            help="A policy to apply (id or key, optionally key@version); repeatable. "
                            "Default: every active policy whose scope includes the system.")  # fmt: skip
        parser.add_argument("--eval-run", action="append", default=[], dest="eval_runs",
                            help="An evaluation run of this artifact (id); repeatable.")  # fmt: skip
        parser.add_argument("--format", choices=["text", "json"], default="text")
        remote = parser.add_argument_group("against a running Vigil")
        remote.add_argument("--url", help="Base URL of Vigil, e.g. https://vigil.example.com")
        remote.add_argument("--token-env", default="VIGIL_TOKEN", help="Variable holding a bearer token.")
        remote.add_argument("--username", help="Service account to log in as (instead of a token).")
        remote.add_argument("--password-env", default="VIGIL_PASSWORD", help="Variable holding its password.")
        parser.add_argument("--as", dest="as_user", help="In-process: the username the decision is made as.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            answer = self._remote(options) if options["url"] else self._local(options)
        except CommandError as exc:
            self.stderr.write(f"cicd_gate: {exc}")
            raise SystemExit(EXIT_ERROR) from exc
        if options["format"] == "json":
            self.stdout.write(json.dumps(answer, indent=2, default=str))
        else:
            self._print(answer)
        raise SystemExit(EXIT_ALLOW if answer["decision"] == "allow" else EXIT_DENY)

    def _body(self, options: dict[str, Any]) -> dict[str, Any]:
        return {
            "system": options["system"],
            "artifact": options["artifact"],
            "version": options["version"],
            "policy_ids": options["policies"],
            "eval_run_ids": options["eval_runs"],
        }

    def _remote(self, options: dict[str, Any]) -> dict[str, Any]:
        base = options["url"].rstrip("/")
        session = requests.Session()
        if options["username"]:
            password = os.environ.get(options["password_env"])
            if not password:
                raise CommandError(f"--username given but ${options['password_env']} is empty")
            login = self._post(session, f"{base}/api/v1/auth/token",
                               {"username": options["username"], "password": password})  # fmt: skip
            token = login["access"]
        else:
            token = os.environ.get(options["token_env"])
            if not token:
                raise CommandError(f"no token: set ${options['token_env']} or use --username")
        session.headers["Authorization"] = f"Bearer {token}"
        return self._post(session, f"{base}/api/v1/cicd/gate", self._body(options))

    @staticmethod
    def _post(session: requests.Session, url: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = session.post(url, json=body, timeout=TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            raise CommandError(f"cannot reach {url}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.status_code != 200:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            fields = "; ".join(
                f"{name}: {' '.join(messages)}" for name, messages in (error.get("fields") or {}).items()
            )
            raise CommandError(
                f"{url} answered {response.status_code}: {error.get('message') or response.text[:200]}"
                + (f" ({fields})" if fields else "")
            )
        return payload

    def _local(self, options: dict[str, Any]) -> dict[str, Any]:
        from governance.models import User
        from governance.selectors import ai_system_get_by_ref
        from governance.services.cicd_gate import GateRequestInvalid, cicd_gate_decide

        if not options["as_user"]:
            raise CommandError("give --url (a running Vigil) or --as <username> (in-process)")
        caller = User.objects.filter(username=options["as_user"], is_active=True).first()
        if caller is None:
            raise CommandError(f"no active user {options['as_user']!r}")
        system = ai_system_get_by_ref(ref=options["system"])
        if system is None:
            raise CommandError(f"no AI system {options['system']!r}")
        try:
            decision = cicd_gate_decide(caller=caller, system=system, artifact=options["artifact"],
                                        version=options["version"], policy_ids=options["policies"],
                                        eval_run_ids=options["eval_runs"])  # fmt: skip
        except GateRequestInvalid as exc:
            raise CommandError(str(exc)) from exc
        return {
            "decision": decision.decision,
            "reasons": decision.reasons,
            "checked_at": decision.checked_at.isoformat(),
            "system": str(system.pk),
            "system_name": system.name,
            "artifact": decision.artifact,
            "version": decision.version,
            "policies": decision.policies,
            "audit_entry": str(decision.audit_entry.pk),
        }

    def _print(self, answer: dict[str, Any]) -> None:
        verdict = answer["decision"].upper()
        self.stdout.write(f"{verdict}: {answer.get('system_name', answer['system'])} {answer['artifact']}")
        for reason in answer["reasons"]:
            self.stdout.write(f"  - {reason}")
        for outcome in answer.get("policies", []):
            self.stdout.write(
                f"  policy {outcome['policy']} v{outcome.get('version')}: {outcome.get('action') or 'not usable'}"
                + (f" (rule {outcome['rule_id']})" if outcome.get("rule_id") else "")
            )
        self.stdout.write(f"  audit entry {answer.get('audit_entry')}")
