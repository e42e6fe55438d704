"""Hypothesis: the linter answers every input with a structured report, and the fast format check never
accepts what the published JSON Schema rejects."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from governance.services import policy_format
from governance.services.policy_lint import LintReport, policy_lint, policy_schema

CLEAN = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "policies" / "clean.yaml").read_text())

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=40,
)
# Values the format uses, so mutations often land on almost-valid documents.
plausible = st.sampled_from(
    ["allow", "deny", "escalate", "high", "psi", "exact_match", "accuracy", "<", ">=", "in", "ratio", "percent",
     "Art. 14", "MEASURE 2.5", "A.6.2.4", "above", "below", 0, 1, 0.5, 90, -1, [], {}, None, True, "risk_class"]
)  # fmt: skip


def assert_structured(report: LintReport) -> None:
    body = json.loads(json.dumps(report.as_json()))
    assert set(body["counts"]) == {"error", "warning", "info"}
    assert sum(body["counts"].values()) == len(body["findings"])
    assert not any(f["code"] == "VGL099" for f in body["findings"]), body["findings"]
    json.dumps(report.as_sarif())
    report.as_text()


def paths(document, prefix=()):
    yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from paths(value, (*prefix, index))


ALL_PATHS = [p for p in paths(CLEAN) if p]


@st.composite
def mutated_policies(draw):
    document = copy.deepcopy(CLEAN)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = document
        try:
            for part in path[:-1]:
                parent = parent[part]
            operation = draw(st.sampled_from(["replace", "plausible", "delete", "duplicate"]))
            if operation == "delete":
                del parent[path[-1]]
            elif operation == "duplicate" and isinstance(parent, list):
                parent.append(copy.deepcopy(parent[path[-1]]))
            else:
                parent[path[-1]] = draw(values if operation == "replace" else plausible)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the path
    return document


@settings(max_examples=150, deadline=None)
@given(document=values)
def test_random_documents_never_crash_the_linter(document):
    assert_structured(policy_lint(document=document))


@settings(max_examples=150, deadline=None)
@given(document=mutated_policies())
def test_mutated_policies_never_crash_the_linter(document):
    assert_structured(policy_lint(document=document))


@settings(max_examples=100, deadline=None)
@given(document=mutated_policies(), as_json=st.booleans())
def test_mutated_policy_texts_never_crash_the_linter(document, as_json):
    text = json.dumps(document, default=str) if as_json else yaml.safe_dump(document, sort_keys=False)

    assert_structured(policy_lint(text=text, filename="p.json" if as_json else "p.yaml"))


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=300))
def test_random_text_never_crashes_the_linter(text):
    assert_structured(policy_lint(text=text))


@settings(max_examples=200, deadline=None)
@given(document=mutated_policies())
def test_the_fast_format_check_never_accepts_what_the_schema_rejects(document):
    schema = policy_schema()
    rule_validator = Draft202012Validator(
        {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": "#/$defs/rule"}
    )
    spec = document.get("spec") if isinstance(document, dict) else None
    rules = spec.get("rules") if isinstance(spec, dict) else None
    if isinstance(rules, list):
        for rule in rules:
            if policy_format.rule_conforms(rule):
                assert not list(rule_validator.iter_errors(rule)), rule
        head = {**document, "spec": {**spec, "rules": []}}
        if policy_format.head_conforms(head):
            assert Draft202012Validator(policy_schema()).is_valid(head), head
