"""Fast policy reading (governance.services.policy_source): the fast readers give the complete reader's data and
positions, findings deep in large documents carry the right line and column, and what the fast readers do not
reproduce exactly still goes through the complete reader."""

from __future__ import annotations

import copy
import gc
import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.services import policy_lint as lint_module
from governance.services import policy_source
from governance.services.policy_lint import MAX_DEPTH, MAX_NODES, LintReport, policy_lint
from governance.services.policy_source import BlockYamlPositions, JsonPositions, MappedPositions

LIMITS = {"max_nodes": MAX_NODES, "max_depth": MAX_DEPTH}
SIGNALS = [("psi", "data_quality", "score"), ("error_rate", "model_perf", "ratio"), ("dp_gap", "fairness", "ratio")]


def large_policy(rules: int = 1_000) -> dict:
    """``rules`` rules, one per system and signal, with thresholds, attribute conditions and references."""
    items = []
    for index in range(rules):
        signal, category, unit = SIGNALS[index % len(SIGNALS)]
        items.append({
            "id": f"sys-{index}-{signal}", "category": category, "severity": "high", "action": "require_review",
            "description": f"Rule {index}: {signal} of system {index} stays under its levels.",
            "when": [{"attribute": "system", "op": "==", "value": f"system-{index}"}],
            "thresholds": {"signal": signal, "category": category, "direction": "above", "unit": unit,
                           "levels": {"warning": 0.1, "critical": 0.2}},
            "references": [{"framework": "eu_ai_act", "ref": "Art. 15"},
                           {"framework": "nist_ai_rmf", "ref": "MEASURE 2.5"}],
        })  # fmt: skip
    return {
        "apiVersion": "vigil/v1",
        "kind": "Policy",
        "metadata": {"id": "large", "name": "Large policy"},
        "spec": {"scope": {"risk_class": ["limited"]}, "default_action": "allow", "rules": items},
    }


def with_mistakes(document: dict) -> dict:
    """Three findings deep in the policy: an unknown reference, a ratio of 90 and a duplicate rule id."""
    document = copy.deepcopy(document)
    rules = document["spec"]["rules"]
    rules[873]["references"][1]["ref"] = "MEASURE 2.99"
    rules[911]["thresholds"]["levels"]["critical"] = 90
    rules[955]["id"] = rules[12]["id"]
    return document


def position(text: str, needle: str, occurrence: int = 1, *, shift: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the ``occurrence``-th ``needle`` in ``text``, ``shift`` characters on."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    return line_and_column(text, index + shift)


def line_and_column(text: str, index: int) -> tuple[int, int]:
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def at(report: LintReport, name: str) -> list[tuple[str, int | None, int | None]]:
    return [(f.path, f.line, f.column) for f in report.findings if f.name == name]


def reader(text: str, filename: str):
    return lint_module._parse_text(text, filename).positions


# --- positions of findings deep in large documents
def test_findings_deep_in_a_1000_rule_block_yaml_policy_are_at_their_line_and_column():
    text = yaml.safe_dump(with_mistakes(large_policy()), sort_keys=False, width=80)
    assert isinstance(reader(text, "p.yaml"), BlockYamlPositions)  # the fast reader, folded descriptions and all

    report = policy_lint(text=text, filename="p.yaml")

    assert at(report, "unknown-reference") == [("spec.rules.873.references.1.ref", *position(text, "MEASURE 2.99"))]
    critical = position(text, "critical: 90", shift=len("critical: "))
    assert at(report, "threshold-range") == [("spec.rules.911.thresholds.levels.critical", *critical)]
    duplicate = [f for f in report.findings if f.name == "duplicate-id"][0]
    assert (duplicate.path, duplicate.line, duplicate.column) == (
        "spec.rules.955.id",
        *position(text, "id: sys-12-psi", occurrence=2, shift=len("id: ")),
    )
    # The first rule with that id: its mapping starts at its first key, after the "- ".
    assert (duplicate.related[0].line, duplicate.related[0].column) == position(text, "- id: sys-12-psi", shift=2)


@pytest.mark.parametrize("indent", [None, 1, 2])
def test_findings_deep_in_a_1000_rule_json_policy_are_at_their_line_and_column(indent):
    text = json.dumps(with_mistakes(large_policy()), indent=indent)
    assert isinstance(reader(text, "p.json"), JsonPositions)

    report = policy_lint(text=text, filename="p.json")

    assert at(report, "unknown-reference") == [("spec.rules.873.references.1.ref", *position(text, '"MEASURE 2.99"'))]
    critical = position(text, '"critical": 90', shift=len('"critical": '))
    assert at(report, "threshold-range") == [("spec.rules.911.thresholds.levels.critical", *critical)]
    duplicate = [f for f in report.findings if f.name == "duplicate-id"][0]
    assert (duplicate.line, duplicate.column) == position(text, '"sys-12-psi"', occurrence=2)
    # The first rule with that id: its object starts at the "{" before its first key.
    first_rule = text.rindex("{", 0, text.index('"id": "sys-12-psi"'))
    assert (duplicate.related[0].line, duplicate.related[0].column) == line_and_column(text, first_rule)


def test_findings_deep_in_a_flow_style_policy_come_from_the_complete_reader_at_the_same_places():
    document = large_policy(300)
    document["spec"]["rules"][250]["references"][0]["ref"] = "Art. 200"
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=100)
    assert isinstance(reader(text, "p.yaml"), MappedPositions)

    report = policy_lint(text=text, filename="p.yaml")

    assert at(report, "unknown-reference") == [("spec.rules.250.references.0.ref", *position(text, "Art. 200"))]


