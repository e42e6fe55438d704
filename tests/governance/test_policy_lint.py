"""The policy linter (governance.services.policy_lint): one fixture per finding class, positions, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from governance.services.policy_lint import (
    FINDING_CLASSES,
    MAX_DOCUMENT_BYTES,
    MAX_RULES,
    Finding,
    LintReport,
    policy_lint,
    policy_schema,
    reference_problem,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"

HEAD = """\
apiVersion: vigil/v1
kind: Policy
metadata: {id: test-policy, name: Test policy}
spec:
  scope: {risk_class: [limited]}
  default_action: allow
  rules:
"""


def policy(rules: str, head: str = HEAD) -> str:
    return head + rules


def lint(text: str, **kwargs) -> LintReport:
    return policy_lint(text=text, **kwargs)


def only(report: LintReport, name: str) -> Finding:
    found = [f for f in report.findings if f.name == name]
    assert len(found) == 1, [f.as_dict() for f in report.findings]
    return found[0]


def named(report: LintReport, name: str) -> list[Finding]:
    return [f for f in report.findings if f.name == name]


def position(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based (line, column) of the ``occurrence``-th ``needle`` in ``text``."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def assert_at(finding: Finding, text: str, needle: str, occurrence: int = 1) -> None:
    assert (finding.line, finding.column) == position(text, needle, occurrence), finding.as_dict()


def rule(rule_id: str, when: str = "", *, category="model_perf", severity="high", action="deny", extra="") -> str:
    lines = [f"    - id: {rule_id}", f"      category: {category}", f"      severity: {severity}"]
    if when:
        lines.append(f"      when: {when}")
    lines.append(f"      action: {action}")
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


# --- a valid baseline
def test_a_small_valid_policy_has_no_errors_or_warnings():
    report = lint(policy(rule("accuracy", '[{metric: exact_match, suite: accuracy, op: "<", value: 0.8}]')))

    assert report.ok
    assert report.counts["error"] == report.counts["warning"] == 0
    assert report.policy_id == "test-policy"
    assert report.rule_count == 1
    assert report.coverage["model_perf"]["high"] == ["accuracy"]


def test_the_clean_example_has_no_errors_and_no_warnings():
    text = (EXAMPLES / "clean.yaml").read_text()

    report = lint(text, filename="clean.yaml")

    assert report.ok
    assert report.counts["error"] == 0
    assert report.counts["warning"] == 0
    assert {f.name for f in report.findings} <= {"coverage-gap"}
    assert report.rule_count == 14


def test_the_every_finding_example_shows_every_finding_class_but_internal_error():
    report = lint((EXAMPLES / "every-finding.yaml").read_text(), filename="every-finding.yaml")

    expected = {fc.name for fc in FINDING_CLASSES.values()} - {"internal-error"}
    assert {f.name for f in report.findings} == expected
    assert not report.ok


# --- VGL001 syntax
def test_syntax_an_unclosed_flow_sequence_is_reported_at_its_position():
    text = policy("    - {id: a, category: model_perf, severity: high, action: deny, when: [\n")

    finding = only(lint(text), "syntax")

    assert (finding.code, finding.level) == ("VGL001", "error")
    assert finding.line == 9
    assert finding.column == 1
    assert finding.message.startswith("invalid YAML")


def test_syntax_invalid_json_is_reported_with_the_json_line_and_column():
    text = '{\n  "apiVersion": "vigil/v1",\n  "kind": "Policy",,\n}'

    finding = only(lint(text, filename="policy.json"), "syntax")

    assert (finding.line, finding.column) == (3, 20)
    assert finding.message.startswith("invalid JSON")


def test_syntax_a_duplicate_key_is_reported_where_it_repeats_and_the_lint_goes_on():
    text = policy(rule("a", '[{signal: psi, op: ">", value: 0.2}]', extra="      action: allow"))

    report = lint(text)

    finding = only(report, "syntax")
    assert finding.path == "spec.rules.0.action"
    assert_at(finding, text, "action: allow", occurrence=2)  # the first is default_action
    assert "first at line" in finding.message
    assert report.rule_count == 1


def test_syntax_a_boolean_key_is_reported_with_the_yaml_1_1_explanation():
    text = policy(rule("a", '[{signal: psi, op: ">", value: 0.2}]', extra="      yes: 1"))

    finding = only(lint(text), "syntax")

    assert_at(finding, text, "yes: 1")
    assert "not a string" in finding.message


@pytest.mark.parametrize("value", ["!!python/object:os.system x", ".nan", "!!binary aGVsbG8="])
def test_syntax_unsafe_tags_and_non_finite_numbers_are_syntax_findings(value):
    text = policy(rule("a", f'[{{signal: psi, op: ">", value: {value}}}]'))

    finding = only(lint(text), "syntax")

    assert finding.path == "spec.rules.0.when.0.value"
    assert_at(finding, text, value)


# --- VGL002 document-limit
def test_document_limit_text_over_one_megabyte_is_refused_unparsed():
    text = policy("# " + "x" * MAX_DOCUMENT_BYTES)

    report = lint(text)

    finding = only(report, "document-limit")
    assert (finding.code, finding.level) == ("VGL002", "error")
    assert len(report.findings) == 1


def test_document_limit_more_rules_than_allowed_is_reported_on_rules():
    rules = [{"id": f"r{n}", "category": "security", "severity": "low", "action": "deny"} for n in range(MAX_RULES + 1)]
    document = {
        "apiVersion": "vigil/v1",
        "kind": "Policy",
        "metadata": {"id": "big", "name": "Big"},
        "spec": {"default_action": "allow", "rules": rules},
    }

    finding = only(policy_lint(document=document), "document-limit")

    assert finding.path == "spec.rules"
    assert f"{MAX_RULES + 1:,} rules" in finding.message


def test_document_limit_deep_nesting_is_reported_where_it_goes_too_deep():
    text = policy(
        "    []\n",
        head=HEAD.replace("name: Test policy}", "name: Test policy, labels: {x: " + "[" * 70 + "]" * 70 + "}}"),
    )

    finding = only(lint(text), "document-limit")

    assert finding.line == 3
    assert "64 levels" in finding.message


def test_document_limit_an_alias_bomb_stops_at_the_node_budget():
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        bomb.append(
            f"{'abcdefghij'[level]}: &{'abcdefghij'[level]} [" + ", ".join([f"*{'abcdefghij'[level - 1]}"] * 10) + "]"
        )

    report = lint("\n".join(bomb) + "\n")

    assert only(report, "document-limit").message.startswith("the document has more than")


def test_document_limit_a_cyclic_document_object_is_reported_not_looped_over():
    document: dict = {"apiVersion": "vigil/v1"}
    document["self"] = document

    report = policy_lint(document=document)

    assert named(report, "document-limit")[0].message.startswith("nested deeper than 64 levels")


# --- VGL003 schema
def test_schema_a_wrong_enum_value_is_reported_at_the_value():
    text = policy(rule("a", action="block"))

    finding = only(lint(text), "schema")

    assert (finding.code, finding.level) == ("VGL003", "error")
    assert finding.path == "spec.rules.0.action"
    assert_at(finding, text, "block")
    assert "not one of" in finding.message


def test_schema_an_unknown_key_is_reported_at_the_key():
    text = policy(rule("a", extra="      severty: high"))

    finding = only(lint(text), "schema")

    assert finding.path == "spec.rules.0.severty"
    assert_at(finding, text, "severty")


def test_schema_a_condition_with_two_subjects_is_explained():
    text = policy(rule("a", '[{signal: psi, metric: exact_match, op: ">", value: 0.2}]'))

    finding = named(lint(text), "schema")[0]

    assert finding.path == "spec.rules.0.when.0"
    assert "exactly one subject" in finding.message


def test_schema_an_empty_document_is_a_schema_finding():
    finding = only(lint(""), "schema")

    assert "empty" in finding.message


def test_schema_a_rule_with_schema_errors_is_left_out_of_the_logic_checks():
    text = policy(
        rule("a", '[{signal: psi, op: ">", value: "high"}]') + rule("a", '[{signal: psi, op: ">", value: 0.2}]')
    )

    report = lint(text)

    assert only(report, "schema").path == "spec.rules.0.when.0.value"
    assert named(report, "duplicate-id") == []


# --- VGL010 duplicate-id
def test_duplicate_id_is_reported_on_the_second_rule_and_points_at_the_first():
    text = policy(
        rule("drift", '[{signal: psi, op: ">", value: 0.2}]', category="data_quality")
        + rule("drift", '[{signal: null_rate, op: ">", value: 0.2}]', category="data_quality")
    )

    finding = only(lint(text), "duplicate-id")

    assert (finding.code, finding.level, finding.rule_id) == ("VGL010", "error", "drift")
    assert finding.path == "spec.rules.1.id"
    assert_at(finding, text, "drift", occurrence=2)
    assert finding.related[0].path == "spec.rules.0"


# --- VGL020 threshold-range
@pytest.mark.parametrize(
    ("condition", "needle", "message"),
    [
        ('{metric: exact_match, suite: accuracy, op: "<", value: 90}', "90", "did you mean percent"),
        ('{signal: dp_gap, op: ">", value: 1.5, unit: ratio}', "1.5", "not a ratio"),
        ('{signal: thing, op: ">", value: 150, unit: percent}', "150", "not a percentage"),
        ('{signal: latency_p95_ms, op: ">", value: -5}', "-5", "cannot be negative"),
    ],
)
def test_threshold_range_values_outside_their_unit_are_errors(condition, needle, message):
    text = policy(rule("a", f"[{condition}]"))

    finding = only(lint(text), "threshold-range")

    assert (finding.code, finding.level) == ("VGL020", "error")
    assert finding.path == "spec.rules.0.when.0.value"
    assert_at(finding, text, needle)
    assert message in finding.message


def test_threshold_range_applies_to_every_graded_level():
    text = policy(
        rule("a", extra="      thresholds: {signal: dp_gap, direction: above, levels: {warning: 0.1, critical: 2}}")
    )

    finding = only(lint(text), "threshold-range")

    assert finding.path == "spec.rules.0.thresholds.levels.critical"
    assert_at(finding, text, "2}}")


# --- VGL021 unit-mismatch
def test_unit_mismatch_names_the_natural_unit_and_the_converted_value():
    text = policy(rule("a", '[{signal: latency_p95_ms, op: ">", value: 2, unit: seconds}]'))

    finding = only(lint(text), "unit-mismatch")

    assert (finding.code, finding.level) == ("VGL021", "warning")
    assert finding.path == "spec.rules.0.when.0.unit"
    assert_at(finding, text, "seconds")
    assert "write 2000 (ms)" in finding.message


def test_unit_mismatch_also_flags_a_threshold_direction_against_the_signal():
    text = policy(
        rule("a", extra="      thresholds: {signal: psi, direction: below, levels: {warning: 0.25, critical: 0.1}}")
    )

    finding = only(lint(text), "unit-mismatch")

    assert finding.path == "spec.rules.0.thresholds.direction"
    assert "worse when above" in finding.message


# --- VGL022 threshold-order
@pytest.mark.parametrize(
    ("thresholds", "relation"),
    [
        ("{signal: psi, direction: above, levels: {warning: 0.3, critical: 0.2}}", "below"),
        ("{metric: exact_match, suite: accuracy, direction: below, levels: {warning: 0.8, critical: 0.9}}", "above"),
    ],
)
def test_threshold_order_warning_must_be_less_severe_than_critical(thresholds, relation):
    text = policy(rule("a", extra=f"      thresholds: {thresholds}"))

    finding = only(lint(text), "threshold-order")

    assert (finding.code, finding.level) == ("VGL022", "error")
    assert finding.path == "spec.rules.0.thresholds.levels.warning"
    assert_at(finding, text, "0.")
    assert f"must be {relation} critical" in finding.message


# --- VGL023 non-monotonic-levels
def test_non_monotonic_levels_info_must_be_below_warning_for_direction_above():
    text = policy(
        rule(
            "a",
            extra="      thresholds: {signal: dp_gap, direction: above, "
            "levels: {info: 0.15, warning: 0.1, critical: 0.2}}",
        )
    )

    finding = only(lint(text), "non-monotonic-levels")

    assert (finding.code, finding.level) == ("VGL023", "error")
    assert finding.path == "spec.rules.0.thresholds.levels.info"
    assert_at(finding, text, "0.15")


def test_non_monotonic_levels_a_more_severe_rule_needs_the_stricter_threshold():
    text = policy(
        rule(
            "medium",
            '[{signal: psi, op: ">", value: 0.3}]',
            category="data_quality",
            severity="medium",
            action="require_review",
        )
        + rule("critical", '[{signal: psi, op: ">", value: 0.2}]', category="data_quality", severity="critical")
    )

    finding = only(lint(text), "non-monotonic-levels")

    assert finding.level == "warning"
    assert finding.rule_id == "critical"
    assert finding.path == "spec.rules.1.when.0"
    assert finding.related[0].rule_id == "medium"


# --- VGL024 unknown-subject
def test_unknown_subject_a_near_miss_is_a_warning_with_the_suggestion():
    text = policy(rule("a", '[{signal: null_rat, op: ">", value: 0.2}]'))

    finding = only(lint(text), "unknown-subject")

    assert (finding.code, finding.level) == ("VGL024", "warning")
    assert finding.path == "spec.rules.0.when.0.signal"
    assert_at(finding, text, "null_rat")
    assert "did you mean 'null_rate'" in finding.message


def test_unknown_subject_a_custom_signal_is_only_info():
    finding = only(lint(policy(rule("a", '[{signal: chargeback_ratio, op: ">", value: 0.2}]'))), "unknown-subject")

    assert finding.level == "info"


def test_unknown_subject_a_metric_the_suite_does_not_measure_is_a_warning():
    text = policy(rule("a", '[{metric: accuracy, suite: accuracy, op: "<", value: 0.8}]'))

    finding = only(lint(text), "unknown-subject")

    assert finding.level == "warning"
    assert "measures 'exact_match'" in finding.message


def test_unknown_subject_a_signal_in_the_wrong_category_is_a_warning():
    finding = only(
        lint(policy(rule("a", '[{signal: psi, category: fairness, op: ">", value: 0.2}]'))), "unknown-subject"
    )

    assert finding.path == "spec.rules.0.when.0.category"
    assert "data_quality signal" in finding.message


# --- VGL030 conflicting-rules
def test_conflicting_rules_same_conditions_opposite_actions_is_an_error_on_the_later_rule():
    when = '[{signal: auth_failures, op: ">", value: 10}]'
    text = policy(
        rule("deny-it", when, category="security") + rule("allow-it", when, category="security", action="allow")
    )

    finding = only(lint(text), "conflicting-rules")

    assert (finding.code, finding.level, finding.rule_id) == ("VGL030", "error", "allow-it")
    assert finding.path == "spec.rules.1"
    assert_at(finding, text, "id: allow-it")
    assert finding.related[0].rule_id == "deny-it"
    assert named(lint(text), "shadowed-rule") == []


def test_conflicting_rules_compares_conditions_not_their_order_or_spelling():
    first = '[{signal: psi, op: ">", value: 0.2}, {attribute: team, op: in, value: [credit]}]'
    second = '[{attribute: team, op: "==", value: credit}, {signal: psi, op: ">", value: 0.2}]'
    text = policy(rule("a", first, action="escalate") + rule("b", second, action="allow"))

    assert only(lint(text), "conflicting-rules").rule_id == "b"


# --- VGL031 overlapping-ranges
def test_overlapping_ranges_with_opposite_actions_name_the_overlap():
    text = policy(
        rule("high", '[{signal: error_rate, op: ">", value: 0.05}]')
        + rule("low", '[{signal: error_rate, op: "<", value: 0.08}]', action="allow")
    )

    finding = only(lint(text), "overlapping-ranges")

    assert (finding.code, finding.level, finding.rule_id) == ("VGL031", "warning", "low")
    assert finding.path == "spec.rules.1.when.0"
    assert "> 0.05 and < 0.08" in finding.message


def test_overlapping_ranges_for_different_systems_do_not_overlap():
    text = policy(
        rule("a", '[{attribute: system, op: "==", value: s1}, {signal: error_rate, op: ">", value: 0.05}]')
        + rule(
            "b",
            '[{attribute: system, op: "==", value: s2}, {signal: error_rate, op: "<", value: 0.08}]',
            action="allow",
        )
    )

    assert named(lint(text), "overlapping-ranges") == []


# --- VGL032 shadowed-rule
def test_shadowed_rule_a_broader_earlier_rule_hides_a_narrower_later_one():
    text = policy(
        rule("broad", '[{signal: schema_violations, op: ">", value: 5}]', category="data_quality")
        + rule(
            "narrow", '[{signal: schema_violations, op: ">", value: 50}]', category="data_quality", action="escalate"
        )
    )

    finding = only(lint(text), "shadowed-rule")

    assert (finding.code, finding.level, finding.rule_id) == ("VGL032", "warning", "narrow")
    assert_at(finding, text, "id: narrow")
    assert finding.related[0].rule_id == "broad"


def test_shadowed_rule_a_rule_without_conditions_shadows_every_later_rule():
    text = policy(rule("catch-all", action="require_review") + rule("later", '[{signal: psi, op: ">", value: 0.2}]'))

    assert only(lint(text), "shadowed-rule").rule_id == "later"


def test_shadowed_rule_an_attribute_superset_shadows():
    text = policy(
        rule("two", "[{attribute: team, op: in, value: [a, b]}]")
        + rule("one", '[{attribute: team, op: in, value: [a]}, {signal: psi, op: ">", value: 0.2}]')
    )

    assert only(lint(text), "shadowed-rule").rule_id == "one"


def test_a_narrower_rule_before_a_broader_one_is_fine():
    text = policy(
        rule(
            "narrow",
            '[{signal: schema_violations, op: ">", value: 50}]',
            category="data_quality",
            severity="critical",
            action="escalate",
        )
        + rule("broad", '[{signal: schema_violations, op: ">", value: 5}]', category="data_quality")
    )

    report = lint(text)

    assert report.counts["error"] == report.counts["warning"] == 0


# --- VGL033 unreachable-rule
def test_unreachable_rule_contradictory_numeric_conditions():
    text = policy(
        rule(
            "band",
            '[{signal: prompt_injection_score, op: ">", value: 0.9}, '
            '{signal: prompt_injection_score, op: "<", value: 0.5}]',
            category="security",
        )
    )

    finding = only(lint(text), "unreachable-rule")

    assert (finding.code, finding.level, finding.rule_id) == ("VGL033", "warning", "band")
    assert finding.path == "spec.rules.0.when.1"
    assert "contradict" in finding.message


def test_unreachable_rule_an_empty_attribute_list():
    text = policy(rule("nobody", "[{attribute: team, op: in, value: []}]"))

    finding = only(lint(text), "unreachable-rule")

    assert finding.path == "spec.rules.0.when.0"
    assert_at(finding, text, "{attribute")


def test_unreachable_rule_an_attribute_outside_the_policy_scope():
    text = policy(rule("minimal-only", '[{attribute: risk_class, op: "==", value: minimal}]'))

    assert "scope" in only(lint(text), "unreachable-rule").message


def test_an_unreachable_rule_neither_shadows_nor_conflicts():
    text = policy(
        rule("never", '[{signal: psi, op: ">", value: 0.5}, {signal: psi, op: "<", value: 0.1}]')
        + rule("later", '[{signal: psi, op: ">", value: 0.6}]', action="allow")
    )

    report = lint(text)

    assert named(report, "shadowed-rule") == named(report, "conflicting-rules") == []


# --- VGL040 coverage-gap
def test_coverage_gap_is_info_per_category_and_the_matrix_lists_the_rules():
    text = policy(rule("a", '[{signal: psi, op: ">", value: 0.2}]', category="data_quality", severity="high"))

    report = lint(text)

    gaps = named(report, "coverage-gap")
    assert [(f.code, f.level) for f in gaps] == [("VGL040", "info")] * 5
    data_quality = next(f for f in gaps if "data_quality" in f.message)
    assert data_quality.message == "no rule covers data_quality at severity critical, medium, low, info"
    assert data_quality.path == "spec.rules"
    assert_at(data_quality, text, "rules:")
    assert report.coverage["data_quality"]["high"] == ["a"]
    assert ["data_quality", "critical"] in report.as_json()["coverage"]["gaps"]
    assert len(report.as_json()["coverage"]["gaps"]) == 24


# --- VGL041 regulatory-gap
HIGH_RISK = HEAD.replace("[limited]", "[high]")


def test_regulatory_gap_a_high_risk_policy_without_obligations_cites_each_article():
    text = policy(rule("a", '[{signal: psi, op: ">", value: 0.2}]', category="data_quality"), head=HIGH_RISK)

    gaps = named(lint(text), "regulatory-gap")

    assert {f.article: f.level for f in gaps} == {
        "Art. 14": "warning",
        "Art. 12": "warning",
        "Art. 15": "warning",
        "Art. 73": "warning",
        "Art. 10": "info",
    }
    art14 = next(f for f in gaps if f.article == "Art. 14")
    assert art14.code == "VGL041"
    assert art14.references == ({"framework": "eu_ai_act", "ref": "Art. 14"},)
    assert_at(art14, text, "rules:")


def test_regulatory_gap_applies_when_the_scope_is_absent():
    head = HEAD.replace("  scope: {risk_class: [limited]}\n", "")

    gaps = named(lint(policy(rule("a", action="escalate"), head=head)), "regulatory-gap")

    assert {f.article for f in gaps} == {"Art. 12", "Art. 15", "Art. 10"}  # escalate covers Art. 14 and 73
    assert "every system" in gaps[0].message


def test_regulatory_gap_is_not_reported_for_a_limited_risk_scope():
    assert named(lint(policy(rule("a"))), "regulatory-gap") == []


def test_regulatory_gap_art_15_needs_a_cited_measured_model_perf_or_security_rule():
    cited_unmeasured = rule(
        "a", category="model_perf", extra='      references: [{framework: eu_ai_act, ref: "Art. 15"}]'
    )
    cited_measured = rule(
        "b",
        '[{metric: exact_match, suite: accuracy, op: "<", value: 0.8}]',
        extra='      references: [{framework: eu_ai_act, ref: "Art. 15(1)"}]',
    )

    unmeasured = {f.article for f in named(lint(policy(cited_unmeasured, head=HIGH_RISK)), "regulatory-gap")}
    measured = {f.article for f in named(lint(policy(cited_measured, head=HIGH_RISK)), "regulatory-gap")}

    assert "Art. 15" in unmeasured
    assert "Art. 15" not in measured


# --- VGL042 unknown-reference
@pytest.mark.parametrize(
    ("framework", "ref", "message"),
    [
        ("eu_ai_act", "Art. 200", "Articles 1-113"),
        ("eu_ai_act", "Annex XIV", "not an EU AI Act article"),
        ("nist_ai_rmf", "MEASURE 2.14", "subcategories .1-.13"),
        ("nist_ai_rmf", "MONITOR 1.1", "not a NIST AI RMF function"),
        ("iso_42001", "11.2", "clauses 4-10"),
        ("iso_42001", "A.11.2", "A.2-A.10"),
    ],
)
def test_unknown_reference_is_a_warning_citing_the_reference(framework, ref, message):
    text = policy(rule("a", extra=f'      references: [{{framework: {framework}, ref: "{ref}"}}]'))

    finding = only(lint(text), "unknown-reference")

    assert (finding.code, finding.level) == ("VGL042", "warning")
    assert finding.path == "spec.rules.0.references.0.ref"
    assert_at(finding, text, f'"{ref}"')
    assert finding.references == ({"framework": framework, "ref": ref},)
    assert message in finding.message


@pytest.mark.parametrize(
    ("framework", "ref"),
    [
        ("eu_ai_act", "Art. 14"),
        ("eu_ai_act", "Article 15(1)"),
        ("eu_ai_act", "Art. 10(2)(f)"),
        ("eu_ai_act", "Annex III"),
        ("eu_ai_act", "Art. 113"),
        ("nist_ai_rmf", "GOVERN"),
        ("nist_ai_rmf", "MEASURE 2.13"),
        ("nist_ai_rmf", "map 1.6"),
        ("iso_42001", "8.4"),
        ("iso_42001", "9.2.1"),
        ("iso_42001", "A.6.2.6"),
        ("iso_42001", "A.10"),
    ],
)
def test_real_references_are_accepted(framework, ref):
    assert reference_problem(framework, ref) is None


# --- VGL043 prohibited-practice-allowed
def test_prohibited_a_scope_with_prohibited_systems_and_default_allow_is_an_error():
    text = policy(rule("a", action="escalate"), head=HEAD.replace("[limited]", "[limited, prohibited]"))

    finding = only(lint(text), "prohibited-practice-allowed")

    assert (finding.code, finding.level, finding.article) == ("VGL043", "error", "Art. 5")
    assert finding.path == "spec.default_action"
    assert_at(finding, text, "allow")


def test_prohibited_a_rule_allowing_prohibited_systems_is_an_error():
    head = HEAD.replace("  scope: {risk_class: [limited]}\n", "").replace(
        "default_action: allow", "default_action: deny"
    )
    text = policy(
        rule("let-them", "[{attribute: risk_class, op: in, value: [prohibited, minimal]}]", action="allow"), head=head
    )

    finding = only(lint(text), "prohibited-practice-allowed")

    assert finding.rule_id == "let-them"
    assert finding.path == "spec.rules.0.when.0"


# --- documents instead of text
def test_a_parsed_document_lints_the_same_without_positions():
    text = (EXAMPLES / "every-finding.yaml").read_text()
    from_text = lint(text)
    document = yaml.safe_load(text)

    from_document = policy_lint(document=document)

    assert {f.name for f in from_document.findings} - {"syntax"} == {f.name for f in from_text.findings} - {"syntax"}
    assert all(f.line is None and f.column is None for f in from_document.findings)


def test_non_json_values_in_a_document_are_syntax_findings():
    document = {
        "apiVersion": "vigil/v1",
        "kind": "Policy",
        "metadata": {"id": "x", "name": "X", "labels": {1: "a"}},
        "spec": {"default_action": "allow", "rules": [], "when": {1, 2}},
    }

    paths = {f.path for f in named(policy_lint(document=document), "syntax")}

    assert paths == {"metadata.labels", "spec.when"}


# --- outputs
def test_json_output_round_trips_and_counts_match_the_findings():
    report = lint((EXAMPLES / "every-finding.yaml").read_text(), filename="every-finding.yaml")

    body = json.loads(json.dumps(report.as_json()))

    assert body == report.as_json()
    assert body["ok"] is False
    assert sum(body["counts"].values()) == len(body["findings"]) == len(report.findings)
    assert body["counts"] == report.counts
    assert {
        "code",
        "name",
        "level",
        "message",
        "path",
        "line",
        "column",
        "rule_id",
        "references",
        "article",
        "related",
    } <= set(body["findings"][0])


def test_sarif_output_has_the_required_structure_and_describes_every_finding_class():
    report = lint((EXAMPLES / "every-finding.yaml").read_text(), filename="examples/policies/every-finding.yaml")

    sarif = json.loads(json.dumps(report.as_sarif()))

    assert sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "vigil-policy-lint"
    assert [r["id"] for r in driver["rules"]] == [fc.code for fc in FINDING_CLASSES.values()]
    assert all({"id", "name", "shortDescription", "defaultConfiguration"} <= set(r) for r in driver["rules"])
    assert len(run["results"]) == len(report.findings)
    for result, finding in zip(run["results"], report.findings, strict=True):
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"] == finding.code
        assert result["level"] in {"error", "warning", "note"}
        assert result["message"]["text"] == finding.message
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == "examples/policies/every-finding.yaml"
        assert location["region"] == {"startLine": finding.line, "startColumn": finding.column}
    assert {r["level"] for r in run["results"]} == {"error", "warning", "note"}
    regulatory = next(r for r in run["results"] if r["ruleId"] == "VGL041")
    assert regulatory["properties"]["article"].startswith("Art. ")


def test_text_output_is_compiler_style():
    text = policy(rule("a", action="block"))

    line = next(line for line in lint(text, filename="p.yaml").as_text().splitlines() if "VGL003" in line)

    row, col = position(text, "block")
    assert line.startswith(f"p.yaml:{row}:{col}: error VGL003 schema: ")


def test_the_published_schema_is_json_schema_2020_12():
    from jsonschema import Draft202012Validator

    schema = policy_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert Draft202012Validator(schema).is_valid(yaml.safe_load((EXAMPLES / "clean.yaml").read_text()))
