"""A fast conformance check of the policy format, mirroring ``governance/schemas/policy.schema.json``.

The JSON Schema stays the published contract and the source of every schema message; ``jsonschema`` needs
milliseconds per rule, which a 1,000-rule policy cannot afford on every lint. These plain-Python predicates
answer only "does this conform?" for the document head and for one rule; the linter runs ``jsonschema``
just on the parts they reject, to explain why. A property test keeps both in agreement (whatever these
accept, the schema accepts).
"""

from __future__ import annotations

import re
from typing import Any

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,98}[a-z0-9])?$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,119}$")
_WINDOW = re.compile(r"^[1-9][0-9]{0,5}(s|m|h|d)$")

RISK_CLASSES = frozenset({"prohibited", "high", "limited", "minimal"})
ENTITY_TYPES = frozenset({"model", "system", "dataset"})
ACTIONS = frozenset({"allow", "deny", "require_review", "escalate"})
CATEGORIES = frozenset({"data_quality", "model_perf", "fairness", "security", "compliance"})
SEVERITIES = frozenset({"critical", "high", "medium", "low", "info"})
UNITS = frozenset({"ratio", "score", "count", "ms", "seconds", "percent"})
AGGREGATES = frozenset({"last", "min", "max", "avg", "sum", "count", "p50", "p95", "p99"})
NUMERIC_OPS = frozenset({"<", "<=", ">", ">=", "==", "!="})
ATTRIBUTE_OPS = frozenset({"in", "not_in", "==", "!="})
ATTRIBUTES = frozenset({"risk_class", "entity_type", "team", "system"})
FRAMEWORKS = frozenset({"eu_ai_act", "nist_ai_rmf", "iso_42001"})

_METADATA_KEYS = frozenset({"id", "name", "description", "owner_team", "labels"})
_SPEC_KEYS = frozenset({"scope", "default_action", "rules"})
_RULE_KEYS = frozenset({"id", "description", "category", "severity", "when", "thresholds", "action", "references"})
_METRIC_KEYS = frozenset({"metric", "suite", "op", "value", "unit"})
_SIGNAL_KEYS = frozenset({"signal", "category", "aggregate", "window", "op", "value", "unit"})
_THRESHOLD_KEYS = frozenset(
    {"metric", "suite", "signal", "category", "aggregate", "window", "direction", "unit", "levels"}
)
_LEVELS = frozenset({"info", "warning", "critical"})
_RULE_REQUIRED = frozenset({"id", "category", "severity", "action"})
_OP_VALUE = frozenset({"op", "value"})
_ATTRIBUTE_KEYS = frozenset({"attribute", "op", "value"})
_REFERENCE_KEYS = frozenset({"framework", "ref", "note"})


def _str(value: Any, max_length: int, min_length: int = 0) -> bool:
    return isinstance(value, str) and min_length <= len(value) <= max_length


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _slug(value: Any) -> bool:
    return isinstance(value, str) and _SLUG.search(value) is not None


def slug_conforms(value: Any) -> bool:
    """Whether ``value`` is a slug as the format defines one (policy and rule ids, team slugs)."""
    return _slug(value)


def _name(value: Any) -> bool:
    return isinstance(value, str) and _NAME.search(value) is not None


def _member(value: Any, allowed: frozenset) -> bool:
    return isinstance(value, str) and value in allowed


def _optional(item: dict, key: str, check) -> bool:
    return key not in item or check(item[key])


def _unique_strings(value: Any, allowed: frozenset | None = None, max_items: int | None = None) -> bool:
    if not isinstance(value, list) or (max_items is not None and len(value) > max_items):
        return False
    if not all(isinstance(v, str) and (allowed is None or v in allowed) for v in value):
        return False
    return len(set(value)) == len(value)


def head_conforms(document: Any) -> bool:
    """The document without its rules (``spec.rules`` must be a list; its items are not looked at)."""
    if not isinstance(document, dict) or set(document) != {"apiVersion", "kind", "metadata", "spec"}:
        return False
    if document["apiVersion"] != "vigil/v1" or document["kind"] != "Policy":
        return False
    metadata, spec = document["metadata"], document["spec"]
    if not isinstance(metadata, dict) or not set(metadata) <= _METADATA_KEYS or not {"id", "name"} <= set(metadata):
        return False
    labels = metadata.get("labels", {})
    if not (
        _slug(metadata["id"])
        and _str(metadata["name"], 200, 1)
        and _optional(metadata, "description", lambda v: _str(v, 5000))
        and _optional(metadata, "owner_team", _slug)
        and isinstance(labels, dict)
        and len(labels) <= 50
        and all(_str(v, 200) for v in labels.values())
    ):
        return False
    if not isinstance(spec, dict) or not set(spec) <= _SPEC_KEYS or not {"default_action", "rules"} <= set(spec):
        return False
    scope = spec.get("scope", {})
    if not isinstance(scope, dict) or not set(scope) <= {"risk_class", "entity_type"}:
        return False
    if not (
        _optional(scope, "risk_class", lambda v: _unique_strings(v, RISK_CLASSES))
        and _optional(scope, "entity_type", lambda v: _unique_strings(v, ENTITY_TYPES))
    ):
        return False
    return _member(spec["default_action"], ACTIONS) and isinstance(spec["rules"], list) and len(spec["rules"]) <= 5000