def test_an_alias_is_located_at_its_anchor_and_a_multi_line_string_does_not_shift_what_follows():
    head = "apiVersion: vigil/v1\nkind: Policy\nmetadata: {id: a, name: A}\nspec:\n  default_action: allow\n  rules:\n"
    rule = (
        "  - id: r{n}\n    category: security\n    severity: high\n    action: deny\n"
        "    description: 'a description that goes on\n\n      over several lines'\n"
        "    references: {refs}\n"
    )
    text = head + rule.format(n=0, refs="&cited [{framework: eu_ai_act, ref: Art. 200}]")
    text += "".join(rule.format(n=n, refs="*cited") for n in range(1, 40))

    report = policy_lint(text=text, filename="p.yaml")

    places = {(line, column) for _, line, column in at(report, "unknown-reference")}
    assert len(at(report, "unknown-reference")) == 40
    assert places == {position(text, "Art. 200")}
    duplicate_free = policy_lint(text=text.replace("*cited", "[]"), filename="p.yaml")
    assert at(duplicate_free, "unknown-reference") == [("spec.rules.0.references.0.ref", *position(text, "Art. 200"))]


def test_a_block_yaml_policy_with_comments_quotes_and_folded_text_keeps_exact_positions():
    text = (
        "# a policy\n---\napiVersion: vigil/v1   # the format\nkind: 'Policy'\nmetadata:\n  id: a\n  name: \"A\"\n"
        "  description: a plain description\n    folded over\n\n    three lines\nspec:\n  default_action: allow\n"
        "  rules:\n  - id: r\n    category: security\n    severity: high\n    action: deny\n    when: []\n"
        "    references:\n      - framework: eu_ai_act\n        ref: 'Art. 200' # wrong\n"
    )
    assert isinstance(reader(text, "p.yaml"), BlockYamlPositions)

    report = policy_lint(text=text, filename="p.yaml")

    assert report.document["metadata"]["description"] == "a plain description folded over\nthree lines"
    assert at(report, "unknown-reference") == [("spec.rules.0.references.0.ref", *position(text, "'Art. 200'"))]


# --- what the fast readers leave to the complete reader
@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',  # duplicate key: a syntax finding
        '{"a": 1e5}',  # YAML 1.1 reads 1e5 as a string
        '{"a": 1.5e3}',
        '{"a": 1.0e+400}',  # overflows to infinity: a syntax finding
        '{"a": "\\ud83d\\ude00"}',  # YAML keeps an escaped surrogate pair as two code points
        '{"a":\t1}',
        '{"a": "x\u2028y"}',
        '{"a"\n: 1}',
        '{"' + "k" * 200 + '": 1}',
        "[" * 70 + "]" * 70,
    ],
)
def test_json_the_fast_reader_declines_what_yaml_reads_differently(text):
    assert policy_source.read_json(text, strict=False, **LIMITS) is None


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",
        "a: [1, 2]\n",
        "a: !!str 1\n",
        "a: 1\na: 2\n",
        "yes: 1\n",
        "a: 2024-01-01\n",
        "a: .inf\n",
        "a: 1.0e+400\n",
        "a: 0x10\n",
        "a: |\n  text\n",
        'a: "tab\\there"\n',
        "a:\nb: 1\n",
        "a: 1\n\tb: 2\n",
        "a: 1\n...\n",
        "%YAML 1.1\n---\na: 1\n",
        "plain scalar\n",
        "a: b: c\n",
        "- - a\n",
        "<<: {a: 1}\n",
        "a: 1\r2\n",
        "\ufeffa: 1\n",
    ],
)
def test_yaml_the_fast_reader_declines_anything_outside_its_subset(text):
    assert policy_source.read_block_yaml(text, **LIMITS) is None


