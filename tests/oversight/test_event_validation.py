"""Event validation: every bad item and field reported at once, nothing raised for any input, every
valid event accepted. Pure functions: no database."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.choices import Severity
from oversight.models import Category
from oversight.validation import (
    EVENT_FIELDS,
    MAX_ATTRIBUTES_BYTES,
    MAX_EVENTS_PER_BATCH,
    EventBatchTooLarge,
    EventValidationError,
    events_from_body,
    system_refs,
    validate_event_items,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SYSTEM_ID = uuid.UUID("5b0c3c4e-8a55-4c1e-9a7e-0f3f2b6c1d20")
OTHER_ID = uuid.UUID("0a7d1a9e-2f4b-47d5-8c36-1b2f0e9d4c11")
SYSTEMS = {"fraud-scorer": SYSTEM_ID, str(SYSTEM_ID): SYSTEM_ID, "credit-model": OTHER_ID, str(OTHER_ID): OTHER_ID}


SIGNAL_REGEX = r"[a-z][a-z0-9_]{0,63}"
DROP = object()


def item(**overrides) -> dict:
    base = {
        "event_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "system": "fraud-scorer",
        "category": "data_quality",
        "severity": "high",
        "signal": "psi",
        "value": 0.31,
        "occurred_at": "2025-06-01T11:59:00Z",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not DROP}


def validate(*items):
    return validate_event_items(list(items), systems_by_ref=SYSTEMS, now=NOW)


def errors_of(*items) -> dict[str, list[str]]:
    return validate(*items)[1]


# --- A valid event ------------------------------------------------------------------------------


def test_a_valid_event_is_returned_typed_and_normalized():
    clean, errors = validate(
        item(occurred_at="2025-06-01T13:30:00+02:00", value=3, attributes={"model": "v2"}, scenario_id="s-1")
    )

    assert errors == {}
    [event] = clean
    assert event.event_id == uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")
    assert event.system_id == SYSTEM_ID
    assert (event.category, event.severity, event.signal) == ("data_quality", "high", "psi")
    assert event.value == 3.0 and isinstance(event.value, float)
    assert event.occurred_at == datetime(2025, 6, 1, 11, 30, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.attributes == {"model": "v2"}
    assert json.loads(event.attributes_json) == {"model": "v2"}
    assert event.scenario_id == "s-1"


def test_an_event_without_event_id_gets_a_fresh_uuid4():
    clean, _ = validate(item(event_id=DROP), item(event_id=None))

    assert all(event.event_id.version == 4 for event in clean)
    assert clean[0].event_id != clean[1].event_id


def test_the_system_may_be_named_by_its_id_in_any_spelling():
    clean, errors = validate(
        item(system=str(SYSTEM_ID).upper(), event_id=DROP), item(system=SYSTEM_ID.hex, event_id=DROP)
    )

    assert errors == {}
    assert {event.system_id for event in clean} == {SYSTEM_ID}


def test_optional_fields_default_to_empty_attributes_and_no_scenario():
    [event], _ = validate(item())

    assert (event.attributes, event.attributes_json, event.scenario_id) == ({}, "{}", None)


def test_an_event_exactly_five_minutes_ahead_is_accepted():
    assert errors_of(item(occurred_at=(NOW + timedelta(minutes=5)).isoformat())) == {}


# --- Every bad field, named ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("system", "ghost-model", "unknown AI system 'ghost-model'"),
        ("system", "6f1c0b7e-0000-4000-8000-000000000001", "unknown AI system"),
        ("system", 42, "must be a string"),
        ("category", "vibes", "unknown category 'vibes'; expected one of: data_quality"),
        ("category", ["fairness"], "must be a string"),
        ("severity", "urgent", "unknown severity 'urgent'; expected one of: critical, high, medium, low, info"),
        ("signal", 3, "must be a string"),
        ("signal", "PSI", "must match ^[a-z][a-z0-9_]{0,63}$"),
        ("signal", "psi\n", "must match"),
        ("signal", "a" * 65, "must match"),
        ("value", "0.5", "must be a number"),
        ("value", True, "must be a number"),
        ("value", None, "must be a number"),
        ("value", float("nan"), "must be a finite number"),
        ("value", float("inf"), "must be a finite number"),
        ("value", float("-inf"), "must be a finite number"),
        ("value", 10**400, "must be a finite number"),
        ("occurred_at", "2025-06-01T11:59:00", "must include a timezone offset"),
        ("occurred_at", "2025-06-01", "must include a timezone offset"),
        ("occurred_at", "yesterday", "must be an ISO 8601 date-time"),
        ("occurred_at", 1748779140, "must be a string"),
        (
            "occurred_at",
            "2025-06-01T12:05:01Z",
            "is more than 5 minutes in the future (the limit is 2025-06-01T12:05:00Z",
        ),
        ("occurred_at", "0001-01-01T00:00:00+14:00", "is out of range"),
        ("event_id", "not-a-uuid", "must be a UUID"),
        ("event_id", 12, "must be a string"),
        ("attributes", [], "must be an object"),
        ("attributes", "{}", "must be an object"),
        ("attributes", {"drift": float("nan")}, "must not contain NaN or Infinity"),
        ("attributes", {"blob": "x" * MAX_ATTRIBUTES_BYTES}, f"the limit is {MAX_ATTRIBUTES_BYTES}"),
        ("attributes", {"note": "a\x00b"}, "must not contain NUL characters"),
        ("attributes", {"note": "\ud800"}, "must be valid Unicode text"),
        ("scenario_id", "s" * 65, "must be at most 64 characters"),
        ("scenario_id", 7, "must be a string or null"),
        ("scenario_id", "a\x00b", "NUL"),
    ],
)
def test_a_bad_field_is_reported_on_its_path_with_a_clear_message(field, value, message):
    clean, errors = validate(item(**{field: value}))

    assert clean == []
    assert list(errors) == [f"events.0.{field}"]
    assert message in errors[f"events.0.{field}"][0]


def test_an_escaped_backslash_before_u0000_is_not_a_nul():
    assert errors_of(item(attributes={"path": "C:\\u0000"})) == {}


@pytest.mark.parametrize("field", ["system", "category", "severity", "signal", "value", "occurred_at"])
def test_a_missing_required_field_is_reported(field):
    assert errors_of(item(**{field: DROP})) == {f"events.0.{field}": ["this field is required"]}


def test_an_unknown_field_is_reported_as_such():
    assert errors_of(item(colour="red")) == {"events.0.colour": ["unknown field"]}


def test_an_item_that_is_not_an_object_is_reported_on_its_index():
    assert errors_of(item(), ["psi", 0.3], item(event_id=DROP)) == {"events.1": ["must be an object"]}


def test_every_bad_field_of_every_bad_item_is_reported_together():
    _, errors = validate(
        item(event_id=DROP),
        item(event_id=DROP, severity="urgent", value="high"),
        item(event_id=DROP),
        item(event_id=DROP, system="ghost", colour="red"),
    )

    assert errors == {
        "events.1.severity": [
            "unknown severity 'urgent'; expected one of: critical, high, medium, low, info",
        ],
        "events.1.value": ["must be a number"],
        "events.3.system": ["unknown AI system 'ghost'"],
        "events.3.colour": ["unknown field"],
    }


def test_a_repeated_event_id_is_reported_on_each_later_occurrence_naming_the_first():
    repeated = "7c9e6679-7425-40de-944b-e07fc1f90ae7"

    _, errors = validate(
        item(event_id=repeated), item(event_id=DROP), item(event_id=repeated.upper()), item(event_id=repeated)
    )

    assert errors == {
        "events.2.event_id": ["duplicates the event_id of events.0"],
        "events.3.event_id": ["duplicates the event_id of events.0"],
    }


def test_a_very_long_unknown_system_name_is_shortened_in_the_message():
    message = errors_of(item(system="x" * 10_000))["events.0.system"][0]

    assert len(message) < 150


def test_a_system_missing_from_the_callers_map_is_unknown_like_any_other():
    """The caller passes only the systems the user may write to: another team's is indistinguishable."""
    clean, errors = validate_event_items(
        [item(system="credit-model")], systems_by_ref={"fraud-scorer": SYSTEM_ID}, now=NOW
    )

    assert clean == []
    assert errors == {"events.0.system": ["unknown AI system 'credit-model'"]}


