"""The synthetic event generator: deterministic, resumable, realistic, and — above all — exact ground
truth: noise never crosses a warning level, every scenario sits alone on its own system and crosses
exactly what its expected rule needs. The invariants are checked with the detection engine's own
level function, and end to end through ingest and processing."""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import registry
from config.keys import KEYS
from governance.choices import AuditAction
from governance.models import AISystem, AuditLog
from oversight.generator import (
    DEFAULT_MIX,
    EVENT_ID_NAMESPACE,
    HEARTBEAT_FLEET_SHARE,
    SEVERITY_MIX,
    SYNTHETIC_TEAM_SLUG,
    EventPlan,
    deactivate_fleet,
    detection_config,
    ensure_fleet,
    plan_events,
    store_labels,
    validate_mix,
)
from oversight.models import HEARTBEAT_SIGNAL, Alert, ScenarioKind, ScenarioLabel, Simulation
from oversight.rules import CATEGORIES
from oversight.services.detection import CRITICAL, WARNING, breach_level
from oversight.services.ingest import ingest_events
from tests.factories import AISystemFactory, TeamFactory

DEFAULTS = {key.key: key.default for key in KEYS}
THRESHOLDS, RULES = detection_config(DEFAULTS)
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ABSENCE = timedelta(seconds=RULES.absence_window_seconds)

# Every level moved, integral gaps narrowed, directions kept: noise and scenarios must follow.
CHANGED_THRESHOLDS = {
    **THRESHOLDS,
    "data_quality": {
        **THRESHOLDS["data_quality"],
        "psi": {"direction": "above", "warning": 0.03, "critical": 0.08, "unit": "score"},
        "freshness_lag_minutes": {"direction": "above", "warning": 10, "critical": 13, "unit": "count"},
    },
    "model_perf": {
        **THRESHOLDS["model_perf"],
        "accuracy": {"direction": "below", "warning": 0.97, "critical": 0.95, "unit": "ratio"},
        "latency_p95_ms": {"direction": "above", "warning": 150, "critical": 400, "unit": "ms"},
    },
    "security": {
        **THRESHOLDS["security"],
        "auth_failures": {"direction": "above", "warning": 3, "critical": 5, "unit": "count"},
        "prompt_injection_score": {"direction": "above", "warning": 0.1, "critical": 0.95, "unit": "score"},
    },
    "fairness": {
        "dp_gap": {"direction": "above", "warning": 0.02, "critical": 0.9, "unit": "ratio"},
        "toxicity_gap": {"direction": "above", "warning": 0.3, "critical": 0.6, "unit": "ratio"},
    },
}


def make_plan(**overrides) -> EventPlan:
    arguments = {
        "count": 3000,
        "seed": 7,
        "start": START,
        "rate_per_s": 1.0,
        "namespace": "seed:7",
        "fleet_prefix": "synth-7",
        "thresholds": THRESHOLDS,
        "rule_settings": RULES,
    }
    arguments.update(overrides)
    return plan_events(**arguments)


def level_of(plan: EventPlan, event) -> str | None:
    """The level the detection engine assigns the event under the plan's thresholds."""
    return breach_level(plan.thresholds.get(event.category, {}).get(event.signal), event.value)


def absence_window(rules) -> timedelta:
    return timedelta(seconds=rules.absence_window_seconds)


def beats_by_system(events) -> dict[str, list[datetime]]:
    beats = defaultdict(list)
    for event in events:
        if event.signal == HEARTBEAT_SIGNAL:
            beats[event.system].append(event.occurred_at)
    return beats


