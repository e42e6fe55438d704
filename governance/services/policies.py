"""Policies and their versions: create, add a version, activate, roll back, deactivate, diff — each write audited
in the same transaction (``policies`` and ``policy_versions`` are governed tables).

What holds whatever the caller (API, admin, command):

- a version stores the text exactly as submitted with the linter's verdict at that moment, whatever the
  verdict (``validated`` false and its findings when it has errors); what it says never changes afterwards
  (see ``PolicyVersion``);
- versions of a policy are numbered 1, 2, … without gaps or collisions (a row lock on the policy);
- only a validated version is activated; activating an older one is a rollback, audited the same way;
- who writes: admins (and system components: a string or ``None`` actor) any policy; governance leads a
  platform-wide policy or one of their teams' policies; nobody else.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.choices import AuditAction, Role
from governance.models import ContentFormat, Policy, PolicyVersion, Team
from governance.services.audit import AuditEntry, audit_record, audit_record_many, text_storage_problem
from governance.services.errors import InvalidFields
from governance.services.policy_format import slug_conforms
from governance.services.policy_lint import ERROR, MAX_DOCUMENT_BYTES, WARNING, LintReport, policy_lint
from governance.services.policy_replay import replay_summary

__all__ = [
    "RESERVED_POLICY_KEYS",
    "PolicyInvalid",
    "PolicyKeyTaken",
    "PolicyPermissionDenied",
    "PolicyTooLarge",
    "PolicyVersionDuplicate",
    "PolicyVersionNotValidated",
    "policy_create",
    "policy_deactivate",
    "policy_may_write",
    "policy_version_activate",
    "policy_version_create",
    "policy_version_diff",
]

# Path segments next to /policies/{id} in the API: a policy with such a key is reachable only by its id.
RESERVED_POLICY_KEYS = frozenset({"lint", "schema"})
REASON_MAX_LENGTH = 1000
# Findings a version keeps in ``validation_errors`` (info findings are counted, not kept).
KEPT_LEVELS = (ERROR, WARNING)


class PolicyInvalid(InvalidFields):
    """The submission cannot become a policy or version (→ 400); ``fields`` names what is wrong."""


class PolicyTooLarge(PolicyInvalid):
    """Over the linter's size bound (→ 413)."""

    def __init__(self, fields: dict[str, list[str]]):
        super().__init__(fields, too_many=True)


class PolicyKeyTaken(PolicyInvalid):
    """A policy with this ``metadata.id`` exists (→ 409)."""


class PolicyVersionDuplicate(PolicyInvalid):
    """The content is identical to the policy's latest version: nothing new (→ 409)."""


class PolicyVersionNotValidated(Exception):
    """Only a validated version can be activated (→ 409 ``policy_version_not_validated``)."""

    def __init__(self, version: PolicyVersion):
        self.version = version
        self.error_count = int((version.lint_counts or {}).get(ERROR, 0))
        super().__init__(
            f"version {version.version} of policy {version.policy.key!r} has {self.error_count} lint error(s); "
            "only a validated version can be activated (fix the errors in a new version)"
        )


class PolicyPermissionDenied(PermissionError):
    """The actor may not write this policy (→ 403)."""


# --- who writes ------------------------------------------------------------------------------------------
def policy_may_write(*, actor: Any, team: Team | None) -> bool:
    """Whether ``actor`` may create or change a policy owned by ``team`` (None: platform-wide).

    Admins and superusers: always. Governance leads: platform-wide policies and their own teams' policies.
    A system component (a string actor, or None) acts for the platform. Everyone else: never.
    """
    if actor is None or isinstance(actor, str):
        return True
    if not getattr(actor, "is_authenticated", False) or getattr(actor, "is_service_account", False):
        return False
    if actor.is_admin_role:
        return True
    if not actor.has_role(Role.GOVERNANCE_LEAD):
        return False
    return team is None or actor.teams.filter(pk=team.pk).exists()


