"""SVG geometry for the function dashboard (server-rendered, no JavaScript): coordinates and colours only."""

from __future__ import annotations

import math

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


def _error_bars(buckets: list[dict]) -> list[dict]:
    width = SPARK_WIDTH / len(buckets)
    bars = []
    for index, bucket in enumerate(buckets):
        if bucket["errors"]:
            height = max(2.0, (SPARK_HEIGHT - 2) * bucket["error_rate"])
            bars.append(
                {
                    "x": f"{index * width:.1f}",
                    "y": f"{SPARK_HEIGHT - height:.1f}",
                    "width": f"{max(width - 0.5, 1):.1f}",
                    "height": f"{height:.1f}",
                    "title": f"{bucket['errors']} errors / {bucket['invocations']} calls ({bucket['error_rate']:.1%})",
                }
            )
    return bars


def chart_rows(dashboard: dict) -> list[dict]:
    """One row per function: heatmap cells, the volume sparkline's points and the error-rate bars."""
    starts = dashboard["bucket_starts"]
    cell_width = HEATMAP_WIDTH / len(starts)
    rows = []
    for row_index, function in enumerate(dashboard["functions"]):
        cells = []
        for index, bucket in enumerate(function["buckets"]):
            if bucket["p95_ms"] is None:
                continue
            cells.append(
                {
                    "x": f"{index * cell_width:.2f}",
                    "width": f"{cell_width:.2f}",
                    "fill": p95_colour(bucket["p95_ms"]),
                    "title": (
                        f"{function['name']} · {starts[index]:%Y-%m-%d %H:%M} UTC · p95 {bucket['p95_ms']:.1f} ms · "
                        f"{bucket['invocations']} calls · {bucket['errors']} errors"
                    ),
                }
            )
        rows.append(
            {
                **function,
                "y": row_index * HEATMAP_ROW_HEIGHT,
                "text_y": row_index * HEATMAP_ROW_HEIGHT + HEATMAP_ROW_HEIGHT - 3,
                "cells": cells,
                "error_pct": _percent(function["error_rate"]),
                "cold_start_pct": _percent(function["cold_start_rate"]),
                "sparkline": _sparkline([bucket["invocations"] for bucket in function["buckets"]]),
                "error_bars": _error_bars(function["buckets"]),
            }
        )
    return rows