def assert_plan_invariants(plan: EventPlan) -> None:
    """Everything that keeps the labels exact, checked over the whole stream."""
    events = list(plan.events())
    rules = plan.rules
    assert [e.index for e in events] == list(range(plan.count))
    assert all(e.occurred_at == plan.time_of(e.index) for e in events)
    assert len({e.event_id for e in events}) == plan.count
    fleet = {system.name: system for system in plan.fleet}
    assert {e.system for e in events} <= set(fleet)

    scenario_events = defaultdict(list)
    for event in events:
        if event.scenario_id is None:
            assert level_of(plan, event) is None, f"noise event crosses a level: {event}"
        else:
            scenario_events[event.scenario_id].append(event)
    scenarios = {s.scenario_id: s for s in plan.scenarios}
    assert set(scenario_events) <= set(scenarios)
    systems = [s.system for s in plan.scenarios]
    assert len(set(systems)) == len(systems), "two scenarios share a system"

    beats = beats_by_system(events)
    assert set(beats) <= {name for name, system in fleet.items() if system.sends_heartbeats}
    for scenario in plan.scenarios:
        own = scenario_events[scenario.scenario_id]
        assert len(scenario.scenario_id) <= 64
        assert len(own) == scenario.event_count
        assert all(e.system == scenario.system for e in own)
        levels = [level_of(plan, e) for e in own]
        span = (own[-1].occurred_at - own[0].occurred_at).total_seconds() if own else 0
        if scenario.kind == ScenarioKind.SINGLE_BREACH:
            (event,) = own
            assert levels == [CRITICAL]
            assert scenario.expected_rule == f"threshold:{event.category}"
            assert scenario.severity in ("critical", "high")
            spec = plan.thresholds[event.category][event.signal]
            if spec["unit"] == "count":
                assert event.value == int(event.value)
            if spec["unit"] == "ratio":
                assert 0 <= event.value <= 1
        elif scenario.kind == ScenarioKind.SUSTAINED_DRIFT:
            assert len(own) >= max(3, rules.min_breaches)
            assert levels == [WARNING] * len(own)
            assert len({e.signal for e in own}) == 1
            assert span <= rules.rate_window_seconds / 2
            assert scenario.expected_rule == f"rate:{own[0].category}"
            assert scenario.severity in ("medium", "low")
        elif scenario.kind == ScenarioKind.COMPOUND:
            assert len({e.signal for e in own}) == len(own) >= max(2, rules.compound_min_signals)
            assert len({e.category for e in own}) >= 2
            assert levels == [WARNING] * len(own)
            assert span <= rules.correlation_window_seconds / 2
            assert scenario.category == own[0].category
            assert scenario.expected_rule == "compound"
            assert scenario.severity in ("critical", "high")
        elif scenario.kind == ScenarioKind.NEAR_MISS:
            assert 1 <= len(own) <= 3
            assert levels == [None] * len(own)
            assert scenario.expected_rule == ""
        else:
            assert scenario.kind == ScenarioKind.HEARTBEAT_LOSS
            assert fleet[scenario.system].sends_heartbeats
            assert scenario.expected_rule == "absence:heartbeat"
            assert_one_silence(beats[scenario.system], own, scenario, rules)
        if scenario.kind != ScenarioKind.HEARTBEAT_LOSS:
            assert scenario.onset_at == own[0].occurred_at
            assert all(e.severity == scenario.severity for e in own)

    losing = {s.system for s in plan.scenarios if s.kind == ScenarioKind.HEARTBEAT_LOSS}
    for system, times in beats.items():
        if system not in losing:
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            assert max(gaps, default=timedelta(0)) < absence_window(rules), f"{system} falls silent without a scenario"


def assert_one_silence(times, telemetry, scenario, rules) -> None:
    """Exactly one gap of at least two absence windows; the onset is one window after its last beat;
    telemetry goes on inside the gap, including at or after the onset (event-time detection needs it)."""
    window = absence_window(rules)
    gaps = [(a, b) for a, b in zip(times, times[1:], strict=False) if b - a >= window]
    assert len(gaps) == 1
    last_beat, resumed = gaps[0]
    assert resumed - last_beat >= 2 * window
    assert scenario.onset_at == last_beat + window
    assert all(last_beat < e.occurred_at < resumed for e in telemetry)
    assert any(scenario.onset_at <= e.occurred_at < resumed for e in telemetry)
    assert all(e.signal != HEARTBEAT_SIGNAL for e in telemetry)


# --- determinism and resumability -----------------------------------------------------------------
def payloads(plan: EventPlan, start: int = 0, stop: int | None = None) -> list[dict]:
    return [event.as_payload() for event in plan.events(start, stop)]


def test_the_same_seed_gives_identical_payloads_scenarios_and_fleet():
    first, second = make_plan(), make_plan()

    assert payloads(first) == payloads(second)
    assert first.scenarios == second.scenarios
    assert first.fleet == second.fleet


def test_different_seeds_give_different_streams():
    assert payloads(make_plan(seed=7, count=500)) != payloads(make_plan(seed=8, count=500))


def test_a_slice_equals_that_slice_of_the_whole_stream_even_from_a_rebuilt_plan():
    whole = payloads(make_plan())
    rebuilt = make_plan()

    for start, stop in [(0, 10), (1234, 1500), (2990, 3000), (2999, 5000)]:
        assert payloads(rebuilt, start, stop) == whole[start:stop]


