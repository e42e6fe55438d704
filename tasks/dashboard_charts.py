"""SVG for the function dashboard (server-rendered, no JavaScript): coordinates, colours and the repeated
elements.

The heatmap cells and error bars (up to 50 functions × 60 buckets) are built here as strings rather
than by a template loop: the template engine costs microseconds per variable, and these elements are
most of the page. The only text not produced here is the function name, escaped once per row.
"""

from __future__ import annotations

import math

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

HEATMAP_WIDTH = 720
HEATMAP_ROW_HEIGHT = 14
SPARK_WIDTH = 160
SPARK_HEIGHT = 24
EMPTY_CELL = "#eaeef2"


def p95_colour(p95_ms: float | None) -> str:
    """Green (≤ 1 ms) through yellow to red (≥ 10 s) on a log scale; grey where the function did not run."""
    if p95_ms is None:
        return EMPTY_CELL
    fraction = min(max(math.log10(max(p95_ms, 1.0)) / 4, 0.0), 1.0)
    return f"hsl({120 * (1 - fraction):.0f}, 70%, 45%)"


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


def _milliseconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _short(name: str, length: int = 46) -> str:
    """``name`` cut to ``length`` characters with an ellipsis, as the heatmap's label column fits."""
    return name if len(name) <= length else name[: length - 1] + "…"


def _sparkline(values: list[int]) -> str:
    top = max(values) or 1
    step = SPARK_WIDTH / max(len(values) - 1, 1)
    return " ".join(
        f"{index * step:.1f},{SPARK_HEIGHT - 1 - (SPARK_HEIGHT - 2) * value / top:.1f}"
        for index, value in enumerate(values)
    )


def _error_bars(buckets: list[dict]) -> SafeString:
    """``<rect class="error-bar">`` per bucket with errors, height = error rate."""
    width = SPARK_WIDTH / len(buckets)
    bar_width = f"{max(width - 0.5, 1):.1f}"
    bars = []
    for index, bucket in enumerate(buckets):
        if bucket["errors"]:
            height = max(2.0, (SPARK_HEIGHT - 2) * bucket["error_rate"])
            bars.append(
                f'<rect class="error-bar" x="{index * width:.1f}" y="{SPARK_HEIGHT - height:.1f}" '
                f'width="{bar_width}" height="{height:.1f}" fill="#cf222e"><title>{bucket["errors"]} errors / '
                f"{bucket['invocations']} calls ({bucket['error_rate']:.1%})</title></rect>"
            )
    return mark_safe("".join(bars))  # noqa: S308 - numbers formatted above, nothing else


def _heatmap_cells(function: dict, starts: list[str], cell_width: float) -> SafeString:
    """``<rect class="heatmap-cell">`` per bucket the function ran in, coloured by its p95."""
    name = escape(function["name"])
    width = f"{cell_width:.2f}"
    height = HEATMAP_ROW_HEIGHT - 1
    cells = [
        f'<rect class="heatmap-cell" x="{index * cell_width:.2f}" y="0" width="{width}" height="{height}" '
        f'fill="{p95_colour(bucket["p95_ms"])}"><title>{name} · {starts[index]} UTC · p95 {bucket["p95_ms"]:.1f} ms · '
        f"{bucket['invocations']} calls · {bucket['errors']} errors</title></rect>"
        for index, bucket in enumerate(function["buckets"])
        if bucket["p95_ms"] is not None
    ]
    return mark_safe("".join(cells))  # noqa: S308 - numbers and colours formatted here, the name escaped


def chart_rows(dashboard: dict) -> list[dict]:
    """One row per function: heatmap cells, the volume sparkline's points and the error-rate bars."""
    starts = [f"{start:%Y-%m-%d %H:%M}" for start in dashboard["bucket_starts"]]
    cell_width = HEATMAP_WIDTH / len(starts)
    rows = []
    for row_index, function in enumerate(dashboard["functions"]):
        rows.append(
            {
                **function,
                "y": row_index * HEATMAP_ROW_HEIGHT,
                "text_y": row_index * HEATMAP_ROW_HEIGHT + HEATMAP_ROW_HEIGHT - 3,
                "cells": _heatmap_cells(function, starts, cell_width),
                "short_name": _short(function["name"]),
                "p50_text": _milliseconds(function["p50_ms"]),
                "p95_text": _milliseconds(function["p95_ms"]),
                "p99_text": _milliseconds(function["p99_ms"]),
                "error_pct": _percent(function["error_rate"]),
                "cold_start_pct": _percent(function["cold_start_rate"]),
                "sparkline": _sparkline([bucket["invocations"] for bucket in function["buckets"]]),
                "error_bars": _error_bars(function["buckets"]),
            }
        )
    return rows
