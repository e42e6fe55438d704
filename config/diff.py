"""A readable structural diff of two JSON values (for config history, audit entries and the admin)."""

from __future__ import annotations

from typing import Any

_MISSING = object()


def json_diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """Changes from ``old`` to ``new`` as ``[{"path", "op": added|removed|changed, "from", "to"}]``.

    Objects are compared key by key, lists index by index; anything else compares as a whole.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[dict[str, Any]] = []
        for key in sorted(old.keys() | new.keys(), key=str):
            child = f"{path}.{key}" if path else str(key)
            changes.extend(_compare(old.get(key, _MISSING), new.get(key, _MISSING), child))
        return changes
    if isinstance(old, list) and isinstance(new, list):
        changes = []
        for index in range(max(len(old), len(new))):
            child = f"{path}.{index}" if path else str(index)
            changes.extend(
                _compare(
                    old[index] if index < len(old) else _MISSING, new[index] if index < len(new) else _MISSING, child
                )
            )
        return changes
    return [] if old == new else [{"path": path or "(value)", "op": "changed", "from": old, "to": new}]


def _compare(old: Any, new: Any, path: str) -> list[dict[str, Any]]:
    if old is _MISSING:
        return [{"path": path, "op": "added", "from": None, "to": new}]
    if new is _MISSING:
        return [{"path": path, "op": "removed", "from": old, "to": None}]
    return json_diff(old, new, path)


def describe_diff(changes: list[dict[str, Any]]) -> list[str]:
    """One human line per change, e.g. ``null_rate.critical: 0.2 → 0.3``."""
    lines = []
    for change in changes:
        if change["op"] == "added":
            lines.append(f"{change['path']}: added {change['to']!r}")
        elif change["op"] == "removed":
            lines.append(f"{change['path']}: removed (was {change['from']!r})")
        else:
            lines.append(f"{change['path']}: {change['from']!r} → {change['to']!r}")
    return lines