def test_event_ids_are_uuid5_of_namespace_and_index():
    event = make_plan(count=200).event_at(123)

    assert event.event_id == uuid.uuid5(EVENT_ID_NAMESPACE, "seed:7:123")


def test_events_occur_at_start_plus_index_over_rate():
    plan = make_plan(count=400, rate_per_s=20.0)

    assert plan.event_at(0).occurred_at == START
    assert plan.event_at(399).occurred_at == START + timedelta(seconds=399 / 20)
    assert plan.time_of(40) == START + timedelta(seconds=2)


def test_a_payload_is_what_post_events_takes():
    payload = make_plan(count=100).event_at(5).as_payload()

    assert set(payload) == {
        "event_id",
        "system",
        "category",
        "severity",
        "signal",
        "value",
        "occurred_at",
        "attributes",
        "scenario_id",
    }
    assert datetime.fromisoformat(payload["occurred_at"]) == START + timedelta(seconds=5)
    assert isinstance(payload["event_id"], str) and isinstance(payload["value"], float)


# --- realism ---------------------------------------------------------------------------------------
def test_ten_thousand_events_follow_the_category_mix_within_two_points():
    plan = make_plan(count=10_000, seed=42)
    shares = Counter(event.category for event in plan.events())

    for category, share in DEFAULT_MIX.items():
        assert shares[category] / 10_000 == pytest.approx(share, abs=0.02)


def test_ten_thousand_events_follow_a_custom_mix_within_two_points():
    mix = {"data_quality": 0.1, "model_perf": 0.3, "fairness": 0.3, "security": 0.2, "compliance": 0.1}
    shares = Counter(event.category for event in make_plan(count=10_000, seed=3, mix=mix).events())

    for category, share in mix.items():
        assert shares[category] / 10_000 == pytest.approx(share, abs=0.02)


def test_severities_follow_the_severity_mix():
    shares = Counter(event.severity for event in make_plan(count=10_000, seed=42).events())

    for severity, share in SEVERITY_MIX.items():
        assert shares[severity] / 10_000 == pytest.approx(share, abs=0.03)


def test_about_one_scenario_per_hundred_events_in_the_kind_proportions():
    plan = make_plan(count=10_000, seed=42)
    kinds = Counter(scenario.kind for scenario in plan.scenarios)

    assert len(plan.scenarios) == 100
    assert kinds == {"single_breach": 35, "sustained_drift": 30, "compound": 20, "heartbeat_loss": 10, "near_miss": 5}


def test_the_fleet_is_named_by_prefix_and_sized_for_the_scenarios():
    plan = make_plan(count=10_000, seed=42)

    assert len(plan.fleet) == max(20, math.ceil(1.6 * len(plan.scenarios)))
    assert [system.name for system in plan.fleet[:2]] == ["synth-7-0001", "synth-7-0002"]
    assert len({system.entity_type for system in plan.fleet}) == 3
    assert len({system.risk_class for system in plan.fleet}) >= 3


def test_noise_spreads_over_the_whole_fleet():
    plan = make_plan(count=10_000, seed=42)

    assert {event.system for event in plan.events() if event.scenario_id is None} == {s.name for s in plan.fleet}


def test_events_carry_small_realistic_attributes():
    events = list(make_plan(count=2000).events())
    psi = next(e for e in events if e.signal == "psi")
    dp_gap = next(e for e in events if e.signal == "dp_gap")

    assert set(psi.attributes) == {"feature"}
    assert set(dp_gap.attributes) == {"group"}
    assert all(len(str(e.attributes)) < 100 for e in events)


# --- the invariants that keep the ground truth exact ------------------------------------------------
def test_invariants_hold_under_the_default_thresholds():
    assert_plan_invariants(make_plan(count=10_000, seed=42))


def test_invariants_hold_under_changed_thresholds_passed_explicitly():
    plan = make_plan(count=5000, seed=11, thresholds=CHANGED_THRESHOLDS)

    assert_plan_invariants(plan)
    assert "toxicity_gap" in {event.signal for event in plan.events()}  # a signal the operator added


def test_noise_is_squeezed_inside_a_lowered_warning_level():
    plan = make_plan(count=3000, thresholds=CHANGED_THRESHOLDS)
    psi = [e.value for e in plan.events() if e.signal == "psi" and e.scenario_id is None]

    assert psi and max(psi) <= 0.7 * 0.03


