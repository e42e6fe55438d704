"""Shadow replay: what a policy version would have decided over the last days, next to what the active one did.

Before a version is activated, ``policy_shadow_replay`` evaluates it and the policy's active version (the
*baseline*; none when the policy has never been activated) for every active AI system in either scope, at
the end of each of the last ``days`` UTC days and now, against the events and evaluation results as they
were at that moment. The report says which decisions would change: how many, which transitions
(``allow → deny``…), which systems and when, which rules of the new version would have decided, and
what the new version would decide for each system now. Nothing is enforced; the report is stored on the
version (``shadow_report``, ``shadow_replayed_at``) and the replay is audited ``policy.shadow_replayed``.

Cost: one query for the evaluation timeline, then three per distinct (signal, category, window) the two
versions read, per moment (``days`` + 1 moments), whatever the number of systems.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance.choices import AuditAction
from governance.models import AISystem, PolicyVersion, User
from governance.services.audit import audit_record
from governance.services.errors import InvalidFields
from governance.services.policy_eval import (
    MetricTimeline,
    policy_decide,
    policy_requirements,
    signal_values,
    system_facts,
)

__all__ = ["DEFAULT_REPLAY_DAYS", "MAX_REPLAY_DAYS", "PolicyNotReplayable", "policy_shadow_replay", "replay_summary"]

MAX_REPLAY_DAYS = 90
DEFAULT_REPLAY_DAYS = 30
MAX_CHANGES_LISTED = 200
NO_POLICY = "none"


class PolicyNotReplayable(InvalidFields):
    """The version cannot be evaluated (its document did not parse or it has lint errors), or bad ``days``."""


def _moments(now: datetime, days: int) -> list[datetime]:
    """The end of each of the last ``days`` UTC days (oldest first), then ``now``."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return [midnight - timedelta(days=back) for back in range(days - 1, -1, -1)] + [now]


def _label(decision) -> str:
    return decision.action if decision is not None else NO_POLICY


def policy_shadow_replay(
    *, version: PolicyVersion, actor: User | None, days: int = DEFAULT_REPLAY_DAYS, now: datetime | None = None
) -> dict[str, Any]:
    """Replay ``version`` against the active version of its policy over the last ``days`` days; store and audit
    the report, and return it. ``PolicyNotReplayable`` for an unvalidated version or ``days`` outside 1–90."""
    if not 1 <= int(days) <= MAX_REPLAY_DAYS:
        raise PolicyNotReplayable({"days": [f"must be between 1 and {MAX_REPLAY_DAYS}, got {days}"]})
    if not version.validated or not version.document:
        raise PolicyNotReplayable(
            {"version": [f"version {version.version} is not validated: fix its lint errors and add a new version"]}
        )
    now = now or timezone.now()
    days = int(days)
    policy = version.policy
    baseline = policy.active_version if policy.active_version_id not in (None, version.pk) else None
    documents = [version.document] + ([baseline.document] if baseline is not None else [])
    requirements = policy_requirements(*documents)
    systems = list(AISystem.objects.filter(is_active=True).select_related("team").order_by("name"))
    ids = [system.pk for system in systems]
    moments = _moments(now, days)
    timeline = MetricTimeline(system_ids=ids, wanted=requirements.metrics, until=now)

    evaluated = changed = 0
    transitions: Counter[str] = Counter()
    rules_fired: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    by_system: dict[Any, dict[str, Any]] = {}
    samples: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    for moment in moments:
        timeline.advance(moment)
        signals = signal_values(ids, requirements.signals, moment) if ids else {}
        for system in systems:
            facts = system_facts(system, metrics=timeline.values(system.pk), signals=signals.get(system.pk, {}))
            new = policy_decide(version.document, facts)
            old = policy_decide(baseline.document, facts) if baseline is not None else None
            if not new.applies and (old is None or not old.applies):
                continue
            evaluated += 1
            if new.applies and new.rule_id:
                rules_fired[new.rule_id] += 1
            missing.update(new.missing)
            old_label, new_label = _label(old), _label(new)
            if moment is now:
                current.append(
                    {
                        "system": str(system.pk),
                        "system_name": system.name,
                        "baseline": old_label,
                        "action": new_label,
                        "rule_id": new.rule_id,
                        "reasons": list(new.reasons),
                    }  # fmt: skip
                )
            if old_label == new_label:
                continue
            changed += 1
            transition = f"{old_label} -> {new_label}"
            transitions[transition] += 1
            entry = by_system.setdefault(
                system.pk,
                {
                    "system": str(system.pk),
                    "system_name": system.name,
                    "changes": 0,
                    "first_at": moment,
                    "transitions": Counter(),
                },  # fmt: skip
            )
            entry["changes"] += 1
            entry["last_at"] = moment
            entry["transitions"][transition] += 1
            if len(samples) < MAX_CHANGES_LISTED:
                samples.append(
                    {
                        "at": moment,
                        "system": str(system.pk),
                        "system_name": system.name,
                        "baseline": old.as_dict() if old is not None else None,
                        "new": new.as_dict(),
                    }  # fmt: skip
                )
    systems_changed = sorted(by_system.values(), key=lambda entry: (-entry["changes"], entry["system_name"]))
    report = {
        "policy": policy.key,
        "version": version.version,
        "baseline_version": baseline.version if baseline is not None else None,
        "days": days,
        "from": moments[0],
        "until": now,
        "moments": len(moments),
        "systems": len(systems),
        "decisions_evaluated": evaluated,
        "decisions_changed": changed,
        "transitions": dict(transitions.most_common()),
        "systems_changed": [{**entry, "transitions": dict(entry["transitions"])} for entry in systems_changed],
        "rules_fired": dict(rules_fired.most_common()),
        "missing_facts": dict(missing.most_common(20)),
        "now": current,
        "changes": samples,
        "changes_truncated": changed > len(samples),
    }
    report = _jsonable(report)
    with transaction.atomic():
        PolicyVersion.objects.filter(pk=version.pk).update(shadow_report=report, shadow_replayed_at=now)
        audit_record(
            action=AuditAction.POLICY_SHADOW_REPLAYED,
            actor=actor,
            target=version,
            data={
                "policy": policy.key,
                "version": version.version,
                "baseline_version": report["baseline_version"],
                "days": days,
                "decisions_evaluated": evaluated,
                "decisions_changed": changed,
                "transitions": report["transitions"],
            },
        )
    version.shadow_report, version.shadow_replayed_at = report, now
    return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def replay_summary(report: dict[str, Any] | None) -> str:
    """One line for the admin and the activation audit entry."""
    if not report:
        return "not replayed"
    transitions = ", ".join(f"{name}: {count}" for name, count in report.get("transitions", {}).items()) or "none"
    return (
        f"{report['decisions_changed']} of {report['decisions_evaluated']} decisions would change over "
        f"{report['days']} days (baseline v{report['baseline_version'] or '—'}); {transitions}"
    )