def test_the_error_message_counts_the_invalid_events():
    _, errors = validate(item(event_id=DROP), item(event_id=DROP, value="x"), item(event_id=DROP, signal=1, value=2j))

    assert EventValidationError(errors, total=3).message == "2 of 3 events are invalid; nothing was stored."


# --- The body -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], 'the body must be a JSON object: {"events": [...]}'),
        ("events", 'the body must be a JSON object: {"events": [...]}'),
        ({}, "this field is required"),
        ({"events": {"system": "x"}}, "must be a list of event objects"),
        ({"events": []}, "must contain at least one event"),
    ],
)
def test_a_body_without_a_list_of_events_is_reported_on_field_events(body, message):
    with pytest.raises(EventValidationError) as raised:
        events_from_body(body)

    assert raised.value.errors["events"] == [message]


def test_an_unknown_top_level_field_is_reported():
    with pytest.raises(EventValidationError) as raised:
        events_from_body({"events": [item()], "dry_run": True})

    assert raised.value.errors == {"dry_run": ["unknown field"]}


def test_more_than_5000_events_is_too_large():
    with pytest.raises(EventBatchTooLarge) as raised:
        events_from_body({"events": [{}] * (MAX_EVENTS_PER_BATCH + 1)})

    assert raised.value.count == 5001