def test_scenarios_follow_changed_rule_settings():
    rules = {**vars(RULES), "min_breaches": 5, "compound_min_signals": 3, "rate_window_seconds": 60}
    plan = make_plan(count=6000, seed=5, rule_settings=rules)

    assert_plan_invariants(plan)
    drifts = [s for s in plan.scenarios if s.kind == ScenarioKind.SUSTAINED_DRIFT]
    compounds = [s for s in plan.scenarios if s.kind == ScenarioKind.COMPOUND]
    assert drifts and all(s.event_count >= 5 for s in drifts)
    assert compounds and all(len(s.signals) >= 3 for s in compounds)


def test_a_real_time_plan_at_a_high_rate_stays_exact():
    plan = make_plan(count=10_000, rate_per_s=1000.0)

    assert_plan_invariants(plan)
    assert plan.end - plan.start == timedelta(seconds=9.999)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=-(2**63), max_value=2**63),
    count=st.integers(min_value=100, max_value=3000),
    rate=st.sampled_from([0.5, 1.0, 3.0, 250.0]),
    weights=st.lists(st.floats(min_value=0, max_value=1), min_size=5, max_size=5).filter(lambda w: sum(w) > 0.05),
)
def test_invariants_hold_for_any_seed_count_rate_and_mix(seed, count, rate, weights):
    mix = {category: weight / sum(weights) for category, weight in zip(CATEGORIES, weights, strict=True)}

    plan = make_plan(seed=seed, count=count, rate_per_s=rate, mix=mix)

    assert_plan_invariants(plan)
    assert {s.category for s in plan.scenarios if s.kind != ScenarioKind.HEARTBEAT_LOSS} <= {
        c for c, share in mix.items() if share > 0
    }


# --- heartbeats --------------------------------------------------------------------------------------
def test_a_timeline_shorter_than_three_absence_windows_gets_no_heartbeats_at_all():
    plan = make_plan(count=1500)  # 1,500 s < 3 × 600 s

    assert not plan.heartbeat_systems
    assert not [e for e in plan.events() if e.signal == HEARTBEAT_SIGNAL]
    assert len(plan.scenarios) == 15
    assert ScenarioKind.HEARTBEAT_LOSS not in {s.kind for s in plan.scenarios}


def test_a_long_timeline_plants_heartbeat_systems_that_beat_five_times_per_absence_window():
    plan = make_plan(count=10_000, seed=42)
    beats = beats_by_system(plan.events())

    assert len(plan.heartbeat_systems) >= math.ceil(HEARTBEAT_FLEET_SHARE * len(plan.fleet)) * 0.75
    assert set(beats) == set(plan.heartbeat_systems)
    healthy = set(plan.heartbeat_systems) - {s.system for s in plan.scenarios}
    for system in healthy:
        assert len(beats[system]) == pytest.approx(10_000 / (ABSENCE.total_seconds() / 5), abs=2)


def test_heartbeats_are_model_perf_info_events_of_value_one():
    beat = next(e for e in make_plan().events() if e.signal == HEARTBEAT_SIGNAL)

    assert (beat.category, beat.severity, beat.value, beat.scenario_id) == ("model_perf", "info", 1.0, None)


def test_a_heartbeat_loss_is_silent_for_two_windows_then_beats_again():
    plan = make_plan(count=10_000, seed=42)
    events = list(plan.events())
    beats = beats_by_system(events)
    losses = [s for s in plan.scenarios if s.kind == ScenarioKind.HEARTBEAT_LOSS]

    assert len(losses) == 10
    for scenario in losses:
        telemetry = [e for e in events if e.scenario_id == scenario.scenario_id]
        assert_one_silence(beats[scenario.system], telemetry, scenario, plan.rules)


def test_no_heartbeats_when_the_mix_has_no_model_perf_share():
    mix = {"data_quality": 0.5, "fairness": 0.5}

    plan = make_plan(count=5000, mix=mix)

    assert not plan.heartbeat_systems
    assert {e.category for e in plan.events()} == {"data_quality", "fairness"}