def _require_may_write(actor: Any, team: Team | None) -> None:
    if not policy_may_write(actor=actor, team=team):
        owner = f"team {team.slug!r}" if team is not None else "the platform"
        raise PolicyPermissionDenied(
            f"only admins and governance leads of {owner} may write this policy"
            if team is not None
            else "only admins and governance leads may write policies"
        )


# --- submissions -----------------------------------------------------------------------------------------
class _Submission:
    """A submitted policy: its stored text and format, and the linter's report on exactly that text."""

    def __init__(self, *, text: str | None, document: Any, filename: str):
        if (text is None) == (document is None):
            raise PolicyInvalid({"document": ["send the policy as document (a JSON object) or as text, not both"]})
        filename = filename if isinstance(filename, str) and filename else "policy.yaml"
        if text is not None:
            if not isinstance(text, str):
                raise PolicyInvalid({"text": ["must be text"]})
            self.field, content = "text", text
        else:
            self.field = "document"
            try:  # the stored text of a document: JSON as people read it
                content = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
            except (TypeError, ValueError) as exc:
                raise PolicyInvalid({"document": [f"not representable as JSON: {exc}"]}) from exc
            if not filename.lower().endswith(".json"):
                filename = "policy.json"
        size = len(content.encode("utf-8", errors="surrogatepass"))
        if size > MAX_DOCUMENT_BYTES:
            raise PolicyTooLarge({self.field: [f"the policy is {size:,} bytes; at most {MAX_DOCUMENT_BYTES:,}"]})
        if problem := text_storage_problem(content):
            raise PolicyInvalid({self.field: [problem]})
        self.content = content
        self.filename = filename
        self.content_format = ContentFormat.JSON if _reads_as_json(content, filename) else ContentFormat.YAML
        self.sha256 = hashlib.sha256(content.encode("utf-8")).hexdigest()
        self.report: LintReport = policy_lint(text=content, filename=filename)
        self.document = self.report.document
        # Escapes in the text ("\0", "\ud800") can put what no database column stores into the document.
        if problem := _storage_problem(self.document):
            raise PolicyInvalid({self.field: [problem]})

    @property
    def metadata(self) -> dict[str, Any] | None:
        metadata = self.document.get("metadata") if isinstance(self.document, dict) else None
        return metadata if isinstance(metadata, dict) else None

    def parse_failure(self) -> PolicyInvalid:
        syntax = next((f for f in self.report.findings if f.name in ("syntax", "document-limit")), None)
        where = f" (line {syntax.line}, column {syntax.column})" if syntax and syntax.line else ""
        message = f"{syntax.message}{where}" if syntax else "the policy could not be read"
        return PolicyInvalid({self.field: [message]})

    def version_fields(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "content_format": self.content_format,
            "document": self.document,
            "content_sha256": self.sha256,
            "validated": self.report.ok,
            "validation_errors": [f.as_dict() for f in self.report.findings if f.level in KEPT_LEVELS],
            "lint_counts": self.report.counts,
        }


def _reads_as_json(content: str, filename: str) -> bool:
    if filename.lower().endswith(".json"):
        return True
    if not content.lstrip().startswith(("{", "[")):
        return False
    try:
        json.loads(content)
    except (ValueError, RecursionError):
        return False
    return True


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _storage_problem(document: Any) -> str | None:
    return next((problem for text in _strings(document) if (problem := text_storage_problem(text))), None)


def _owner_team(metadata: dict[str, Any]) -> Team | None:
    slug = metadata.get("owner_team")
    if slug is None:
        return None
    team = Team.objects.filter(slug=slug).first() if isinstance(slug, str) else None
    if team is None:
        raise PolicyInvalid({"metadata.owner_team": [f"no team with the slug {slug!r}"]})
    return team


def _text_of(metadata: dict[str, Any], key: str, max_length: int, default: str = "") -> str:
    value = metadata.get(key)
    return value.strip()[:max_length] if isinstance(value, str) and value.strip() else default


def policy_audit_ref(policy: Policy) -> dict[str, str]:
    """How every audit entry names a policy: ``data["policy"] = {"id", "key"}``."""
    return {"id": str(policy.pk), "key": policy.key}