def test_exactly_5000_events_pass_the_body_check():
    assert len(events_from_body({"events": [{}] * MAX_EVENTS_PER_BATCH})) == MAX_EVENTS_PER_BATCH


def test_system_refs_collects_each_distinct_reference_once():
    assert system_refs([item(), item(system=SYSTEM_ID), {"system": 3}, "junk", item()]) == {
        "fraud-scorer",
        str(SYSTEM_ID),
    }


# --- Properties ----------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(sorted(EVENT_FIELDS)) | st.text(max_size=10)
junk_items = json_values | st.dictionaries(field_names, json_values, max_size=12)

CLEAN_CHARACTERS = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])  # what jsonb can store
clean_text = st.text(CLEAN_CHARACTERS, max_size=20)
attribute_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | clean_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(clean_text, children, max_size=3),
    max_leaves=10,
)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@st.composite
def valid_items(draw) -> dict:
    moment = draw(
        st.datetimes(min_value=datetime(1971, 1, 1), max_value=NOW.replace(tzinfo=None) + timedelta(minutes=5))
    )
    moment = moment.replace(tzinfo=UTC).astimezone(draw(offsets))
    stamp = moment.isoformat()
    if moment.utcoffset() == timedelta(0) and draw(st.booleans()):
        stamp = stamp.replace("+00:00", "Z")
    result = {
        "system": draw(st.sampled_from([*SYSTEMS, str(SYSTEM_ID).upper(), OTHER_ID.hex])),
        "category": draw(st.sampled_from(Category.values)),
        "severity": draw(st.sampled_from(Severity.values)),
        "signal": draw(st.from_regex(SIGNAL_REGEX, fullmatch=True)),
        "value": draw(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**30), 10**30)),
        "occurred_at": stamp,
    }
    if draw(st.booleans()):
        result["event_id"] = str(draw(st.uuids()))
    if draw(st.booleans()):
        result["attributes"] = draw(st.dictionaries(clean_text, attribute_values, max_size=5))
    if draw(st.booleans()):
        result["scenario_id"] = draw(st.none() | st.text(CLEAN_CHARACTERS, max_size=64))
    return result