def test_a_long_timeline_keeps_heartbeats_within_the_model_perf_budget_and_gives_other_kinds_the_rest():
    plan = make_plan(count=40_000, seed=42)  # 11 hours of event time: every heartbeat system beats 333 times
    kinds = Counter(scenario.kind for scenario in plan.scenarios)
    beats = sum(1 for event in plan.events() if event.signal == HEARTBEAT_SIGNAL)

    assert len(plan.scenarios) == 400
    assert 1 <= kinds["heartbeat_loss"] < 40
    assert beats <= 0.75 * DEFAULT_MIX["model_perf"] * 40_000
    assert_plan_invariants(plan)


# --- arguments -------------------------------------------------------------------------------------
def test_plan_refuses_an_invalid_mix():
    with pytest.raises(ValueError, match="mix"):
        make_plan(mix={"data_quality": 0.5})


def test_plan_refuses_a_naive_start_and_a_non_positive_rate():
    with pytest.raises(ValueError, match="timezone"):
        make_plan(start=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="rate"):
        make_plan(rate_per_s=0)


def test_plan_refuses_a_namespace_too_long_for_scenario_ids():
    with pytest.raises(ValueError, match="namespace"):
        make_plan(namespace="x" * 60)


def test_plan_refuses_unknown_rule_settings():
    with pytest.raises(ValueError, match="unknown rule settings"):
        make_plan(rule_settings={**vars(RULES), "min_breeches": 3})


def test_validate_mix_accepts_the_default_and_a_subset_summing_to_one():
    assert validate_mix(DEFAULT_MIX) == {}
    assert validate_mix({"security": 0.25, "compliance": 0.75}) == {}


@pytest.mark.parametrize(
    ("mix", "key", "message"),
    [
        ([0.5, 0.5], "mix", "must be an object"),
        ({"data_quality": 0.9, "weather": 0.1}, "mix.weather", "unknown category 'weather'"),
        ({"data_quality": 1.5, "security": -0.5}, "mix.security", "must be ≥ 0"),
        ({"data_quality": "1"}, "mix.data_quality", "must be a number"),
        ({"data_quality": True}, "mix.data_quality", "must be a number"),
        ({"data_quality": float("nan")}, "mix.data_quality", "must be a number"),
        ({"data_quality": 0.5, "security": 0.4}, "mix", "must sum to 1 (they sum to 0.9)"),
        ({}, "mix", "must sum to 1"),
    ],
)
def test_validate_mix_names_the_problem(mix, key, message):
    errors = validate_mix(mix)

    assert message in errors[key][0]


@given(st.one_of(st.dictionaries(st.text(), st.one_of(st.floats(), st.integers(), st.text(), st.none())), st.none()))
def test_validate_mix_never_raises(mix):
    assert isinstance(validate_mix(mix), dict)


# --- the database side ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_thresholds_and_rules_default_to_the_registry_at_plan_time(admin_user):
    registry.set("oversight.rate_rule", {"min_breaches": 4, "window_seconds": 120}, user=admin_user)

    plan = plan_events(count=3000, seed=7, start=START, rate_per_s=1.0, namespace="seed:7", fleet_prefix="s")

    assert (plan.rules.min_breaches, plan.rules.rate_window_seconds) == (4, 120)
    assert plan.thresholds["data_quality"]["psi"] == THRESHOLDS["data_quality"]["psi"]
    assert all(s.event_count >= 4 for s in plan.scenarios if s.kind == ScenarioKind.SUSTAINED_DRIFT)


@pytest.mark.django_db
def test_a_plan_rebuilt_with_its_own_thresholds_and_rules_ignores_later_config_changes(admin_user):
    arguments = {"count": 2000, "seed": 7, "start": START, "rate_per_s": 1.0, "namespace": "n", "fleet_prefix": "s"}
    first = plan_events(**arguments)
    psi = {**THRESHOLDS["data_quality"]["psi"], "warning": 0.02, "critical": 0.05}
    registry.set("oversight.thresholds.data_quality", {**THRESHOLDS["data_quality"], "psi": psi}, user=admin_user)

    rebuilt = plan_events(**arguments, thresholds=first.thresholds, rule_settings=vars(first.rules))

    assert payloads(rebuilt) == payloads(first)
    assert payloads(plan_events(**arguments)) != payloads(first)


@pytest.fixture
def plan() -> EventPlan:
    return make_plan(count=3000)