def test_a_declined_json_text_is_still_linted_by_the_complete_reader():
    text = '{\n  "apiVersion": "vigil/v1",\n  "apiVersion": "vigil/v1",\n  "kind": "Policy"\n}'

    report = policy_lint(text=text, filename="p.json")

    assert at(report, "syntax") == [("apiVersion", 3, 3)]


# --- the fast readers agree with the complete reader
keys = st.sampled_from(["id", "name", "value", "op", "when", "rules", "a_b", "x-y", "k.v", "yes", "null", "1", "a b"])
words = st.text(st.sampled_from("abcxyz019 -_.:#'\"/é"), max_size=30)
strings = words | st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", " lead", "trail ", "a: b", "a #b", "#x", "- x", "'q'", '"dq"', "yes", "~", "1e5", "1_0", "0o7", "2024-01-01",
     "x\ny", "x\n\ny", "a" * 90 + " " + "b" * 30, "Art. 15", "é ✓ 💥"]
)  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | strings
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=30,
)
documents = st.dictionaries(keys, values, min_size=1, max_size=5) | st.lists(values, min_size=1, max_size=4)


def all_paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from all_paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from all_paths(value, (*prefix, index))


def assert_same_reading(fast: policy_source.SourceRead, text: str) -> None:
    complete = lint_module._read_nodes(text)
    assert complete.findings == []
    assert json.dumps(fast.data) == json.dumps(complete.data)  # types and key order too
    for path in all_paths(complete.data):
        for probe in (path, (*path, "missing"), (*path, 10**6)):
            assert fast.positions.locate(probe) == complete.positions.locate(probe), probe
            assert fast.positions.locate(probe, key=True) == complete.positions.locate(probe, key=True), probe


@settings(max_examples=150)
@given(documents, st.sampled_from([None, 0, 1, 2]), st.booleans(), st.sampled_from([None, (",", ":")]))
def test_json_data_and_every_position_agree_with_the_complete_reader(document, indent, ensure_ascii, separators):
    text = json.dumps(document, indent=indent, ensure_ascii=ensure_ascii, separators=separators)

    fast = policy_source.read_json(text, strict=True, **LIMITS)

    if fast is not None:
        assert_same_reading(fast, text)


@settings(max_examples=200)
@given(documents, st.integers(2, 4), st.sampled_from([20, 60, 200]), st.booleans(), st.booleans())
def test_block_yaml_data_and_every_position_agree_with_the_complete_reader(
    document, indent, width, allow_unicode, explicit_start
):
    text = yaml.safe_dump(
        document, indent=indent, width=width, allow_unicode=allow_unicode, explicit_start=explicit_start
    )

    fast = policy_source.read_block_yaml(text, **LIMITS)

    if fast is not None:
        assert_same_reading(fast, text)


def test_the_fast_readers_take_the_common_layouts_of_real_policies():
    document = with_mistakes(large_policy())
    for text in (
        yaml.safe_dump(document, sort_keys=False),
        yaml.safe_dump(document, sort_keys=True, indent=4, width=40, allow_unicode=True, explicit_start=True),
    ):
        assert policy_source.read_block_yaml(text, **LIMITS) is not None
    for text in (json.dumps(document), json.dumps(document, indent=2), json.dumps(document, indent=1)):
        assert policy_source.read_json(text, strict=True, **LIMITS) is not None


# --- the collector pause
def test_a_lint_leaves_the_garbage_collector_as_it_found_it():
    text = yaml.safe_dump(large_policy(20), sort_keys=False)
    assert gc.isenabled()

    policy_lint(text=text)
    policy_lint(text="{not: [closed")
    assert gc.isenabled()

    gc.disable()
    try:
        policy_lint(text=text)
        assert not gc.isenabled()
    finally:
        gc.enable()