def _version_audit_data(version: PolicyVersion) -> dict[str, Any]:
    return {
        "policy": policy_audit_ref(version.policy),
        "version": version.version,
        "content_sha256": version.content_sha256,
        "content_format": version.content_format,
        "validated": version.validated,
        "lint_counts": version.lint_counts,
    }


# --- writes ----------------------------------------------------------------------------------------------
def policy_create(
    *, text: str | None = None, document: Any = None, filename: str = "policy.yaml", actor: Any
) -> PolicyVersion:
    """Create a policy from its first document and store that document as version 1 (not active).

    The policy's key, name, description and owner team come from ``metadata`` (id, name, description,
    owner_team). Raises before writing anything: ``PolicyInvalid`` when the text does not parse, has no
    usable ``metadata.id`` (a slug; ``lint`` and ``schema`` are reserved) or names an unknown
    ``metadata.owner_team``; ``PolicyTooLarge`` over 1 MB; ``PolicyPermissionDenied`` when the actor may
    not write that team's policies; ``PolicyKeyTaken`` when the key exists (also on a concurrent create).
    A document with lint errors is still created (version 1 ``validated`` false). Audits
    ``policy.created`` and ``policy.version_created`` in the same transaction.
    """
    submission = _Submission(text=text, document=document, filename=filename)
    metadata = submission.metadata
    if submission.document is None:
        raise submission.parse_failure()
    key = metadata.get("id") if metadata is not None else None
    if not slug_conforms(key):
        shown = "missing" if key is None else repr(key)
        raise PolicyInvalid(
            {"metadata.id": [f"a policy needs metadata.id, a slug (a-z, 0-9, - and _; ≤ 100); got {shown}"]}
        )
    if key in RESERVED_POLICY_KEYS:
        raise PolicyInvalid({"metadata.id": [f"{key!r} is reserved; choose another id"]})
    team = _owner_team(metadata)
    _require_may_write(actor, team)
    user = _user_or_none(actor)
    with transaction.atomic():
        if Policy.objects.filter(key=key).exists():
            raise PolicyKeyTaken({"metadata.id": [f"a policy {key!r} already exists; add a version to it"]})
        try:
            with transaction.atomic():
                policy = Policy.objects.create(
                    key=key,
                    name=_text_of(metadata, "name", 200, default=key),
                    description=_text_of(metadata, "description", 5000),
                    team=team,
                    created_by=user,
                )
        except IntegrityError as exc:  # created concurrently
            raise PolicyKeyTaken({"metadata.id": [f"a policy {key!r} already exists; add a version to it"]}) from exc
        version = PolicyVersion.objects.create(policy=policy, version=1, created_by=user, **submission.version_fields())
        audit_record_many(
            entries=[
                AuditEntry(
                    action=AuditAction.POLICY_CREATED,
                    actor=actor,
                    target=policy,
                    data={
                        "policy": policy_audit_ref(policy),
                        "name": policy.name,
                        "team": team.slug if team else None,
                    },
                ),
                AuditEntry(
                    action=AuditAction.POLICY_VERSION_CREATED,
                    actor=actor,
                    target=version,
                    data=_version_audit_data(version),
                ),
            ]
        )
    return version