def _description(value: Any) -> bool:
    return _str(value, 5000)


def rule_conforms(rule: Any) -> bool:
    """One item of ``spec.rules``."""
    if not isinstance(rule, dict) or not rule.keys() <= _RULE_KEYS or not rule.keys() >= _RULE_REQUIRED:
        return False
    if not (
        _slug(rule["id"])
        and _member(rule["category"], CATEGORIES)
        and _member(rule["severity"], SEVERITIES)
        and _member(rule["action"], ACTIONS)
        and ("description" not in rule or _description(rule["description"]))
    ):
        return False
    when = rule.get("when", [])
    if not isinstance(when, list) or len(when) > 50 or not all(_condition(c) for c in when):
        return False
    if "thresholds" in rule and not _thresholds(rule["thresholds"]):
        return False
    references = rule.get("references", [])
    return isinstance(references, list) and len(references) <= 50 and all(_reference(r) for r in references)


def _window(value: Any) -> bool:
    return isinstance(value, str) and _WINDOW.search(value) is not None


def _category(value: Any) -> bool:
    return _member(value, CATEGORIES)


def _aggregate(value: Any) -> bool:
    return _member(value, AGGREGATES)


def _unit(value: Any) -> bool:
    return _member(value, UNITS)


# The optional fields naming a measured subject, each with its check.
_SUBJECT_FIELDS = (
    ("metric", _name),
    ("suite", _name),
    ("signal", _name),
    ("category", _category),
    ("aggregate", _aggregate),
    ("window", _window),
    ("unit", _unit),
)


def _subject_fields(item: dict) -> bool:
    for key, check in _SUBJECT_FIELDS:  # noqa: SIM110 - a plain loop: all() over a generator costs more per rule
        if key in item and not check(item[key]):
            return False
    return True


def _condition(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    subjects = [key for key in ("metric", "signal", "attribute") if key in item]
    if len(subjects) != 1:
        return False
    if subjects[0] == "attribute":
        return _attribute_condition(item)
    allowed = _METRIC_KEYS if subjects[0] == "metric" else _SIGNAL_KEYS
    if not item.keys() <= allowed or not item.keys() >= _OP_VALUE:
        return False
    return _member(item["op"], NUMERIC_OPS) and _number(item["value"]) and _subject_fields(item)


def _attribute_condition(item: dict) -> bool:
    if not item.keys() <= _ATTRIBUTE_KEYS or not item.keys() >= _OP_VALUE:
        return False
    attribute, op, value = item["attribute"], item["op"], item["value"]
    if not _member(attribute, ATTRIBUTES) or not _member(op, ATTRIBUTE_OPS):
        return False
    if op in {"in", "not_in"}:
        if not _unique_strings(value, max_items=200) or not all(len(v) <= 200 for v in value):
            return False
        values = value
    else:
        if not _str(value, 200):
            return False
        values = [value]
    universe = {"risk_class": RISK_CLASSES, "entity_type": ENTITY_TYPES}.get(attribute)
    return universe is None or all(v in universe for v in values)


def _thresholds(item: Any) -> bool:
    if not isinstance(item, dict) or not item.keys() <= _THRESHOLD_KEYS:
        return False
    if "direction" not in item or "levels" not in item or ("metric" in item) == ("signal" in item):
        return False
    levels = item["levels"]
    if not isinstance(levels, dict) or not levels or not levels.keys() <= _LEVELS:
        return False
    return (
        _member(item["direction"], frozenset({"above", "below"}))
        and all(_number(v) for v in levels.values())
        and _subject_fields(item)
    )


def _reference(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and item.keys() <= _REFERENCE_KEYS
        and "framework" in item
        and "ref" in item
        and _member(item["framework"], FRAMEWORKS)
        and _str(item["ref"], 60, 1)
        and ("note" not in item or _str(item["note"], 500))
    )
