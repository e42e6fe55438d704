"""Template filters for figures shown in the admin."""

from __future__ import annotations

from django import template

register = template.Library()


def duration_text(seconds: float | None) -> str:
    """A duration for people: "—" when not measured, then s, min, h or d."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


register.filter("duration_seconds", duration_text)