def unique_event_ids(items: list[dict]) -> bool:
    ids = [uuid.UUID(i["event_id"]) for i in items if "event_id" in i]
    return len(ids) == len(set(ids))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_items(), min_size=1, max_size=5).filter(unique_event_ids))
def test_valid_generated_events_always_pass(items):
    clean, errors = validate_event_items(items, systems_by_ref=SYSTEMS, now=NOW)

    assert errors == {}
    assert len(clean) == len(items)
    for raw, event in zip(items, clean, strict=True):
        assert event.value == float(raw["value"])
        assert math.isfinite(event.value)
        assert event.occurred_at == datetime.fromisoformat(raw["occurred_at"])
        assert json.loads(event.attributes_json) == raw.get("attributes", {})


@settings(max_examples=200, deadline=None)
@given(st.lists(junk_items, max_size=6))
def test_arbitrary_junk_never_raises_and_every_item_is_either_clean_or_reported(items):
    clean, errors = validate_event_items(items, systems_by_ref=SYSTEMS, now=NOW)

    reported = {int(key.split(".")[1]) for key in errors}
    assert len(clean) + len(reported) == len(items)
    for index, junk in enumerate(items):
        if not isinstance(junk, dict):
            assert errors[f"events.{index}"] == ["must be an object"]


def not_a_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return True
    return False


def not_an_aware_iso_time(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).utcoffset() is None
    except ValueError:
        return True


non_strings = st.integers() | st.floats() | st.booleans() | st.lists(json_scalars, max_size=2)
BAD_VALUES = {
    "system": non_strings | st.text(max_size=30).filter(lambda t: t not in SYSTEMS and not_a_uuid(t)),
    "category": non_strings | st.none() | st.text(max_size=20).filter(lambda t: t not in Category.values),
    "severity": non_strings | st.none() | st.text(max_size=20).filter(lambda t: t not in Severity.values),
    "signal": non_strings | st.none() | st.text(max_size=70).filter(lambda t: not re.fullmatch(SIGNAL_REGEX, t)),
    "value": st.text(max_size=5)
    | st.booleans()
    | st.none()
    | st.sampled_from([math.nan, math.inf, -math.inf, 10**400])
    | st.lists(st.floats(), max_size=2),
    "occurred_at": non_strings
    | st.none()
    | st.text(max_size=30).filter(not_an_aware_iso_time)
    | st.datetimes(min_value=datetime(2025, 6, 1, 12, 5, 1), max_value=datetime(2999, 1, 1)).map(
        lambda d: d.isoformat() + "Z"
    ),
    "event_id": st.integers() | st.lists(json_scalars, max_size=2) | st.text(max_size=40).filter(not_a_uuid),
    "attributes": st.lists(json_scalars, max_size=3)
    | st.text(max_size=5)
    | st.integers()
    | st.just({"blob": "x" * MAX_ATTRIBUTES_BYTES})
    | st.dictionaries(st.text(max_size=5), st.sampled_from([math.nan, math.inf]), min_size=1, max_size=3),
    "scenario_id": st.integers() | st.lists(json_scalars, max_size=2) | st.text(min_size=65, max_size=80),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(valid_items(), st.sampled_from(sorted(BAD_VALUES)), st.data())
def test_a_corrupted_field_of_a_valid_event_is_always_reported_on_that_field(event, field, data):
    event[field] = data.draw(BAD_VALUES[field])

    clean, errors = validate_event_items([event], systems_by_ref=SYSTEMS, now=NOW)

    assert clean == []
    assert f"events.0.{field}" in errors


@given(valid_items(), st.text(min_size=1, max_size=12).filter(lambda name: name not in EVENT_FIELDS), json_values)
def test_an_extra_field_on_a_valid_event_is_always_reported(event, name, value):
    event[name] = value

    _, errors = validate_event_items([event], systems_by_ref=SYSTEMS, now=NOW)

    assert errors == {f"events.0.{name}": ["unknown field"]}
