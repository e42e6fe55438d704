"""Validation of telemetry events: the body of ``POST /events`` and the items internal callers hand to
``oversight.services.ingest.ingest_events``.

Pure and fast: no database and no clock (the caller resolves the systems and passes ``now``), one pass
over the items, no exception raised for any input. Every bad item and every bad field is reported at
once, keyed ``events.<index>.<field>``, so a client fixes a rejected batch in one round trip.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from governance.choices import Severity
from governance.services.audit import text_storage_problem
from oversight.models import Category

MAX_EVENTS_PER_BATCH = 5_000
MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_ATTRIBUTES_BYTES = 16 * 1024
MAX_SCENARIO_ID_LENGTH = 64
SIGNAL_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

REQUIRED_FIELDS = ("system", "category", "severity", "signal", "value", "occurred_at")
OPTIONAL_FIELDS = ("event_id", "attributes", "scenario_id")
EVENT_FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)

# value -> the plain str stored (enum members are slow to hand around); in declaration order for messages
_CATEGORIES = {value: str(value) for value in Category.values}
_SEVERITIES = {value: str(value) for value in Severity.values}
_signal_matches = re.compile(SIGNAL_PATTERN.strip("^$")).fullmatch  # fullmatch: "$" would allow a trailing "\n"
# json.dumps escapes a NUL as \u0000 (which jsonb refuses); an escaped backslash before "u0000" is not one.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_MISSING = object()
_encode_attributes = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

REQUIRED = "this field is required"
UNKNOWN_FIELD = "unknown field"


class CleanEvent(NamedTuple):
    """One valid event, typed and normalized, ready to store."""

    event_id: UUID
    system_id: UUID
    category: str
    severity: str
    signal: str
    value: float
    occurred_at: datetime  # UTC
    attributes_json: str  # compact JSON of ``attributes``, serialized once (the size check needs it anyway)
    scenario_id: str | None
    attributes: dict  # last, so the fields before it are the row the ingest service stores


class EventValidationError(Exception):
    """A batch that must be refused as a whole; ``errors`` maps ``events.<index>.<field>`` (or ``events``
    for the body itself) to messages."""

    def __init__(self, errors: dict[str, list[str]], *, total: int | None = None):
        self.errors = errors
        self.total = total
        super().__init__(self.message)

    @property
    def invalid_count(self) -> int:
        return len({key.split(".", 2)[1] for key in self.errors if key.count(".") >= 1})

    @property
    def message(self) -> str:
        if self.total is not None and self.invalid_count:
            return f"{self.invalid_count} of {self.total} events are invalid; nothing was stored."
        field, messages = next(iter(self.errors.items()), ("events", ["invalid"]))
        return f"Invalid request body: {field}: {messages[0]}"


class EventBatchTooLarge(Exception):
    """More events in one batch than ``MAX_EVENTS_PER_BATCH``."""

    def __init__(self, count: int):
        self.count = count
        self.field_message = f"at most {MAX_EVENTS_PER_BATCH} events per request"
        super().__init__(f"{count} events in one request; the limit is {MAX_EVENTS_PER_BATCH}. Split the batch.")


def check_batch_size(items: Sequence) -> None:
    if len(items) > MAX_EVENTS_PER_BATCH:
        raise EventBatchTooLarge(len(items))


def events_from_body(body: Any) -> list:
    """The ``events`` list of a request body ``{"events": [...]}``, checked at the top level only (the
    items are checked by :func:`validate_event_items`). Raises ``EventValidationError`` on field
    ``events`` (or on an unknown top-level field) and ``EventBatchTooLarge`` over the limit."""
    if not isinstance(body, dict):
        raise EventValidationError({"events": ['the body must be a JSON object: {"events": [...]}']})
    errors = {str(field): [UNKNOWN_FIELD] for field in body if field != "events"}
    events = body.get("events", _MISSING)
    if events is _MISSING:
        errors = {"events": [REQUIRED], **errors}
    elif not isinstance(events, list):
        errors = {"events": ["must be a list of event objects"], **errors}
    elif not events:
        errors = {"events": ["must contain at least one event"], **errors}
    else:
        check_batch_size(events)
    if errors:
        raise EventValidationError(errors)
    return events


def system_refs(items: Sequence) -> set[str]:
    """The distinct system references (ids or names) the items name, for one lookup query."""
    refs = set()
    for item in items:
        if isinstance(item, dict):
            ref = item.get("system")
            if isinstance(ref, str):
                refs.add(ref)
            elif isinstance(ref, UUID):
                refs.add(str(ref))
    return refs


def validate_event_items(
    items: Sequence, *, systems_by_ref: Mapping[str, UUID], now: datetime
) -> tuple[list[CleanEvent], dict[str, list[str]]]:
    """Check and normalize every item. Returns ``(clean, errors)``; ``clean`` holds the valid items
    (all of them when ``errors`` is empty).

    ``systems_by_ref`` maps each system the caller may write to — by its name and by ``str(id)`` — to
    its id; anything else is reported as an unknown system (a system outside the caller's teams is
    never revealed to exist). ``now`` bounds ``occurred_at`` (at most ``MAX_FUTURE_SKEW`` ahead).
    A repeated ``event_id`` is reported on each later occurrence, naming the first.
    """
    checker = _ItemChecker(systems_by_ref, now + MAX_FUTURE_SKEW)
    clean: list[CleanEvent] = []
    errors: dict[str, list[str]] = {}
    first_index: dict[UUID, int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors[f"events.{index}"] = ["must be an object"]
            continue
        event, event_id, problems = checker.check(item)
        if event_id is not None:
            first = first_index.setdefault(event_id, index)
            if first != index:
                problems["event_id"] = [f"duplicates the event_id of events.{first}"]
        if problems:
            for field, messages in problems.items():
                errors[f"events.{index}.{field}"] = messages
        else:
            clean.append(event)
    return clean, errors


class _Invalid(Exception):
    pass


class _ItemChecker:
    """Per-batch state (system lookups are cached by reference) and the per-field rules."""

    def __init__(self, systems_by_ref: Mapping[str, UUID], latest_allowed: datetime):
        self.systems_by_ref = systems_by_ref
        self.latest_allowed = latest_allowed
        self.resolved: dict[str, UUID | None] = {}

    def check(self, item: dict) -> tuple[CleanEvent | None, UUID | None, dict[str, list[str]]]:
        """The same rules as :meth:`check_each`, called straight through for the common, valid item
        (the ingest hot path: no per-field bookkeeping); on the first problem, ``check_each`` runs
        every rule and collects every message."""
        if item.keys() <= EVENT_FIELDS:
            get = item.get
            try:
                event_id = self._event_id(get("event_id", _MISSING))
                event = CleanEvent(
                    event_id,
                    self._system(get("system", _MISSING)),
                    self._category(get("category", _MISSING)),
                    self._severity(get("severity", _MISSING)),
                    self._signal(get("signal", _MISSING)),
                    self._value(get("value", _MISSING)),
                    self._occurred_at(get("occurred_at", _MISSING)),
                    self._attributes(get("attributes", _MISSING)),
                    self._scenario_id(get("scenario_id", _MISSING)),
                    get("attributes") or {},
                )
            except _Invalid:
                pass
            else:
                return event, event_id, {}
        return self.check_each(item)

    def check_each(self, item: dict) -> tuple[CleanEvent | None, UUID | None, dict[str, list[str]]]:
        problems: dict[str, list[str]] = {}
        values: list[Any] = []  # in the order of the rules, which is CleanEvent's
        for field, clean in self._rules:
            try:
                values.append(clean(self, item.get(field, _MISSING)))
            except _Invalid as exc:
                problems[field] = [str(exc)]
        if not EVENT_FIELDS.issuperset(item):
            for field in item:
                if field not in EVENT_FIELDS:
                    problems[str(field)] = [UNKNOWN_FIELD]
        if problems:
            event_id = values[0] if "event_id" not in problems else None
            return None, event_id, problems
        attributes = item.get("attributes") or {}
        return CleanEvent(*values, attributes), values[0], problems

    # --- one rule per field: return the clean value or raise _Invalid(message) ----------------------

    def _event_id(self, raw: Any) -> UUID:
        if raw is _MISSING or raw is None:
            return uuid4()
        if isinstance(raw, UUID):
            return raw
        if not isinstance(raw, str):
            raise _Invalid("must be a string (a UUID)")
        try:
            return UUID(raw)
        except ValueError:
            raise _Invalid("must be a UUID, e.g. 7c9e6679-7425-40de-944b-e07fc1f90ae7") from None

    def _system(self, raw: Any) -> UUID:
        if raw is _MISSING:
            raise _Invalid(REQUIRED)
        if isinstance(raw, UUID):
            raw = str(raw)
        elif not isinstance(raw, str):
            raise _Invalid("must be a string (the AI system's id or name)")
        try:
            system_id = self.resolved[raw]
        except KeyError:
            system_id = self.resolved[raw] = self._lookup_system(raw)
        if system_id is None:
            raise _Invalid(f"unknown AI system {_quoted(raw)}")
        return system_id

    def _lookup_system(self, ref: str) -> UUID | None:
        system_id = self.systems_by_ref.get(ref)
        if system_id is None:
            with contextlib.suppress(ValueError):  # the same id in another spelling (upper case, no dashes)
                system_id = self.systems_by_ref.get(str(UUID(ref)))
        return system_id

    def _category(self, raw: Any) -> str:
        return _choice(raw, _CATEGORIES, "category")

    def _severity(self, raw: Any) -> str:
        return _choice(raw, _SEVERITIES, "severity")

    def _signal(self, raw: Any) -> str:
        if raw is _MISSING:
            raise _Invalid(REQUIRED)
        if not isinstance(raw, str):
            raise _Invalid("must be a string")
        if not _signal_matches(raw):
            raise _Invalid(
                f"must match {SIGNAL_PATTERN} (lowercase letters, digits and underscores, starting with a letter)"
            )
        return raw

    def _value(self, raw: Any) -> float:
        if raw is _MISSING:
            raise _Invalid(REQUIRED)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _Invalid("must be a number")
        try:
            value = float(raw)
        except OverflowError:  # an integer beyond the float range
            raise _Invalid("must be a finite number (this one is too large)") from None
        if not math.isfinite(value):
            raise _Invalid("must be a finite number (NaN and Infinity are not allowed)")
        return value

    def _occurred_at(self, raw: Any) -> datetime:
        if raw is _MISSING:
            raise _Invalid(REQUIRED)
        if isinstance(raw, str):
            try:
                moment = datetime.fromisoformat(raw)
            except ValueError:
                raise _Invalid(
                    "must be an ISO 8601 date-time with a timezone offset, e.g. 2025-01-31T12:00:00Z"
                ) from None
        elif isinstance(raw, datetime):
            moment = raw
        else:
            raise _Invalid("must be a string (an ISO 8601 date-time with a timezone offset)")
        if moment.utcoffset() is None:
            raise _Invalid("must include a timezone offset (Z or ±HH:MM); a time without one is ambiguous")
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise _Invalid("is out of range") from None
        if moment > self.latest_allowed:
            raise _Invalid(
                f"is more than {int(MAX_FUTURE_SKEW.total_seconds() // 60)} minutes in the future "
                f"(the limit is {self.latest_allowed.isoformat().replace('+00:00', 'Z')}; check the sender's clock)"
            )
        return moment

    def _attributes(self, raw: Any) -> str:
        """The attributes object as compact JSON text (``{}`` when absent)."""
        if raw is _MISSING or raw is None:
            return "{}"
        if not isinstance(raw, dict):
            raise _Invalid("must be an object")
        if not raw:
            return "{}"
        try:
            text = _encode_attributes(raw)
        except ValueError as exc:  # out-of-range floats, or a circular reference from an internal caller
            message = (
                "must not contain NaN or Infinity" if "Out of range" in str(exc) else "must contain only JSON values"
            )
            raise _Invalid(message) from None
        except TypeError:
            raise _Invalid("must contain only JSON values") from None
        except RecursionError:
            raise _Invalid("is nested too deeply") from None
        try:
            size = len(text.encode())
        except UnicodeEncodeError:
            raise _Invalid("must be valid Unicode text (no lone surrogates)") from None
        if size > MAX_ATTRIBUTES_BYTES:
            raise _Invalid(f"is {size} bytes serialized; the limit is {MAX_ATTRIBUTES_BYTES}")
        if "\\u0000" in text and _ESCAPED_NUL.search(text):
            raise _Invalid("must not contain NUL characters")
        return text

    def _scenario_id(self, raw: Any) -> str | None:
        if raw is _MISSING or raw is None:
            return None
        if not isinstance(raw, str):
            raise _Invalid("must be a string or null")
        if len(raw) > MAX_SCENARIO_ID_LENGTH:
            raise _Invalid(f"must be at most {MAX_SCENARIO_ID_LENGTH} characters")
        if problem := text_storage_problem(raw):
            raise _Invalid(problem)
        return raw

    # In CleanEvent's field order: check() builds the event from the values in this order.
    _rules = (
        ("event_id", _event_id),
        ("system", _system),
        ("category", _category),
        ("severity", _severity),
        ("signal", _signal),
        ("value", _value),
        ("occurred_at", _occurred_at),
        ("attributes", _attributes),
        ("scenario_id", _scenario_id),
    )


def _choice(raw: Any, allowed: dict[str, str], name: str) -> str:
    if raw is _MISSING:
        raise _Invalid(REQUIRED)
    if not isinstance(raw, str):
        raise _Invalid("must be a string")
    try:
        return allowed[raw]
    except KeyError:
        raise _Invalid(f"unknown {name} {_quoted(raw)}; expected one of: {', '.join(allowed)}") from None


def _quoted(text: str, limit: int = 100) -> str:
    """A client's text echoed in a message, shortened (a 1 MB name must not come back 1 MB long)."""
    return f"'{text[:limit]}…'" if len(text) > limit else f"'{text}'"