def policy_version_create(
    *, policy: Policy, text: str | None = None, document: Any = None, filename: str = "policy.yaml", actor: Any
) -> PolicyVersion:
    """Store a new version of ``policy`` (numbered previous max + 1), linted, whatever the verdict.

    A version that does not lint clean is stored with ``validated`` false and its error and warning
    findings (it cannot be activated); one that does not even parse is stored with ``document`` empty.
    Raises before writing: ``PolicyInvalid`` when ``metadata.id`` is not the policy's key or
    ``metadata.owner_team`` is not its owner team (ownership does not move by a version),
    ``PolicyTooLarge`` over 1 MB, ``PolicyPermissionDenied``, ``PolicyVersionDuplicate`` when the content is
    identical to the latest version. Numbering is serialized by a row lock on the policy, so concurrent
    creates never collide. Audits ``policy.version_created``; does not activate anything.
    """
    _require_may_write(actor, policy.team)
    submission = _Submission(text=text, document=document, filename=filename)
    metadata = submission.metadata
    if metadata is not None:
        if "id" in metadata and metadata["id"] != policy.key:
            raise PolicyInvalid({"metadata.id": [f"must be {policy.key!r}, the policy this version belongs to"]})
        owner = policy.team.slug if policy.team_id else None
        if metadata.get("owner_team") != owner:
            expected = f"be {owner!r}" if owner else "be absent (the policy is platform-wide)"
            raise PolicyInvalid({"metadata.owner_team": [f"must {expected}; a version does not change the owner"]})
    user = _user_or_none(actor)
    with transaction.atomic():
        locked = Policy.objects.select_for_update().get(pk=policy.pk)
        latest = locked.versions.order_by("-version").values("version", "content_sha256").first()
        if latest is not None and latest["content_sha256"] == submission.sha256:
            raise PolicyVersionDuplicate(
                {submission.field: [f"identical to version {latest['version']}; nothing new to store"]}
            )
        number = latest["version"] + 1 if latest is not None else 1
        version = PolicyVersion.objects.create(
            policy=locked, version=number, created_by=user, **submission.version_fields()
        )
        Policy.objects.filter(pk=locked.pk).update(updated_at=timezone.now())
        audit_record(
            action=AuditAction.POLICY_VERSION_CREATED,
            actor=actor,
            target=version,
            data=_version_audit_data(version),
        )
    return version


def policy_version_activate(*, version: PolicyVersion, actor: Any, reason: str = "") -> PolicyVersion:
    """Make ``version`` the policy's active version (a rollback when it is older than the current one).

    Refuses, writing nothing: ``PolicyVersionNotValidated`` when the version has lint errors,
    ``PolicyPermissionDenied``. The policy row is locked; the policy's name and description follow the
    activated version's metadata. Idempotent: activating the active version changes and audits nothing.
    Audits ``policy.activated`` with the previous and new version numbers, ``rollback`` and the reason.
    """
    policy = version.policy
    _require_may_write(actor, policy.team)
    reason = _reason(reason)
    if not version.validated:
        raise PolicyVersionNotValidated(version)
    with transaction.atomic():
        locked = Policy.objects.select_for_update(of=("self",)).select_related("active_version").get(pk=policy.pk)
        previous = locked.active_version
        if previous is not None and previous.pk == version.pk:
            return version
        now = timezone.now()
        metadata = version.document.get("metadata") if isinstance(version.document, dict) else None
        metadata = metadata if isinstance(metadata, dict) else {}
        changes = {
            "active_version": version,
            "name": _text_of(metadata, "name", 200, default=locked.name),
            "description": _text_of(metadata, "description", 5000, default=""),
            "updated_at": now,
        }
        updated = Policy.objects.filter(pk=locked.pk, active_version=previous).update(**changes)
        if updated != 1:  # cannot happen under the lock; refuse rather than audit a change not made
            raise PolicyInvalid({"version": ["the policy changed concurrently; retry"]})
        PolicyVersion.objects.filter(pk=version.pk).update(
            activated_at=now, activated_by=_user_or_none(actor), updated_at=now
        )
        audit_record(
            action=AuditAction.POLICY_ACTIVATED,
            actor=actor,
            target=locked,
            data={
                "policy": policy_audit_ref(locked),
                "version": version.version,
                "version_id": str(version.pk),
                "previous_version": previous.version if previous is not None else None,
                "rollback": previous is not None and version.version < previous.version,
                "reason": reason,
                # What the shadow replay said before activation (policy_replay), so the decision is on record.
                "shadow_replay": replay_summary(version.shadow_report),
            },
        )
    version.refresh_from_db()
    policy.refresh_from_db()
    return version


