"""The built-in detection rules, declared once. A data migration seeds them and ``post_migrate``
re-ensures them after a ``flush``; operators then switch rules on and off and tune their severity
floor in the admin, and tune their numbers in the config registry (``DetectionRule.config_key``).

Semantics (``oversight.processing`` implements them, the generator plants scenarios for them):

* ``threshold:<category>`` — one event whose value crosses the signal's *critical* level.
* ``rate:<category>`` — ``min_breaches`` events of one signal of one system crossing the *warning*
  level inside ``window_seconds`` (``oversight.rate_rule``); fewer keep the alert pending.
* ``compound`` — ``oversight.compound_min_signals`` distinct signals of one system crossing their
  warning level inside ``oversight.correlation_window_seconds``.
* ``absence:heartbeat`` — a system that sends ``heartbeat`` events sends none for
  ``oversight.absence_window_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps as global_apps

from governance.choices import Severity
from oversight.models import Category


@dataclass(frozen=True)
class RuleSpec:
    name: str
    kind: str
    category: str
    signal: str
    config_key: str
    severity: str
    description: str


CATEGORIES = tuple(Category.values)
COMPOUND_RULE = "compound"
ABSENCE_RULE = "absence:heartbeat"


def threshold_rule_name(category: str) -> str:
    return f"threshold:{category}"


def rate_rule_name(category: str) -> str:
    return f"rate:{category}"


BUILTIN_RULES: tuple[RuleSpec, ...] = (
    *(
        RuleSpec(
            name=threshold_rule_name(category),
            kind="threshold",
            category=category,
            signal="",
            config_key=f"oversight.thresholds.{category}",
            severity=Severity.HIGH,
            description=f"A {category.replace('_', ' ')} signal crosses its critical level.",
        )
        for category in CATEGORIES
    ),
    *(
        RuleSpec(
            name=rate_rule_name(category),
            kind="rate",
            category=category,
            signal="",
            config_key="oversight.rate_rule",
            severity=Severity.LOW,
            description=f"A {category.replace('_', ' ')} signal stays past its warning level (sustained drift).",
        )
        for category in CATEGORIES
    ),
    RuleSpec(
        name=COMPOUND_RULE,
        kind="compound",
        category="",
        signal="",
        config_key="oversight.compound_min_signals",
        severity=Severity.HIGH,
        description="Several distinct signals of one system cross their warning level inside the correlation window.",
    ),
    RuleSpec(
        name=ABSENCE_RULE,
        kind="absence",
        category="",
        signal="heartbeat",
        config_key="oversight.absence_window_seconds",
        severity=Severity.HIGH,
        description="A system that sends heartbeats has gone silent for the absence window.",
    ),
)


def ensure_builtin_rules(apps=global_apps, schema_editor=None) -> None:
    """Create the built-in rules that are missing. Existing rows (tuned by operators) are untouched."""
    DetectionRule = apps.get_model("oversight", "DetectionRule")
    present = set(DetectionRule.objects.values_list("name", flat=True))
    DetectionRule.objects.bulk_create(
        [
            DetectionRule(
                name=spec.name,
                kind=spec.kind,
                category=spec.category,
                signal=spec.signal,
                config_key=spec.config_key,
                severity=spec.severity,
                description=spec.description,
            )
            for spec in BUILTIN_RULES
            if spec.name not in present
        ]
    )


def ensure_after_migrate(sender, using="default", apps=global_apps, **kwargs) -> None:
    from django.db import connections

    if "oversight_detectionrule" in connections[using].introspection.table_names():
        ensure_builtin_rules(apps)