@pytest.mark.django_db
def test_ensure_fleet_creates_the_fleet_in_the_synthetic_team_and_audits_it(plan):
    systems = ensure_fleet(plan)

    assert list(systems) == [s.name for s in plan.fleet]
    stored = AISystem.objects.filter(name__startswith="synth-7-")
    assert stored.count() == len(plan.fleet)
    assert {s.team.slug for s in stored.select_related("team")} == {SYNTHETIC_TEAM_SLUG}
    assert {(s.metadata["synthetic"], s.metadata["seed"]) for s in stored} == {(True, 7)}
    first = stored.get(name="synth-7-0001")
    assert (first.entity_type, first.risk_class) == (plan.fleet[0].entity_type, plan.fleet[0].risk_class)
    assert AuditLog.objects.filter(action=AuditAction.SYSTEM_REGISTERED).count() == len(plan.fleet)


@pytest.mark.django_db
def test_ensure_fleet_is_idempotent_and_reactivates_a_deactivated_fleet(plan):
    first = ensure_fleet(plan)
    deactivate_fleet(first)

    again = ensure_fleet(plan)

    assert {s.pk for s in again.values()} == {s.pk for s in first.values()}
    assert AISystem.objects.filter(name__startswith="synth-7-", is_active=True).count() == len(plan.fleet)
    assert AuditLog.objects.filter(action=AuditAction.SYSTEM_REGISTERED).count() == len(plan.fleet)


@pytest.mark.django_db
def test_ensure_fleet_uses_the_team_it_is_given(plan):
    team = TeamFactory(slug="load-tests")

    ensure_fleet(plan, team=team)

    assert set(AISystem.objects.filter(name__startswith="synth-7-").values_list("team", flat=True)) == {team.pk}


@pytest.mark.django_db
def test_ensure_fleet_never_adopts_a_real_system_of_the_same_name(plan):
    AISystemFactory(name="synth-7-0003")

    with pytest.raises(ValueError, match="non-synthetic"):
        ensure_fleet(plan)

    assert AISystem.objects.filter(name__startswith="synth-7-").count() == 1


@pytest.mark.django_db
def test_deactivate_fleet_counts_only_systems_it_changed(plan):
    systems = ensure_fleet(plan)

    assert deactivate_fleet(systems) == len(plan.fleet)
    assert deactivate_fleet(systems) == 0
    assert not AISystem.objects.filter(name__startswith="synth-7-", is_active=True).exists()


@pytest.mark.django_db
def test_store_labels_writes_the_ground_truth_once(plan):
    systems = ensure_fleet(plan)
    simulation = Simulation.objects.create(total=plan.count, seed=plan.seed)

    assert store_labels(plan, systems=systems, simulation=simulation) == len(plan.scenarios)
    assert store_labels(plan, systems=systems, simulation=simulation) == 0

    labels = {label.scenario_id: label for label in ScenarioLabel.objects.select_related("system")}
    assert set(labels) == {s.scenario_id for s in plan.scenarios}
    for scenario in plan.scenarios:
        label = labels[scenario.scenario_id]
        assert (label.system.name, label.kind, label.expected_rule, label.onset_at, label.event_count) == (
            scenario.system,
            scenario.kind,
            scenario.expected_rule,
            scenario.onset_at,
            scenario.event_count,
        )
        assert (label.simulation_id, label.seed, label.signals) == (simulation.pk, 7, list(scenario.signals))


@pytest.mark.django_db
def test_planted_scenarios_are_exactly_what_detection_fires(django_capture_on_commit_callbacks):
    """The ground truth end to end: ingest a backdated plan batch by batch (processing runs on commit,
    Celery is eager in tests) and compare the fired alerts with the labels — no false alert, no miss,
    the expected severity."""
    count = 3000
    plan = plan_events(
        count=count,
        seed=7,
        start=timezone.now() - timedelta(seconds=count),
        rate_per_s=1.0,
        namespace="seed:7",
        fleet_prefix="synth-7",
    )
    ensure_fleet(plan)
    for start in range(0, count, 1000):  # the command's default batch: 1,000 s of event time > the window
        with django_capture_on_commit_callbacks(execute=True):
            ingest_events(items=payloads(plan, start, start + 1000), submitted_by=None)

    fired = {
        (alert.system.name, alert.rule.name): alert.severity
        for alert in Alert.objects.filter(detected_at__isnull=False).select_related("system", "rule")
    }
    expected = {(s.system, s.expected_rule): s.severity for s in plan.scenarios if s.expected_rule}
    assert {kind for _, kind in fired} >= {"compound", "absence:heartbeat"}
    assert fired == expected
