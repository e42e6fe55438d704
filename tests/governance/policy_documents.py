"""Policy documents for the policy tests: a small valid one, and the ways to change or break it."""

from __future__ import annotations

import copy
from typing import Any

import yaml

KEY = "fairness-guard"


def rule(rule_id: str, *, value: float = 0.1, action: str = "require_review", signal: str = "dp_gap") -> dict:
    return {
        "id": rule_id,
        "category": "fairness",
        "severity": "high",
        "when": [
            {"signal": signal, "category": "fairness", "aggregate": "max", "window": "1h", "op": ">",
             "value": value, "unit": "ratio"}
        ],
        "action": action,
        "references": [{"framework": "eu_ai_act", "ref": "Art. 10"}],
    }  # fmt: skip


def policy_document(
    *,
    key: str = KEY,
    name: str = "Fairness guard",
    owner_team: str | None = "fraud-ml",
    rules: list[dict] | None = None,
    default_action: str = "allow",
    description: str | None = None,
) -> dict[str, Any]:
    """Lints without errors (warnings: regulatory gaps) unless ``rules`` break it."""
    metadata: dict[str, Any] = {"id": key, "name": name}
    if description is not None:
        metadata["description"] = description
    if owner_team is not None:
        metadata["owner_team"] = owner_team
    return {
        "apiVersion": "vigil/v1",
        "kind": "Policy",
        "metadata": metadata,
        "spec": {"default_action": default_action, "rules": copy.deepcopy(rules or [rule("dp-gap")])},
    }


def policy_text(**kwargs: Any) -> str:
    return yaml.safe_dump(policy_document(**kwargs), sort_keys=False)


def invalid_policy_text(**kwargs: Any) -> str:
    """Two rules with one id: a ``duplicate-id`` error."""
    return policy_text(rules=[rule("dp-gap"), rule("dp-gap", value=0.2, signal="eo_gap")], **kwargs)
