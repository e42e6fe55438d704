"""The config registry: declared keys, schema and semantic validation, versioned audited writes, snapshot."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import registry
from config.diff import describe_diff, json_diff
from config.keys import KEYS, KEYS_BY_NAME, SCHEMA_DIR
from config.models import ConfigCategory, PlatformConfig, PlatformConfigHistory
from governance.choices import AuditAction
from governance.models import AuditLog

DATA_QUALITY = "oversight.thresholds.data_quality"


def data_quality(**overrides) -> dict:
    """The declared data-quality thresholds with ``null_rate`` fields replaced by ``overrides``."""
    value = copy.deepcopy(KEYS_BY_NAME[DATA_QUALITY].default)
    value["null_rate"].update(overrides)
    return value


def validation_errors(key: str, value) -> dict[str, list[str]]:
    with pytest.raises(registry.ConfigValidationError) as caught:
        registry.validate(key, value)
    return caught.value.errors


def stored_state(key: str) -> tuple:
    """Everything a write would change: value, version, history rows and audit rows."""
    row = PlatformConfig.objects.get(key=key)
    return row.value, row.version, PlatformConfigHistory.objects.filter(config=row).count(), AuditLog.objects.count()


# --- declarations and seeding -----------------------------------------------------------------------
@pytest.mark.parametrize("spec", KEYS, ids=lambda spec: spec.key)
def test_every_declared_key_has_a_schema_file_and_a_known_category(spec):
    assert (SCHEMA_DIR / f"{spec.key}.json").is_file()
    assert spec.category in ConfigCategory.values
    assert spec.description


@pytest.mark.django_db
@pytest.mark.parametrize("spec", KEYS, ids=lambda spec: spec.key)
def test_every_declared_key_is_seeded_at_version_1_with_a_value_that_passes_its_schema(spec):
    row = PlatformConfig.objects.get(key=spec.key)

    registry.validate(spec.key, row.value)
    assert row.value == spec.default
    assert row.version == 1
    assert row.category == spec.category
    seeded = row.history.get()
    assert (seeded.version, seeded.previous_value, seeded.new_value) == (1, None, spec.default)


@pytest.mark.django_db
def test_no_undeclared_key_is_stored():
    assert set(PlatformConfig.objects.values_list("key", flat=True)) == set(KEYS_BY_NAME)


# --- reads ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_get_returns_the_stored_value():
    PlatformConfig.objects.filter(key="oversight.correlation_window_seconds").update(value=120, version=2)

    assert registry.get("oversight.correlation_window_seconds") == 120


@pytest.mark.django_db
def test_get_returns_a_private_copy_that_callers_may_mutate():
    registry.get(DATA_QUALITY)["null_rate"]["critical"] = 0.99

    assert registry.get(DATA_QUALITY)["null_rate"]["critical"] == 0.2


@pytest.mark.django_db
def test_a_key_missing_from_the_database_is_served_from_its_declared_default():
    PlatformConfig.objects.filter(key="incidents.auto_close").delete()

    entry = registry.entry("incidents.auto_close")

    assert entry.value == KEYS_BY_NAME["incidents.auto_close"].default
    assert (entry.stored, entry.version, entry.updated_at) == (False, 0, None)


def test_reading_an_undeclared_key_raises_unknown_config_key():
    with pytest.raises(registry.UnknownConfigKey):
        registry.get("oversight.no_such_key")


@pytest.mark.django_db
def test_entries_lists_every_declared_key_in_declaration_order():
    assert [entry.key for entry in registry.entries()] == [spec.key for spec in KEYS]


@pytest.mark.django_db
def test_reads_inside_the_refresh_interval_do_not_query_the_database(django_assert_num_queries, settings):
    settings.CONFIG_REFRESH_SECONDS = 60
    registry.get(DATA_QUALITY)

    with django_assert_num_queries(0):
        for spec in KEYS:
            registry.get(spec.key)


@pytest.mark.django_db
def test_a_version_bump_written_elsewhere_is_picked_up_once_the_refresh_interval_has_passed(settings):
    settings.CONFIG_REFRESH_SECONDS = 0
    assert registry.get("oversight.correlation_window_seconds") == 300

    # Another process's write, as this process sees it: a new value under a new version.
    PlatformConfig.objects.filter(key="oversight.correlation_window_seconds").update(value=60, version=2)

    assert registry.get("oversight.correlation_window_seconds") == 60


@pytest.mark.django_db
def test_a_stale_snapshot_is_kept_until_the_refresh_interval_has_passed(settings):
    settings.CONFIG_REFRESH_SECONDS = 60
    assert registry.get("oversight.correlation_window_seconds") == 300

    PlatformConfig.objects.filter(key="oversight.correlation_window_seconds").update(value=60, version=2)

    assert registry.get("oversight.correlation_window_seconds") == 300
    registry.invalidate()
    assert registry.get("oversight.correlation_window_seconds") == 60


# --- schema validation ------------------------------------------------------------------------------
def test_a_missing_required_field_is_named_by_its_path():
    value = data_quality()
    del value["null_rate"]["critical"]

    assert validation_errors(DATA_QUALITY, value) == {"value.null_rate.critical": ["This field is required."]}


def test_a_field_of_the_wrong_type_is_named_by_its_path():
    errors = validation_errors(DATA_QUALITY, data_quality(warning="five percent"))

    assert list(errors) == ["value.null_rate.warning"]
    assert "is not of type 'number'" in errors["value.null_rate.warning"][0]


def test_an_unknown_field_is_named_by_its_path_with_the_allowed_fields():
    errors = validation_errors(DATA_QUALITY, data_quality(colour="red"))

    assert list(errors) == ["value.null_rate.colour"]
    assert errors["value.null_rate.colour"][0].startswith("Unknown field; allowed: critical, description, direction")


def test_an_unknown_severity_in_a_per_severity_key_is_refused():
    value = {**KEYS_BY_NAME["slo.mttd_seconds"].default, "urgent": 60}

    assert list(validation_errors("slo.mttd_seconds", value)) == ["value.urgent"]


def test_an_invalid_item_of_a_list_is_named_by_its_index():
    value = copy.deepcopy(KEYS_BY_NAME["incidents.escalation_policy"].default)
    value["steps"][2]["channels"] = ["pager"]

    assert list(validation_errors("incidents.escalation_policy", value)) == ["value.steps.2.channels.0"]


def test_every_bad_path_is_reported_not_only_the_first():
    value = data_quality(warning="x")
    del value["psi"]["unit"]

    assert set(validation_errors(DATA_QUALITY, value)) == {"value.null_rate.warning", "value.psi.unit"}


def test_a_value_of_the_wrong_top_level_type_is_reported_on_value():
    assert list(validation_errors("oversight.correlation_window_seconds", "300")) == ["value"]


def test_the_validation_error_message_names_the_key_and_the_first_path():
    value = data_quality()
    del value["null_rate"]["critical"]

    with pytest.raises(registry.ConfigValidationError, match=r"oversight.thresholds.data_quality: value.null_rate"):
        registry.validate(DATA_QUALITY, value)


def test_validating_an_undeclared_key_raises_unknown_config_key():
    with pytest.raises(registry.UnknownConfigKey):
        registry.validate("no.such.key", 1)


# --- semantic checks --------------------------------------------------------------------------------
def test_warning_at_or_above_critical_is_refused_when_breach_is_above():
    errors = validation_errors(DATA_QUALITY, data_quality(warning=0.2, critical=0.2))

    assert errors == {
        "value.null_rate.warning": ["direction is 'above', so warning (0.2) must be below critical (0.2)"]
    }


def test_warning_at_or_below_critical_is_refused_when_breach_is_below():
    value = copy.deepcopy(KEYS_BY_NAME["oversight.thresholds.model_perf"].default)
    value["accuracy"].update(warning=0.7, critical=0.8)

    errors = validation_errors("oversight.thresholds.model_perf", value)

    assert list(errors) == ["value.accuracy.warning"]
    assert "direction is 'below'" in errors["value.accuracy.warning"][0]


def test_a_ratio_threshold_outside_0_to_1_is_refused():
    errors = validation_errors(DATA_QUALITY, data_quality(warning=0.5, critical=1.5))

    assert errors == {"value.null_rate.critical": ["a ratio must lie between 0 and 1"]}


def test_weights_that_do_not_sum_to_one_are_refused():
    value = {"severity": 0.5, "signal_strength": 0.25, "risk_class": 0.2, "history": 0.2}

    errors = validation_errors("hitl.assist_weights", value)

    assert errors == {"value": ["weights must sum to 1 (they sum to 1.15)"]}


def test_weights_that_sum_to_one_up_to_float_rounding_are_accepted():
    registry.validate(
        "hitl.assist_weights", {"severity": 0.1, "signal_strength": 0.2, "risk_class": 0.3, "history": 0.4}
    )


def test_escalation_steps_must_increase_in_after_minutes():
    value = copy.deepcopy(KEYS_BY_NAME["incidents.escalation_policy"].default)
    value["steps"][2]["after_minutes"] = 15

    errors = validation_errors("incidents.escalation_policy", value)

    assert list(errors) == ["value.steps.2.after_minutes"]


@pytest.mark.parametrize("key", ["slo.mttd_seconds", "slo.incident_ack_minutes", "slo.incident_resolve_minutes"])
def test_a_more_severe_slo_may_not_be_looser_than_a_less_severe_one(key):
    value = {**KEYS_BY_NAME[key].default}
    value["critical"] = value["high"] + 1

    assert list(validation_errors(key, value)) == ["value.critical"]


def test_semantic_checks_do_not_run_on_a_value_that_fails_its_schema():
    # check_threshold_order would raise KeyError on the missing "warning"; the schema error is reported.
    value = data_quality()
    del value["null_rate"]["warning"]

    assert list(validation_errors(DATA_QUALITY, value)) == ["value.null_rate.warning"]


# --- validate() never raises anything else (property) -----------------------------------------------
# Any text, NUL characters and lone surrogates included (JSON parsers let both through).
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | any_text
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=20,
)


def near_valid(key: str) -> st.SearchStrategy:
    """Values shaped like the key's default whose leaves are mostly kept or plausibly perturbed, so the
    schema often passes and the semantic checks get exercised too."""

    def leaf(default) -> st.SearchStrategy:
        if isinstance(default, bool | str):
            others = scalars
        else:
            others = st.integers(-5, 5000) | st.floats(-2, 2, allow_nan=False) | scalars
        return st.integers(0, 9).flatmap(lambda roll: st.just(default) if roll < 6 else others)

    def shaped(default) -> st.SearchStrategy:
        if isinstance(default, dict):
            return st.fixed_dictionaries({name: shaped(child) for name, child in default.items()})
        if isinstance(default, list) and default:
            return st.lists(st.sampled_from(default).flatmap(shaped), min_size=1, max_size=4)
        return leaf(default)

    return shaped(KEYS_BY_NAME[key].default)


PROPERTY_KEYS = [
    DATA_QUALITY,
    "oversight.thresholds.model_perf",
    "slo.incident_resolve_minutes",
    "incidents.escalation_policy",
    "hitl.assist_weights",
    "ratelimit.limits",
]


@pytest.mark.parametrize("key", PROPERTY_KEYS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_validate_raises_only_config_validation_error_for_any_json_value(key, data):
    value = data.draw(json_values | near_valid(key))
    try:
        registry.validate(key, value)
    except registry.ConfigValidationError as exc:
        assert exc.errors
        assert all(path == "value" or path.startswith("value.") for path in exc.errors)
        assert all(messages and all(isinstance(m, str) for m in messages) for messages in exc.errors.values())


def test_text_with_a_nul_character_is_refused_naming_its_path():
    reasons = ["Fixed", "Dupli\x00cate"]

    assert validation_errors("incidents.resolution_reasons", reasons) == {
        "value.1": ["text cannot contain NUL characters"]
    }


def test_text_with_a_lone_surrogate_is_refused_naming_its_path():
    value = copy.deepcopy(KEYS_BY_NAME["oversight.thresholds.fairness"].default)
    value["dp_gap"]["description"] = "gap \ud800"

    assert validation_errors("oversight.thresholds.fairness", value) == {
        "value.dp_gap.description": ["text must be valid Unicode (no lone surrogates)"]
    }


def test_an_object_key_that_cannot_be_stored_is_named_escaped():
    value = {**KEYS_BY_NAME["ratelimit.limits"].default, "ev\x00il": {"limit": 1, "window_seconds": 1}}

    assert validation_errors("ratelimit.limits", value) == {
        "value.ev\\x00il": ["key: text cannot contain NUL characters"]
    }


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), float("nan")])
def test_a_number_that_is_not_finite_is_refused(number):
    assert validation_errors(DATA_QUALITY, data_quality(critical=number)) == {
        "value.null_rate.critical": ["must be a finite number"]
    }


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    reasons=st.lists(
        st.text(st.characters(exclude_categories=()), min_size=1, max_size=20), min_size=1, max_size=5, unique=True
    )
)
def test_every_value_validate_accepts_is_stored_and_read_back_unchanged(reasons):
    key = "incidents.resolution_reasons"
    try:
        registry.validate(key, reasons)
    except registry.ConfigValidationError:
        return
    registry.set(key, reasons, user="system:test", reason="property")

    registry.invalidate()
    assert registry.get(key) == reasons
    assert PlatformConfig.objects.get(key=key).value == reasons


# --- writes -----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_set_stores_the_value_and_bumps_the_version_by_one(admin_user):
    row = registry.set(DATA_QUALITY, data_quality(critical=0.3), user=admin_user, reason="fewer false alarms")

    row.refresh_from_db()
    assert row.value["null_rate"]["critical"] == 0.3
    assert row.version == 2
    assert row.updated_by == admin_user


@pytest.mark.django_db
def test_set_is_visible_to_the_next_read_in_the_same_process(admin_user, settings):
    settings.CONFIG_REFRESH_SECONDS = 60
    assert registry.get(DATA_QUALITY)["null_rate"]["critical"] == 0.2

    registry.set(DATA_QUALITY, data_quality(critical=0.3), user=admin_user, reason="tune")

    assert registry.get(DATA_QUALITY)["null_rate"]["critical"] == 0.3


@pytest.mark.django_db
def test_set_writes_a_history_row_with_before_after_who_and_why(admin_user):
    registry.set(DATA_QUALITY, data_quality(critical=0.3), user=admin_user, reason="fewer false alarms")

    change = PlatformConfigHistory.objects.get(config__key=DATA_QUALITY, version=2)
    assert change.previous_value == KEYS_BY_NAME[DATA_QUALITY].default
    assert change.new_value == data_quality(critical=0.3)
    assert change.changed_by == admin_user
    assert change.reason == "fewer false alarms"


@pytest.mark.django_db
def test_set_appends_a_config_updated_audit_entry_with_the_diff(admin_user):
    row = registry.set(DATA_QUALITY, data_quality(critical=0.3), user=admin_user, reason="fewer false alarms")

    entry = AuditLog.objects.get(action=AuditAction.CONFIG_UPDATED)
    assert (entry.actor, entry.actor_type) == ("ada", "user")
    assert (entry.object_type, entry.object_id) == ("config.platformconfig", str(row.pk))
    assert entry.data == {
        "key": DATA_QUALITY,
        "version": 2,
        "reason": "fewer false alarms",
        "changes": [{"path": "null_rate.critical", "op": "changed", "from": 0.2, "to": 0.3}],
    }


@pytest.mark.django_db
def test_successive_sets_produce_consecutive_versions(admin_user):
    for window in (60, 120, 180):
        registry.set("oversight.correlation_window_seconds", window, user=admin_user, reason="tune")

    versions = PlatformConfigHistory.objects.filter(config__key="oversight.correlation_window_seconds")
    assert sorted(versions.values_list("version", flat=True)) == [1, 2, 3, 4]
    assert PlatformConfig.objects.get(key="oversight.correlation_window_seconds").version == 4


@pytest.mark.django_db
def test_setting_the_current_value_again_is_a_no_op(admin_user):
    before = stored_state(DATA_QUALITY)

    row = registry.set(DATA_QUALITY, data_quality(), user=admin_user, reason="nothing changes")

    assert row.version == 1
    assert stored_state(DATA_QUALITY) == before


@pytest.mark.django_db
def test_an_invalid_value_is_refused_and_nothing_is_written(admin_user):
    before = stored_state(DATA_QUALITY)

    with pytest.raises(registry.ConfigValidationError):
        registry.set(DATA_QUALITY, data_quality(warning=0.5), user=admin_user, reason="oops")

    assert stored_state(DATA_QUALITY) == before


@pytest.mark.django_db
def test_a_stale_expected_version_is_refused_and_nothing_is_written(admin_user):
    registry.set(DATA_QUALITY, data_quality(critical=0.3), user=admin_user, reason="first edit")
    before = stored_state(DATA_QUALITY)

    with pytest.raises(registry.StaleConfigVersion) as caught:
        registry.set(DATA_QUALITY, data_quality(critical=0.4), user=admin_user, reason="late", expected_version=1)

    assert (caught.value.expected, caught.value.current) == (1, 2)
    assert stored_state(DATA_QUALITY) == before


@pytest.mark.django_db
def test_the_current_expected_version_is_accepted(admin_user):
    row = registry.set(DATA_QUALITY, data_quality(critical=0.3), user=admin_user, reason="edit", expected_version=1)

    assert row.version == 2


@pytest.mark.django_db
def test_a_write_by_a_system_component_is_audited_under_its_name():
    registry.set("oversight.correlation_window_seconds", 600, user="system:cli", reason="ops")

    entry = AuditLog.objects.get(action=AuditAction.CONFIG_UPDATED)
    assert (entry.actor, entry.actor_type) == ("system:cli", "system")
    assert (
        PlatformConfigHistory.objects.get(config__key="oversight.correlation_window_seconds", version=2).changed_by
        is None
    )


@pytest.mark.django_db
def test_setting_a_key_missing_from_the_database_seeds_its_default_first(admin_user):
    PlatformConfig.objects.filter(key="incidents.auto_close").delete()

    row = registry.set("incidents.auto_close", {"days": 14, "severities": ["info"]}, user=admin_user, reason="tune")

    assert row.version == 2
    history = PlatformConfigHistory.objects.filter(config=row).order_by("version")
    assert [(h.version, h.previous_value) for h in history] == [
        (1, None),
        (2, KEYS_BY_NAME["incidents.auto_close"].default),
    ]


@pytest.mark.django_db
def test_expected_version_0_matches_a_key_served_from_its_default(admin_user):
    PlatformConfig.objects.filter(key="incidents.auto_close").delete()

    row = registry.set(
        "incidents.auto_close", {"days": 14, "severities": []}, user=admin_user, reason="", expected_version=0
    )

    assert row.version == 2


@pytest.mark.django_db
def test_a_stale_expected_version_for_a_key_served_from_its_default_stores_nothing(admin_user):
    PlatformConfig.objects.filter(key="incidents.auto_close").delete()

    with pytest.raises(registry.StaleConfigVersion) as caught:
        registry.set("incidents.auto_close", {"days": 14, "severities": []}, user=admin_user, expected_version=1)

    assert (caught.value.expected, caught.value.current) == (1, 0)
    assert not PlatformConfig.objects.filter(key="incidents.auto_close").exists()


def test_setting_an_undeclared_key_raises_unknown_config_key(admin_user):
    with pytest.raises(registry.UnknownConfigKey):
        registry.set("no.such.key", 1, user=admin_user, reason="")


# --- seeding ----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_seed_missing_restores_deleted_keys_at_version_1_and_audits_them():
    PlatformConfig.objects.filter(key__in=["incidents.auto_close", "hitl.sla_hours"]).delete()

    created = registry.seed_missing(actor="system:test")

    assert sorted(created) == ["hitl.sla_hours", "incidents.auto_close"]
    assert PlatformConfig.objects.get(key="hitl.sla_hours").version == 1
    seeded = AuditLog.objects.filter(action=AuditAction.CONFIG_SEEDED)
    assert sorted(entry.data["key"] for entry in seeded) == ["hitl.sla_hours", "incidents.auto_close"]
    assert {entry.actor for entry in seeded} == {"system:test"}


@pytest.mark.django_db
def test_seed_missing_leaves_existing_values_alone_and_writes_nothing_when_complete(admin_user):
    registry.set("oversight.correlation_window_seconds", 600, user=admin_user, reason="tuned")
    audit_rows = AuditLog.objects.count()

    assert registry.seed_missing() == []
    assert registry.get("oversight.correlation_window_seconds") == 600
    assert AuditLog.objects.count() == audit_rows


# --- the readable diff ------------------------------------------------------------------------------
def test_json_diff_names_changed_added_and_removed_paths():
    old = {"a": {"b": 1, "c": [1, 2]}, "gone": True}
    new = {"a": {"b": 2, "c": [1, 2, 3]}, "new": "x"}

    assert json_diff(old, new) == [
        {"path": "a.b", "op": "changed", "from": 1, "to": 2},
        {"path": "a.c.2", "op": "added", "from": None, "to": 3},
        {"path": "gone", "op": "removed", "from": True, "to": None},
        {"path": "new", "op": "added", "from": None, "to": "x"},
    ]


def test_json_diff_of_equal_values_is_empty_and_of_scalars_names_the_value():
    assert json_diff({"a": [1]}, {"a": [1]}) == []
    assert json_diff(300, 600) == [{"path": "(value)", "op": "changed", "from": 300, "to": 600}]


def test_describe_diff_renders_one_readable_line_per_change():
    changes = json_diff({"null_rate": {"critical": 0.2}, "old": 1}, {"null_rate": {"critical": 0.3}, "new": "x"})

    assert describe_diff(changes) == [
        "new: added 'x'",
        "null_rate.critical: 0.2 → 0.3",
        "old: removed (was 1)",
    ]
