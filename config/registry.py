"""Typed access to the platform configuration: ``get(key)`` to read, ``set(key, value, ...)`` to write.

Reads are served from a per-process snapshot of the whole (small) ``platform_config`` table. At most
every ``CONFIG_REFRESH_SECONDS`` (default 1 s) a process compares a version stamp of the table
(row count, sum of versions, last update) with its snapshot's and reloads on a difference, so a
change made anywhere is live in every web and worker process within about a second, without a
restart and without a query per read.

Writes validate against the key's JSON Schema plus its semantic checks, bump the version under a row
lock with optimistic concurrency (a stale ``expected_version`` is refused), and write the history row
and the audit entry in the same transaction.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Sum
from django.utils import timezone
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from config.diff import json_diff
from config.keys import KEYS, KEYS_BY_NAME, ConfigKey, load_schema
from config.models import PlatformConfig, PlatformConfigHistory
from governance.services.audit import text_storage_problem

__all__ = [
    "ConfigEntry",
    "ConfigValidationError",
    "StaleConfigVersion",
    "UnknownConfigKey",
    "declared",
    "entries",
    "entry",
    "get",
    "invalidate",
    "seed_missing",
    "set",
    "validate",
]


class UnknownConfigKey(KeyError):
    """The key is not declared in ``config.keys``."""


class ConfigValidationError(ValueError):
    """The value does not satisfy the key's schema; ``errors`` maps ``value.<path>`` to messages."""

    def __init__(self, key: str, errors: dict[str, list[str]]):
        self.key = key
        self.errors = errors
        first = next(iter(errors.items()))
        super().__init__(f"invalid value for {key}: {first[0]}: {first[1][0]}")


class StaleConfigVersion(Exception):
    """The caller edited an older version than the one stored (optimistic concurrency)."""

    def __init__(self, key: str, expected: int, current: int):
        self.key, self.expected, self.current = key, expected, current
        super().__init__(f"{key} is at version {current}, not {expected}; reload and reapply your change")


@dataclass(frozen=True)
class ConfigEntry:
    key: str
    value: Any
    version: int
    category: str
    description: str
    updated_at: datetime | None
    stored: bool  # False when the key is missing from the database and its declared default is served


# --- validation -----------------------------------------------------------------------------------
def _schema_registry() -> Registry:
    definitions = load_schema("_definitions")
    return Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))


_SCHEMA_REGISTRY = _schema_registry()


def declared(key: str) -> ConfigKey:
    try:
        return KEYS_BY_NAME[key]
    except KeyError:
        raise UnknownConfigKey(key) from None


