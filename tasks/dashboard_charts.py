"""SVG for the function dashboard (server-rendered, no JavaScript): coordinates, colours and the repeated
elements.

The heatmap cells and error bars (up to 50 functions × 60 buckets) are built here with
``format_html_join``, which escapes every value, rather than by a template loop: the template engine
costs a few microseconds per variable, and these elements are most of the page.
"""

from __future__ import annotations

import math

from django.utils.html import format_html_join
from django.utils.safestring import SafeString

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
                (
                    f"{index * width:.1f}",
                    f"{SPARK_HEIGHT - height:.1f}",
                    bar_width,
                    f"{height:.1f}",
                    f"{bucket['errors']} errors / {bucket['invocations']} calls ({bucket['error_rate']:.1%})",
                )
            )
    return format_html_join(
        "",
        '<rect class="error-bar" x="{}" y="{}" width="{}" height="{}" fill="#cf222e"><title>{}</title></rect>',
        bars,
    )


def _heatmap_cells(function: dict, starts: list, cell_width: float) -> SafeString:
    """``<rect class="heatmap-cell">`` per bucket the function ran in, coloured by its p95."""
    width = f"{cell_width:.2f}"
    height = HEATMAP_ROW_HEIGHT - 1
    cells = [
        (
            f"{index * cell_width:.2f}",
            width,
            height,
            p95_colour(bucket["p95_ms"]),
            f"{function['name']} · {starts[index]:%Y-%m-%d %H:%M} UTC · p95 {bucket['p95_ms']:.1f} ms · "
            f"{bucket['invocations']} calls · {bucket['errors']} errors",
        )
        for index, bucket in enumerate(function["buckets"])
        if bucket["p95_ms"] is not None
    ]
    return format_html_join(
        "",
        '<rect class="heatmap-cell" x="{}" y="0" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
        cells,
    )


def chart_rows(dashboard: dict) -> list[dict]:
    """One row per function: heatmap cells, the volume sparkline's points and the error-rate bars."""
    starts = dashboard["bucket_starts"]
    cell_width = HEATMAP_WIDTH / len(starts)
    rows = []
    for row_index, function in enumerate(dashboard["functions"]):
        rows.append(
            {
                **function,
                "y": row_index * HEATMAP_ROW_HEIGHT,
                "text_y": row_index * HEATMAP_ROW_HEIGHT + HEATMAP_ROW_HEIGHT - 3,
                "cells": _heatmap_cells(function, starts, cell_width),
                "error_pct": _percent(function["error_rate"]),
                "cold_start_pct": _percent(function["cold_start_rate"]),
                "sparkline": _sparkline([bucket["invocations"] for bucket in function["buckets"]]),
                "error_bars": _error_bars(function["buckets"]),
            }
        )
    return rows
