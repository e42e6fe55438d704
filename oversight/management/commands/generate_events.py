"""``manage.py generate_events``: synthetic telemetry with labelled scenarios, ingested into this
database (the ingest service, like ``POST /events``) or sent to a Vigil server through its API.

Local runs create the fleet and store the scenario labels here; API runs create the fleet remotely
through ``POST /systems`` and write the labels to ``--labels-out`` (the remote database is not ours).
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from governance.models import Team
from oversight.generator import (
    SYNTHETIC_TEAM_NAME,
    SYNTHETIC_TEAM_SLUG,
    EventPlan,
    ScenarioRules,
    deactivate_fleet,
    detection_config,
    ensure_fleet,
    plan_events,
    store_labels,
)
from oversight.models import IngestBatch
from oversight.services.ingest import ingest_events
from oversight.validation import MAX_EVENTS_PER_BATCH, EventBatchTooLarge, EventValidationError

BACKDATED_RATE = 1.0  # events per second of event time when no --rate is given
MAX_ATTEMPTS = 6  # per HTTP request: the first try and five retries on 429, 5xx or a network error
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 300.0
HTTP_TIMEOUT_SECONDS = 60
SHOWN_FIELD_ERRORS = 20
PROCESSING_POLL_SECONDS = 0.5
DETECTION_KEYS = (
    "oversight.rate_rule",
    "oversight.correlation_window_seconds",
    "oversight.compound_min_signals",
    "oversight.absence_window_seconds",
)


def pause(seconds: float) -> None:
    """Sleep (one place, so tests can replace the clock)."""
    time.sleep(seconds)


def default_fleet_prefix(namespace: str) -> str:
    """``seed:42`` → ``synth-seed-42``: a fleet per namespace, so runs never mix on one system."""
    return "synth-" + (re.sub(r"[^a-z0-9]+", "-", namespace.lower()).strip("-") or "run")


def field_error_lines(errors: dict[str, list[str]]) -> list[str]:
    lines = [f"  {name}: {'; '.join(messages)}" for name, messages in list(errors.items())[:SHOWN_FIELD_ERRORS]]
    if len(errors) > SHOWN_FIELD_ERRORS:
        lines.append(f"  … and {len(errors) - SHOWN_FIELD_ERRORS} more")
    return lines


@dataclass
class Totals:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    batches: int = 0


# --- where the events go ----------------------------------------------------------------------------
class LocalTarget:
    """This database: the ingest service, the fleet and the labels stored here."""

    def __init__(self, *, team_ref: str | None, wait_seconds: float):
        self.team = self._team(team_ref) if team_ref else None
        self.wait_seconds = wait_seconds
        self.systems: dict = {}
        self.batch_ids: list[uuid.UUID] = []

    @staticmethod
    def _team(ref: str) -> Team:
        try:
            lookup = {"pk": uuid.UUID(ref)}
        except ValueError:
            lookup = {"slug": ref}
        team = Team.objects.filter(**lookup).first()
        if team is None:
            raise CommandError(f"no team {ref!r} (give its slug or id)")
        return team

    def detection_config(self) -> tuple[dict, ScenarioRules]:
        return detection_config()

    def prepare(self, plan: EventPlan) -> str:
        try:
            self.systems = ensure_fleet(plan, team=self.team)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        stored = store_labels(plan, systems=self.systems)
        return f"fleet: {len(self.systems)} systems ready; labels: {stored} of {len(plan.scenarios)} stored"

    def send(self, items: list[dict]) -> tuple[int, int]:
        try:
            result = ingest_events(items=items, submitted_by=None)
        except EventValidationError as exc:
            raise CommandError("\n".join([exc.message, *field_error_lines(exc.errors)])) from exc
        except EventBatchTooLarge as exc:
            raise CommandError(str(exc)) from exc
        self.batch_ids.append(result.batch_id)
        return result.accepted, result.duplicates

    def finish(self, *, completed: bool) -> str:
        """Deactivate the fleet once its batches are processed (the event-time heartbeat checks only
        watch active systems), so the wall-clock check never flags a finished synthetic fleet."""
        waiting = self._unprocessed() if completed else 0
        deadline = time.monotonic() + self.wait_seconds
        while waiting and time.monotonic() < deadline:
            pause(PROCESSING_POLL_SECONDS)
            waiting = self._unprocessed()
        deactivated = deactivate_fleet(self.systems) if self.systems else 0
        note = f"; {waiting} batches still unprocessed after {self.wait_seconds:g} s" if waiting else ""
        return f"fleet: {deactivated} systems deactivated{note}"

    def _unprocessed(self) -> int:
        return IngestBatch.objects.filter(pk__in=self.batch_ids, processed_at__isnull=True).count()


class ApiTarget:
    """A Vigil server: ``POST /api/v1/events`` with a bearer token, retrying 429 (after Retry-After),
    5xx and network errors with exponential backoff; a 4xx is a clear failure."""

    def __init__(self, *, url: str, token: str, team_ref: str | None, write: Any):
        self.base = url.rstrip("/") + "/api/v1"
        self.team_ref = team_ref
        self.write = write
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})

    # -- HTTP --
    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base}{path}"
        problem = ""
        for attempt in range(MAX_ATTEMPTS):
            try:
                response = self.session.request(method, url, timeout=HTTP_TIMEOUT_SECONDS, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem, delay = f"network error: {exc}", self.backoff(attempt)
            else:
                if response.status_code == 429:
                    problem, delay = "HTTP 429", self.retry_after(response) or self.backoff(attempt)
                elif response.status_code >= 500:
                    problem, delay = f"HTTP {response.status_code}", self.backoff(attempt)
                else:
                    return response
            if attempt + 1 < MAX_ATTEMPTS:
                pause(delay)
        raise CommandError(f"{method} {url} failed {MAX_ATTEMPTS} times; last: {problem}")

    @staticmethod
    def backoff(attempt: int) -> float:
        return min(0.5 * 2**attempt, MAX_BACKOFF_SECONDS)

    @staticmethod
    def retry_after(response: requests.Response) -> float | None:
        """``Retry-After`` in seconds (or an HTTP date), capped; None when absent or unreadable."""
        value = response.headers.get("Retry-After", "").strip()
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = (parsedate_to_datetime(value) - timezone.now()).total_seconds()
            except (TypeError, ValueError):
                return None
        return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)

    def fail(self, what: str, response: requests.Response) -> CommandError:
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {}
        lines = [f"{what}: HTTP {response.status_code} {error.get('message') or response.text[:200]}"]
        lines += field_error_lines(error.get("fields") or {})
        return CommandError("\n".join(lines))

    def get_all(self, path: str, params: dict) -> list[dict] | None:
        """Every item of a cursor-paginated list; None when this token may not read it."""
        items, url, query = [], path, {**params, "page_size": 500}
        while url:
            response = self.request("GET", url, params=query)
            if response.status_code in (401, 403):
                return None
            if response.status_code != 200:
                raise self.fail(f"GET {path}", response)
            body = response.json()
            items += body["results"]
            url, query = body.get("next"), None  # the next link carries the query
        return items

    # -- the run --
    def detection_config(self) -> tuple[dict, ScenarioRules]:
        """The server's thresholds and rule numbers (scenarios must fit the rules that judge them);
        this server's registry when the token may not read them."""
        response = self.request("GET", "/config", params={"category": "thresholds"})
        if response.status_code == 200:
            values = {entry["key"]: entry["value"] for entry in response.json()}
            try:
                return detection_config(values)
            except KeyError:
                pass
        self.write("warning: could not read the server's thresholds; planning with this installation's config")
        return detection_config()

    def prepare(self, plan: EventPlan) -> str:
        """Create the fleet systems the server does not have yet (an existing name is fine)."""
        names = {system.name for system in plan.fleet}
        listed = self.get_all("/systems", {"name": plan.fleet[0].name.rsplit("-", 1)[0]})
        if listed is None:
            return "fleet: this token cannot list systems; assuming the fleet exists on the server"
        missing = [system for system in plan.fleet if system.name not in {item["name"] for item in listed}]
        if not missing:
            return f"fleet: all {len(names)} systems exist on the server"
        team = self.team_id()
        for system in missing:
            response = self.request(
                "POST",
                "/systems",
                json={
                    "name": system.name,
                    "entity_type": system.entity_type,
                    "team": team,
                    "risk_class": system.risk_class,
                    "description": "Synthetic AI system (generated telemetry).",
                    "metadata": {"synthetic": True, "seed": plan.seed},
                },
            )
            if response.status_code not in (201, 409):  # 409: created meanwhile (names are unique)
                raise self.fail(f"creating system {system.name}", response)
        return f"fleet: {len(missing)} of {len(names)} systems created on the server"

    def team_id(self) -> str:
        """``--team`` (an id, or a slug looked up), else the server's synthetic team (created if needed)."""
        if self.team_ref:
            try:
                return str(uuid.UUID(self.team_ref))
            except ValueError:
                pass
        slug = self.team_ref or SYNTHETIC_TEAM_SLUG
        teams = self.get_all("/teams", {"slug": slug})
        if teams:
            return teams[0]["id"]
        if self.team_ref:
            raise CommandError(f"no team {slug!r} on the server (or this token cannot see it)")
        response = self.request("POST", "/teams", json={"name": SYNTHETIC_TEAM_NAME, "slug": SYNTHETIC_TEAM_SLUG})
        if response.status_code != 201:
            raise self.fail("creating the synthetic team (pass --team SLUG to use an existing one)", response)
        return response.json()["id"]

    def send(self, items: list[dict]) -> tuple[int, int]:
        response = self.request("POST", "/events", json={"events": items})
        if response.status_code != 202:
            raise self.fail("POST /events", response)
        body = response.json()
        return body["accepted"], body["duplicates"]

    def finish(self, *, completed: bool) -> str:
        self.session.close()
        return "fleet: left active on the server (not ours to change)"