def _unstorable(value: Any) -> dict[str, list[str]]:
    """Paths holding what JSON Schema accepts but no JSON column (PostgreSQL jsonb) or audit entry can
    store: NaN or infinite numbers, NUL characters and lone surrogates. Bad object keys are named
    escaped, so the error itself can be rendered. Iterative: nesting depth is the parser's business."""
    errors: dict[str, list[str]] = {}
    pending: list[tuple[str, Any]] = [("value", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            errors[path] = ["must be a finite number"]
        elif isinstance(item, str):
            if problem := text_storage_problem(item):
                errors[path] = [problem]
        elif isinstance(item, dict):
            for name, child in item.items():
                if problem := text_storage_problem(str(name)):
                    errors[f"{path}.{str(name).encode('unicode_escape').decode('ascii')}"] = [f"key: {problem}"]
                else:
                    pending.append((f"{path}.{name}", child))
        elif isinstance(item, list):
            pending.extend((f"{path}.{index}", child) for index, child in enumerate(item))
    return dict(sorted(errors.items()))


def validate(key: str, value: Any) -> None:
    """Raise ``ConfigValidationError`` naming every bad path: values no JSON column can store first,
    then JSON Schema, then semantic checks."""
    spec = declared(key)
    unstorable = _unstorable(value)
    if unstorable:  # the schema's messages would quote the offending text
        raise ConfigValidationError(key, unstorable)
    validator = Draft202012Validator(spec.schema, registry=_SCHEMA_REGISTRY, format_checker=FormatChecker())
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
        base = ".".join(["value", *map(str, error.absolute_path)])
        if error.validator == "required" and isinstance(error.instance, dict):
            for name in error.validator_value:
                if name not in error.instance:
                    errors.setdefault(f"{base}.{name}", []).append("This field is required.")
        elif error.validator == "additionalProperties" and error.validator_value is False:
            allowed = frozenset(error.schema.get("properties", {}))
            for name in error.instance:
                if name not in allowed:
                    errors.setdefault(f"{base}.{name}", []).append(
                        f"Unknown field; allowed: {', '.join(sorted(allowed))}."
                    )
        else:
            errors.setdefault(base, []).append(error.message)
    if not errors:
        for check in spec.checks:
            errors.update(check(value))
    if errors:
        raise ConfigValidationError(key, errors)


# --- the per-process snapshot ---------------------------------------------------------------------
class _Snapshot:
    """All rows of ``platform_config``; values kept as JSON text so each read returns a fresh copy
    (``json.loads`` is several times cheaper than ``copy.deepcopy``)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[PlatformConfig, str]] = {}
        self.stamp: tuple | None = None
        self.checked_at = float("-inf")
        self.lock = threading.Lock()

    @staticmethod
    def current_stamp() -> tuple:
        agg = PlatformConfig.objects.aggregate(n=Count("id"), v=Sum("version"), t=Max("updated_at"))
        return agg["n"], agg["v"], agg["t"]

    def refresh_if_due(self) -> None:
        now = time.monotonic()
        if now - self.checked_at < settings.CONFIG_REFRESH_SECONDS:
            return
        with self.lock:
            if now - self.checked_at < settings.CONFIG_REFRESH_SECONDS:
                return
            stamp = self.current_stamp()
            if stamp != self.stamp:
                self.rows = {row.key: (row, json.dumps(row.value)) for row in PlatformConfig.objects.all()}
                self.stamp = stamp
            self.checked_at = time.monotonic()

    def invalidate(self) -> None:
        with self.lock:
            self.checked_at = float("-inf")
            self.stamp = None


_snapshot = _Snapshot()


def invalidate() -> None:
    """Force the next read in this process to re-check the database."""
    _snapshot.invalidate()


def entry(key: str) -> ConfigEntry:
    spec = declared(key)
    _snapshot.refresh_if_due()
    cached = _snapshot.rows.get(key)
    if cached is None:
        return ConfigEntry(
            key=key,
            value=copy.deepcopy(spec.default),
            version=0,
            category=spec.category,
            description=spec.description,
            updated_at=None,
            stored=False,
        )
    row, text = cached
    return ConfigEntry(
        key=key,
        value=json.loads(text),
        version=row.version,
        category=row.category,
        description=row.description,
        updated_at=row.updated_at,
        stored=True,
    )


def get(key: str) -> Any:
    """The current value of ``key`` (a private copy: mutate it freely)."""
    return entry(key).value


def entries() -> list[ConfigEntry]:
    return [entry(spec.key) for spec in KEYS]


# --- writes ---------------------------------------------------------------------------------------
def set(key: str, value: Any, *, user: Any, reason: str = "", expected_version: int | None = None) -> PlatformConfig:
    """Validate and store a new value for ``key``.

    Guarantees: the value satisfies the key's schema; the version goes up by exactly one; a history
    row and a ``config.updated`` audit entry are written in the same transaction; with
    ``expected_version`` set (0 for a key served from its default), a concurrent or stale edit raises
    ``StaleConfigVersion`` and nothing is written. Setting the current value again is a no-op (no new version).
    """
    from governance.choices import AuditAction
    from governance.services.audit import audit_record

    spec = declared(key)
    validate(key, value)
    actor = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        row = PlatformConfig.objects.select_for_update().filter(key=key).first()
        current = row.version if row is not None else 0  # 0: served from the default, as entry() reports
        if expected_version is not None and current != expected_version:
            raise StaleConfigVersion(key, expected_version, current)
        if row is None:
            row = _insert_default(spec)
            if row.value == value:  # storing the default is still a write: audited like seed_missing
                audit_record(action=AuditAction.CONFIG_SEEDED, actor=user, target=row, data={"key": key, "version": 1})
                invalidate()
                transaction.on_commit(invalidate)
                return row
        if row.value == value:
            return row
        previous, now = row.value, timezone.now()
        row.value, row.version, row.updated_by = value, row.version + 1, actor
        row.save(update_fields=["value", "version", "updated_by", "updated_at"])
        PlatformConfigHistory.objects.create(
            config=row,
            version=row.version,
            previous_value=previous,
            new_value=value,
            changed_by=actor,
            changed_at=now,
            reason=reason,
        )
        audit_record(
            action=AuditAction.CONFIG_UPDATED,
            actor=user,
            target=row,
            data={"key": key, "version": row.version, "reason": reason, "changes": json_diff(previous, value)},
        )
        invalidate()
        transaction.on_commit(invalidate)
    return row


def _insert_default(spec: ConfigKey) -> PlatformConfig:
    row = PlatformConfig.objects.create(
        key=spec.key, value=spec.default, category=spec.category, description=spec.description, version=1
    )
    PlatformConfigHistory.objects.create(
        config=row,
        version=1,
        previous_value=None,
        new_value=spec.default,
        changed_at=timezone.now(),
        reason="seeded from the declared default",
    )
    return row


def seed_missing(*, actor: Any = "system:seed") -> list[str]:
    """Insert every declared key missing from the database with its default; audited, idempotent."""
    from governance.choices import AuditAction
    from governance.services.audit import AuditEntry, audit_record_many

    with transaction.atomic():
        present = frozenset(PlatformConfig.objects.values_list("key", flat=True))
        created = [_insert_default(spec) for spec in KEYS if spec.key not in present]
        audit_record_many(
            entries=[
                AuditEntry(
                    action=AuditAction.CONFIG_SEEDED, actor=actor, target=row, data={"key": row.key, "version": 1}
                )
                for row in created
            ]
        )
        invalidate()
    return [row.key for row in created]
