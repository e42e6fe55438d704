"""The CI/CD gate: may this artifact of this AI system be deployed now?

``cicd_gate_decide`` denies, with one reason per cause, when

- a policy the request names does not exist as a usable version: no active version, or the version asked
  for (``key@N``) is not validated;
- a policy that applies to the system decides anything but ``allow`` (``deny``, ``escalate`` or
  ``require_review``: the pipeline cannot take a human decision, so the reason says which is needed);
- an evaluation run the request names failed its threshold, is not the system's, or is a posted result of
  a suite the gateway runs (not evidence); with no run named, the latest result of any suite/metric of
  the system failed (a newer pass of the same suite/metric supersedes an older failure);
- the system has an open critical or serious incident, or a pending high or critical review.

It allows otherwise. Which policies apply: the ones named in ``policy_ids`` (their active version, or the
version pinned with ``key@N``), else every active policy whose scope includes the system. Policies read
facts as of now; the evaluation runs named in the request are the freshest evidence of the artifact and
take precedence over older results of the same metrics.

Every decision is audited ``cicd.gate_decided`` (the deployment-circumvention detector reads these
entries). The decision reads committed data only and writes only its audit entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from governance.choices import AuditAction, Severity
from governance.models import AISystem, AuditLog, EvaluationRun, Policy, PolicyVersion, User
from governance.selectors import uuid_or_none
from governance.services.audit import audit_record
from governance.services.bypass.gate_circumvention import is_unverified_gateway_result
from governance.services.errors import InvalidFields
from governance.services.policy_eval import (
    MetricKey,
    PolicyDecision,
    SystemFacts,
    policy_decide,
    policy_facts,
    policy_requirements,
)

__all__ = [
    "GATE_ALLOW",
    "GATE_DENY",
    "GateDecision",
    "GateRequestInvalid",
    "cicd_gate_decide",
    "policy_versions_for_gate",
]

GATE_ALLOW = "allow"
GATE_DENY = "deny"
MAX_POLICIES = 100
# Version columns the gate never reads (the document comes from ``_documents``' cache).
_HEAVY_VERSION_FIELDS = ("content", "document", "shadow_report", "validation_errors")
# Parsed documents by version id: versions are immutable (a trigger refuses changing them), so a cached
# document is never stale; bounded so a long-running worker does not grow without end.
_DOCUMENTS: dict[Any, dict[str, Any]] = {}
_DOCUMENTS_MAX = 512
MAX_EVAL_RUNS = 100
_BLOCKING_REVIEW_SEVERITIES = (Severity.CRITICAL, Severity.HIGH)
_ACTION_WORDS = {
    "deny": "denies",
    "escalate": "requires an escalation",
    "require_review": "requires a human review",
}


class GateRequestInvalid(InvalidFields):
    """Named policies or evaluation runs that do not exist (or are not the system's); the API answers 400."""


@dataclass(frozen=True)
class GateDecision:
    decision: str
    reasons: list[str]
    checked_at: datetime
    system: AISystem
    artifact: str
    version: str = ""
    policy_ids: list[str] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    evaluation_run_ids: list[str] = field(default_factory=list)
    audit_entry: AuditLog | None = None

    @property
    def allowed(self) -> bool:
        return self.decision == GATE_ALLOW


# --- which policy versions ---------------------------------------------------------------------------------
def _parse_policy_ref(ref: str) -> tuple[str, int | None]:
    key, _, pinned = ref.strip().rpartition("@") if "@" in ref else (ref.strip(), "", "")
    if pinned and not pinned.isdigit():
        return ref.strip(), None
    return key, int(pinned) if pinned else None


def policy_versions_for_gate(
    *, system: AISystem, policy_ids: Sequence[str]
) -> tuple[list[tuple[Policy, PolicyVersion | None, int | None]], dict[str, list[str]]]:
    """``([(policy, version or None, pinned version number or None)], field errors)``.

    With ``policy_ids`` (each a policy id or key, optionally ``@<version>``): exactly those; an unknown
    policy or version is a field error ``policy_ids.<i>``. Without: every policy with an active version.
    Scope is checked by the evaluator, not here.
    """
    if not policy_ids:
        policies = (
            Policy.objects.filter(active_version__isnull=False)
            .select_related("active_version")
            .defer(*(f"active_version__{name}" for name in _HEAVY_VERSION_FIELDS))
        )
        return [(policy, policy.active_version, None) for policy in policies.order_by("key")], {}
    errors: dict[str, list[str]] = {}
    refs = [_parse_policy_ref(ref) for ref in policy_ids]
    ids = {uuid_or_none(key) for key, _ in refs} - {None}
    found = Policy.objects.filter(Q(key__in={key for key, _ in refs}) | Q(pk__in=ids)).select_related("active_version")
    by_ref = {}
    for policy in found:
        by_ref[policy.key] = policy
        by_ref[str(policy.pk)] = policy
    pinned_numbers = {(by_ref[key].pk, number) for key, number in refs if key in by_ref and number is not None}
    pinned = {}
    if pinned_numbers:
        pinned = {(v.policy_id, v.version): v for v in PolicyVersion.objects.filter(_version_q(pinned_numbers))}
    chosen = []
    for index, (key, number) in enumerate(refs):
        policy = by_ref.get(key) or by_ref.get(str(uuid_or_none(key)))
        if policy is None:
            errors[f"policy_ids.{index}"] = [f"no policy {key!r}"]
            continue
        if number is None:
            chosen.append((policy, policy.active_version, None))
            continue
        version = pinned.get((policy.pk, number))
        if version is None:
            errors[f"policy_ids.{index}"] = [f"policy {policy.key!r} has no version {number}"]
            continue
        chosen.append((policy, version, number))
    return chosen, errors


def _version_q(pairs: set[tuple[Any, int]]) -> Q:
    condition = Q()
    for policy_id, number in pairs:
        condition |= Q(policy_id=policy_id, version=number)
    return condition


# --- evaluation runs ---------------------------------------------------------------------------------------
def _named_runs(system: AISystem, ids: Sequence[str]) -> tuple[list[EvaluationRun], dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    wanted = [(index, uuid_or_none(ref)) for index, ref in enumerate(ids)]
    runs = {run.pk: run for run in EvaluationRun.objects.filter(pk__in=[pk for _, pk in wanted if pk])}
    found = []
    for index, pk in wanted:
        run = runs.get(pk)
        if run is None or run.system_id != system.pk:
            errors[f"eval_run_ids.{index}"] = [f"no evaluation run {ids[index]!r} of system {system.name!r}"]
        else:
            found.append(run)
    return found, errors


def _run_reasons(runs: Sequence[EvaluationRun], *, latest: bool) -> list[str]:
    """A failed run blocks; so does a posted (unverified) result of a suite the gateway runs, whatever it
    claims, so a posted pass cannot hide a failed gateway run. ``latest``: the runs are the system's latest
    per suite/metric (no run was named)."""
    reasons = []
    prefix = "latest " if latest else ""
    for run in runs:
        where = f"(run {run.pk}, {run.ran_at:%Y-%m-%d %H:%M} UTC)"
        if is_unverified_gateway_result(suite=run.suite, provenance=run.provenance):
            by = f" by {run.triggered_by}" if run.triggered_by else ""
            reasons.append(
                f"{prefix}{run.suite}/{run.metric} result posted{by} without an eval run: unverified, "
                f"it does not count as a pass; run the suite through /eval/{run.suite}/run {where}"
            )
        elif not run.passed:
            against = f"against threshold {run.threshold:g}" if run.threshold is not None else "marked failed"
            reasons.append(f"{prefix}{run.suite}/{run.metric} evaluation failed: {run.value:g} {against} {where}")
    return reasons


def _latest_runs(system: AISystem) -> list[EvaluationRun]:
    """The latest run of every suite/metric of the system (a newer pass supersedes an older failure)."""
    return list(
        EvaluationRun.objects.filter(system=system)
        .only(
            "id",
            "suite",
            "metric",
            "value",
            "threshold",
            "passed",
            "ran_at",
            "created_at",
            "provenance",
            "triggered_by",
        )  # fmt: skip
        .annotate(
            recency=Window(
                expression=RowNumber(),
                partition_by=[F("suite"), F("metric")],
                order_by=[F("ran_at").desc(), F("created_at").desc()],
            )
        )
        # ``passed`` is judged after the window: filtering on it first would rank only the failures.
        .filter(recency=1)
        .order_by("suite", "metric")
    )


# --- incidents and reviews ---------------------------------------------------------------------------------
def _incident_reasons(system: AISystem) -> list[str]:
    from incidents.models import OPEN_INCIDENT_STATUSES, Incident  # incidents builds on governance

    blocking = (
        Incident.objects.filter(system=system, status__in=OPEN_INCIDENT_STATUSES)
        .filter(Q(severity=Severity.CRITICAL) | Q(serious=True))
        .order_by("opened_at")
        .values("id", "title", "severity", "serious", "status")
    )
    reasons = []
    for incident in blocking:
        kinds = " and ".join(
            name
            for name, on in (("critical", incident["severity"] == Severity.CRITICAL), ("serious", incident["serious"]))
            if on
        )
        reasons.append(f"open {kinds} incident {incident['id']} ({incident['status']}): {incident['title']}")
    return reasons


def _review_reasons(system: AISystem) -> list[str]:
    from hitl.models import ReviewItem, ReviewStatus  # hitl builds on governance

    pending = (
        ReviewItem.objects.filter(system=system, status=ReviewStatus.PENDING, severity__in=_BLOCKING_REVIEW_SEVERITIES)
        .order_by("sla_due_at")
        .values_list("id", "severity", "title")
    )
    return [f"pending {severity} review {item_id}: {title}" for item_id, severity, title in pending]


# --- policies ----------------------------------------------------------------------------------------------
def _policy_outcomes(
    *, system: AISystem, chosen: list[tuple[Policy, PolicyVersion | None, int | None]], runs: list[EvaluationRun],
    now: datetime,
) -> tuple[list[str], list[dict[str, Any]]]:  # fmt: skip
    reasons: list[str] = []
    outcomes: list[dict[str, Any]] = []
    usable: list[tuple[Policy, PolicyVersion]] = []
    for policy, version, _pinned in chosen:
        if version is None:
            reasons.append(f"policy {policy.key!r} has no active version")
            outcomes.append({"policy": policy.key, "version": None, "action": None, "valid": False})
        elif not version.validated:
            errors = (version.lint_counts or {}).get("error", 0)
            reasons.append(f"policy {policy.key!r} version {version.version} is not valid ({errors} lint error(s))")
            outcomes.append({"policy": policy.key, "version": version.version, "action": None, "valid": False})
        else:
            usable.append((policy, version))
    if not usable:
        return reasons, outcomes
    documents = _documents([version.pk for _, version in usable])
    usable = [(policy, version) for policy, version in usable if documents.get(version.pk)]
    documents = [documents[version.pk] for _, version in usable]
    facts = policy_facts(systems=[system], requirements=policy_requirements(*documents), at=now)[system.pk]
    facts = _with_named_runs(facts, runs)
    for (policy, version), document in zip(usable, documents, strict=True):
        decision: PolicyDecision = policy_decide(document, facts)
        outcomes.append({"version": version.version, "valid": True, **decision.as_dict(), "policy": policy.key})
        if decision.applies and decision.action != GATE_ALLOW:
            rule = f"rule {decision.rule_id!r}" if decision.rule_id else "its default action"
            reasons.append(
                f"policy {policy.key!r} v{version.version} {_ACTION_WORDS.get(decision.action, decision.action)} "
                f"({rule}{', ' + decision.severity if decision.severity else ''}): {'; '.join(decision.reasons)}"
            )
    return reasons, outcomes


def _documents(version_ids: list[Any]) -> dict[Any, dict[str, Any]]:
    """The parsed documents of these (immutable) versions: from the cache, the rest in one query."""
    missing = [pk for pk in version_ids if pk not in _DOCUMENTS]
    if missing:
        if len(_DOCUMENTS) + len(missing) > _DOCUMENTS_MAX:
            _DOCUMENTS.clear()
        _DOCUMENTS.update(PolicyVersion.objects.filter(pk__in=missing).values_list("pk", "document"))
    return {pk: _DOCUMENTS[pk] for pk in version_ids if pk in _DOCUMENTS}


def _with_named_runs(facts: SystemFacts, runs: list[EvaluationRun]) -> SystemFacts:
    """The named runs (the artifact's own evidence) override older results of the same metrics; posted
    results of gateway suites are never evidence."""
    if not runs:
        return facts
    metrics, sources = dict(facts.metrics), dict(facts.metric_runs)
    for run in sorted(runs, key=lambda r: (r.ran_at, r.created_at)):
        if is_unverified_gateway_result(suite=run.suite, provenance=run.provenance):
            continue
        for key in (MetricKey(run.suite, run.metric), MetricKey("", run.metric)):
            metrics[key], sources[key] = run.value, str(run.pk)
    return SystemFacts(**{**facts.__dict__, "metrics": metrics, "metric_runs": sources})


# --- the decision ------------------------------------------------------------------------------------------
def cicd_gate_decide(
    *,
    caller: User,
    system: AISystem,
    artifact: str,
    version: str = "",
    policy_ids: Sequence[str] = (),
    eval_run_ids: Sequence[str] = (),
    now: datetime | None = None,
) -> GateDecision:
    """Decide whether ``artifact`` (``version``) of ``system`` may be deployed; see the module docstring.

    ``GateRequestInvalid`` (nothing audited) when a named policy, policy version or evaluation run does
    not exist or is not the system's. Otherwise exactly one ``cicd.gate_decided`` audit entry with the
    decision, every reason and each policy's outcome.
    """
    now = now or timezone.now()
    chosen, errors = policy_versions_for_gate(system=system, policy_ids=list(policy_ids)[:MAX_POLICIES])
    runs, run_errors = _named_runs(system, list(eval_run_ids)[:MAX_EVAL_RUNS])
    errors.update(run_errors)
    if errors:
        raise GateRequestInvalid(errors)
    policy_reasons, outcomes = _policy_outcomes(system=system, chosen=chosen, runs=runs, now=now)
    reasons = [
        *_incident_reasons(system),
        *_review_reasons(system),
        *(_run_reasons(runs, latest=False) if runs else _run_reasons(_latest_runs(system), latest=True)),
        *policy_reasons,
    ]
    decision = GATE_DENY if reasons else GATE_ALLOW
    entry = audit_record(
        action=AuditAction.CICD_GATE_DECIDED,
        actor=caller,
        target=system,
        data={
            "caller": caller.get_username(),
            "system": str(system.pk),
            "system_name": system.name,
            "artifact": artifact,
            "version": version,
            "decision": decision,
            "reasons": reasons,
            "policy_ids": list(policy_ids),
            "policies": outcomes,
            "evaluation_runs": [str(run.pk) for run in runs],
            "checked_at": now,
        },
    )
    return GateDecision(
        decision=decision,
        reasons=reasons,
        checked_at=now,
        system=system,
        artifact=artifact,
        version=version,
        policy_ids=list(policy_ids),
        policies=outcomes,
        evaluation_run_ids=[str(run.pk) for run in runs],
        audit_entry=entry,
    )