def policy_deactivate(*, policy: Policy, actor: Any, reason: str = "") -> Policy:
    """Leave ``policy`` without an active version (the evaluator and the gate stop applying it).

    Idempotent: an inactive policy changes and audits nothing. Audits ``policy.deactivated`` with the
    version that was active and the reason. Raises ``PolicyPermissionDenied`` before writing.
    """
    _require_may_write(actor, policy.team)
    reason = _reason(reason)
    with transaction.atomic():
        locked = Policy.objects.select_for_update(of=("self",)).select_related("active_version").get(pk=policy.pk)
        previous = locked.active_version
        if previous is None:
            return locked
        Policy.objects.filter(pk=locked.pk, active_version=previous).update(
            active_version=None, updated_at=timezone.now()
        )
        audit_record(
            action=AuditAction.POLICY_DEACTIVATED,
            actor=actor,
            target=locked,
            data={"policy": policy_audit_ref(locked), "previous_version": previous.version, "reason": reason},
        )
    policy.refresh_from_db()
    return policy


def _reason(reason: Any) -> str:
    if not isinstance(reason, str):
        raise PolicyInvalid({"reason": ["must be text"]})
    if len(reason) > REASON_MAX_LENGTH:
        raise PolicyInvalid({"reason": [f"at most {REASON_MAX_LENGTH} characters"]})
    if problem := text_storage_problem(reason):
        raise PolicyInvalid({"reason": [problem]})
    return reason.strip()


def _user_or_none(actor: Any):
    return actor if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) else None


# --- reads -----------------------------------------------------------------------------------------------
def policy_version_diff(*, version: PolicyVersion, against: PolicyVersion) -> dict[str, Any]:
    """What changed from ``against`` to ``version`` (two versions of one policy; pure, no writes).

    ``text``: a unified diff of the stored contents. ``rules``: by rule id, the ``added`` and ``removed``
    ids, the ``changed`` ones with the top-level keys that differ, and ``order_changed`` (the first matching
    rule decides, so reordering alone changes behaviour). ``scope`` and ``default_action``: ``from``/``to``
    and ``changed``. A version that did not parse contributes no rules.
    """
    if version.policy_id != against.policy_id:
        raise PolicyInvalid({"against": ["must be a version of the same policy"]})
    key = version.policy.key
    text = "".join(
        difflib.unified_diff(
            against.content.splitlines(keepends=True),
            version.content.splitlines(keepends=True),
            fromfile=f"{key} v{against.version}",
            tofile=f"{key} v{version.version}",
        )
    )
    old_rules, new_rules = _rules_by_id(against.document), _rules_by_id(version.document)
    common = [rule_id for rule_id in new_rules if rule_id in old_rules]
    changed = [
        {"id": rule_id, "keys": _changed_keys(old_rules[rule_id], new_rules[rule_id])}
        for rule_id in common
        if old_rules[rule_id] != new_rules[rule_id]
    ]
    old_order = [rule_id for rule_id in old_rules if rule_id in new_rules]
    old_spec, new_spec = _spec(against.document), _spec(version.document)
    return {
        "policy": key,
        "version": version.version,
        "against": against.version,
        "text": text,
        "rules": {
            "added": [rule_id for rule_id in new_rules if rule_id not in old_rules],
            "removed": [rule_id for rule_id in old_rules if rule_id not in new_rules],
            "changed": changed,
            "order_changed": old_order != common,
        },
        "scope": _field_change(old_spec.get("scope"), new_spec.get("scope")),
        "default_action": _field_change(old_spec.get("default_action"), new_spec.get("default_action")),
    }


def _spec(document: Any) -> dict[str, Any]:
    spec = document.get("spec") if isinstance(document, dict) else None
    return spec if isinstance(spec, dict) else {}


def _rules_by_id(document: Any) -> dict[str, dict[str, Any]]:
    """Rules keyed by id in document order; a rule without a string id, or a repeated id, is skipped."""
    rules = _spec(document).get("rules")
    by_id: dict[str, dict[str, Any]] = {}
    for rule in rules if isinstance(rules, list) else []:
        if isinstance(rule, dict) and isinstance(rule.get("id"), str) and rule["id"] not in by_id:
            by_id[rule["id"]] = rule
    return by_id


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    missing = object()
    return sorted(name for name in old.keys() | new.keys() if old.get(name, missing) != new.get(name, missing))


def _field_change(old: Any, new: Any) -> dict[str, Any]:
    return {"from": old, "to": new, "changed": old != new}
