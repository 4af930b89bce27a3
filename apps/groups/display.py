"""How analytics numbers are shown (shared by the group Comparison page, the version
Analytics tab and the dashboard): ranges, server-rendered SVG line charts, and the
strings for rates, latencies and metrics with their 95 % intervals. No ORM."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

RANGES = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "24h"
DASH = "\u2013"  # en dash: ranges and missing values
CHART_W, CHART_H, PAD_L, PAD_B, PAD_T = 640, 200, 48, 24, 10


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def svg_chart(
    hours: list[datetime], series: list[dict[str, Any]], key: str
) -> dict[str, Any]:
    """Polylines (x, y in the SVG box) for each member's hourly `key`; gaps where a
    value is missing. Pure layout: the numbers are the ones given."""
    values = [v for s in series for v in s["values"] if v is not None]
    top = _nice_max(max(values, default=0.0))
    inner_w, inner_h = CHART_W - PAD_L - 8, CHART_H - PAD_B - PAD_T
    step = inner_w / max(len(hours) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return round(PAD_L + i * step, 1), round(PAD_T + inner_h * (1 - v / top), 1)

    lines = []
    for index, s in enumerate(series):
        segments: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(s["values"]):
            if v is None:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append(xy(i, v))
        lines.append(
            {
                "label": s["label"],
                "css": f"cmp-s{index % 6}",
                "segments": [
                    " ".join(f"{x},{y}" for x, y in seg)
                    for seg in segments
                    if len(seg) > 1
                ],
                "dots": [
                    {"x": x, "y": y}
                    for seg in segments
                    if len(seg) == 1
                    for x, y in seg
                ],
            }
        )
    ticks = [
        {"y": PAD_T + inner_h - f * inner_h, "label": f"{top * f:g}"}
        for f in (0, 0.5, 1)
    ]
    return {
        "width": CHART_W,
        "height": CHART_H,
        "lines": lines,
        "ticks": ticks,
        "x0": PAD_L,
        "x1": CHART_W - 8,
        "y_base": PAD_T + inner_h,
        "first": hours[0] if hours else None,
        "last": hours[-1] if hours else None,
        "label_y": CHART_H - 6,
    }


def ms(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f} ms"


def rate(est: dict[str, Any]) -> str:
    if est["value"] is None:
        return DASH
    return f"{est['value'] * 100:.2f} % [{est['low'] * 100:.2f}{DASH}{est['high'] * 100:.2f}]"


def metric_text(est: dict[str, Any], metric: str) -> str:
    if est["value"] is None:
        return DASH + " (no labelled requests)" if metric != "error_rate" else DASH
    if metric in ("mae", "rmse", "auc", "f1"):
        low = DASH if est["low"] is None else f"{est['low']:.4f}"
        high = DASH if est["high"] is None else f"{est['high']:.4f}"
        return f"{est['value']:.4f} [{low}{DASH}{high}] (n={est['n']})"
    if est["low"] is None:
        return f"{est['value'] * 100:.2f} % (n={est['n']})"
    return f"{rate(est)} (n={est['n']})"


def member_display(m: dict[str, Any], metric: str | None = None) -> dict[str, str]:
    """The strings the cards show (95 % intervals in brackets)."""
    return {
        "error_rate": rate(m["error_rate"]),
        "p50": ms(m["p50_ms"]),
        "p95": ms(m["p95_ms"]),
        "p99": ms(m["p99_ms"]),
        "mean": ms(m["mean_latency_ms"]),
        "primary": metric_text(m["primary"], metric or m.get("metric", "")),
    }