# --- the command ------------------------------------------------------------------------------------
class Command(BaseCommand):
    help = (
        "Generate synthetic telemetry with labelled scenarios (threshold breaches, drifts, compound "
        "incidents, heartbeat losses, near misses) and ingest it locally or through the API."
    )

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=10_000, help="Events to generate (default 10,000).")
        parser.add_argument("--seed", type=int, default=42, help="Same seed, same events (default 42).")
        parser.add_argument(
            "--rate",
            type=float,
            help="Real time at N events/s: start now, each batch sent once its last event's time has come. "
            "Default: a backdated timeline (1 event/s of event time, ending now), sent as fast as possible.",
        )
        parser.add_argument("--batch-size", type=int, default=1000, help="Events per batch (default 1,000).")
        parser.add_argument("--api", metavar="URL", help="Send to this Vigil server instead of this database.")
        parser.add_argument("--token", help="Bearer token for --api (an access token from POST /auth/token).")
        parser.add_argument("--team", help="Team owning the fleet (slug or id); default 'Synthetic fleet'.")
        parser.add_argument("--namespace", help="Prefix of event and scenario ids (default seed:<seed>).")
        parser.add_argument("--fleet-prefix", help="Prefix of the fleet's system names (default from namespace).")
        parser.add_argument("--labels-out", metavar="FILE", help="Write the scenario labels to FILE as JSON.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
        parser.add_argument(
            "--wait",
            type=float,
            default=120.0,
            help="Local runs: seconds to wait for the batches to be processed before deactivating the fleet.",
        )

    def handle(self, *args, **options):
        self.check_options(options)
        namespace = options["namespace"] or f"seed:{options['seed']}"
        if options["api"]:
            target = ApiTarget(
                url=options["api"], token=options["token"], team_ref=options["team"], write=self.stderr.write
            )
        else:
            target = LocalTarget(team_ref=options["team"], wait_seconds=options["wait"])
        thresholds, rules = target.detection_config()
        realtime = options["rate"] is not None
        rate = options["rate"] if realtime else BACKDATED_RATE
        now = timezone.now()
        try:
            plan = plan_events(
                count=options["count"],
                seed=options["seed"],
                start=now if realtime else now - timedelta(seconds=options["count"] / rate),
                rate_per_s=rate,
                namespace=namespace,
                fleet_prefix=options["fleet_prefix"] or default_fleet_prefix(namespace),
                thresholds=thresholds,
                rule_settings=rules,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["labels_out"]:
            self.write_labels(plan, Path(options["labels_out"]))
        self.stdout.write(target.prepare(plan))

        totals, completed, started = Totals(), False, time.monotonic()
        try:
            self.run(
                plan, target, totals, batch_size=options["batch_size"], realtime=realtime, quiet=options["no_progress"]
            )
            completed = True
        finally:
            elapsed = time.monotonic() - started
            self.stdout.write(target.finish(completed=completed))
        self.stdout.write(self.summary(plan, totals, elapsed, labels_out=options["labels_out"]))

    def check_options(self, options: dict) -> None:
        if options["count"] < 1:
            raise CommandError("--count must be at least 1")
        if not 1 <= options["batch_size"] <= MAX_EVENTS_PER_BATCH:
            raise CommandError(f"--batch-size must be between 1 and {MAX_EVENTS_PER_BATCH}")
        if options["rate"] is not None and not options["rate"] > 0:
            raise CommandError("--rate must be a positive number of events per second")
        if bool(options["api"]) != bool(options["token"]):
            raise CommandError("--api and --token go together")

    def run(self, plan: EventPlan, target, totals: Totals, *, batch_size: int, realtime: bool, quiet: bool) -> None:
        with tqdm(total=plan.count, unit="ev", unit_scale=True, file=sys.stderr, disable=quiet, desc="events") as bar:
            for first in range(0, plan.count, batch_size):
                last = min(first + batch_size, plan.count)
                if realtime:
                    # Never send an event before its time: occurred_at must not be in the future.
                    wait = (plan.time_of(last - 1) - timezone.now()).total_seconds()
                    if wait > 0:
                        pause(wait)
                items = [event.as_payload() for event in plan.events(first, last)]
                accepted, duplicates = target.send(items)
                totals.sent += len(items)
                totals.accepted += accepted
                totals.duplicates += duplicates
                totals.batches += 1
                bar.update(len(items))
                bar.set_postfix_str(f"accepted {totals.accepted:,}, duplicates {totals.duplicates:,}", refresh=False)

    def write_labels(self, plan: EventPlan, path: Path) -> None:
        document = {
            "namespace": plan.namespace,
            "seed": plan.seed,
            "count": plan.count,
            "start": plan.start.isoformat(),
            "rate_per_s": plan.rate_per_s,
            "fleet": [system.name for system in plan.fleet],
            "scenarios": [scenario.as_dict() for scenario in plan.scenarios],
        }
        try:
            path.write_text(json.dumps(document, indent=2) + "\n")
        except OSError as exc:
            raise CommandError(f"cannot write labels to {path}: {exc}") from exc

    def summary(self, plan: EventPlan, totals: Totals, elapsed: float, *, labels_out: str | None) -> str:
        kinds = Counter(scenario.kind for scenario in plan.scenarios)
        by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items(), key=lambda item: -item[1]))
        lines = [
            f"events sent: {totals.sent:,} in {totals.batches} batches "
            f"(accepted {totals.accepted:,}, duplicates {totals.duplicates:,})",
            f"scenarios: {len(plan.scenarios)} ({by_kind or 'none'})",
            f"elapsed: {elapsed:.1f} s ({totals.sent / elapsed if elapsed > 0 else 0:,.0f} events/s)",
        ]
        if labels_out:
            lines.append(f"labels written to {labels_out}")
        return "\n".join(lines)
