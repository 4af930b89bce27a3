"""Geometry of the SHAP waterfall drawn on an inference's page (pure: no ORM, no
templates). From the base value, each feature's contribution moves the running total
right (it raises the output) or left (it lowers it) until it reaches the output. The
12 largest contributions by |value| get a bar each; the rest share one bar.

Pixel widths are exact (not rounded): the signed widths add up to
(output - base_value) * scale, which the template then prints to two decimals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TOP = 12
POSITIVE = "#d6336c"  # raises the output
NEGATIVE = "#1c7ed6"  # lowers it
MARKER = "#5b6475"

WIDTH = 600.0
LABEL_WIDTH = 175.0
RIGHT_PAD = 16.0
TOP_PAD = 26.0
BOTTOM_PAD = 10.0
ROW = 22.0
BAR = 14.0
LABEL_CHARS = 26

OUTPUT_SPACES = {
    "log_odds": "log-odds",
    "probability": "probability",
    "raw": "raw model output",
}


@dataclass(frozen=True)
class Bar:
    """One row of the waterfall. `start`/`end` are in the model's output space,
    `x`/`width` in pixels; `width` is never negative, the sign is the value's."""

    label: str
    title: str
    value: float
    start: float
    end: float
    x: float
    width: float
    y: float
    colour: str
    positive: bool
    features: int = 1
    names: tuple[str, ...] = ()

    @property
    def signed_width(self) -> float:
        return self.width if self.positive else -self.width

    @property
    def text_y(self) -> float:
        return self.y + BAR / 2 + 4

    @property
    def end_x(self) -> float:
        """Where the running total stands after this bar (the next bar starts here)."""
        return self.x + self.width if self.positive else self.x

    @property
    def connector_bottom(self) -> float:
        return self.y + ROW + BAR


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Waterfall:
    bars: list[Bar]
    base_value: float
    output: float  # base_value + the sum of the values: where the bars end
    reported_output: float  # the explanation's own "output"
    scale: float  # pixels per unit of output
    base_x: float
    output_x: float
    width: float
    height: float
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    base_y: float
    output_y: float
    method: str
    output_space: str
    target: Any
    feature_count: int
    ticks: list[Tick] = field(default_factory=list)

    @property
    def delta(self) -> float:
        """output - base_value: what the contributions add up to."""
        return self.output - self.base_value

    @property
    def residual(self) -> float:
        """How far the values miss the reported output (0 for a sound explanation)."""
        return self.reported_output - self.output

    @property
    def adds_up(self) -> bool:
        tolerance = 1e-6 * max(1.0, abs(self.reported_output))
        return abs(self.residual) <= tolerance

    @property
    def output_space_label(self) -> str:
        return OUTPUT_SPACES.get(self.output_space, self.output_space or "output")

    @property
    def tick_y(self) -> float:
        return self.plot_top - 4

    @property
    def positive_colour(self) -> str:
        return POSITIVE

    @property
    def negative_colour(self) -> str:
        return NEGATIVE

    @property
    def label_x(self) -> float:
        return self.plot_left - 8

    @property
    def bar_height(self) -> float:
        return BAR

    @property
    def marker_bottom(self) -> float:
        return self.output_y + BAR

    @property
    def text_base_y(self) -> float:
        return self.base_y + BAR / 2 + 4

    @property
    def text_output_y(self) -> float:
        return self.output_y + BAR / 2 + 4


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} is not finite")
    return number


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _nice_step(span: float) -> float:
    raw = span / 6
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _format(value: float) -> str:
    text = f"{value:.4g}"
    return "0" if text in ("-0", "0") else text


def waterfall(explanation: Mapping[str, Any], *, top: int = TOP) -> Waterfall:
    """Bars from base value to output for one explanation
    ({"base_value", "output", "values": {feature: contribution}, ...}).
    Raises ValueError when the explanation does not have that shape."""
    if not isinstance(explanation, Mapping):
        raise ValueError("the explanation is not an object")
    base = _number(explanation.get("base_value"), "base_value")
    values = explanation.get("values")
    if not isinstance(values, Mapping) or not values:
        raise ValueError("values is not a non-empty object")
    items = [(str(k), _number(v, f"values.{k}")) for k, v in values.items()]
    total = base + math.fsum(v for _, v in items)
    reported = explanation.get("output")
    reported_output = total if reported is None else _number(reported, "output")

    items.sort(key=lambda kv: (-abs(kv[1]), kv[0]))
    shown = items[: max(top, 1)]
    rest = items[len(shown) :]
    rows: list[tuple[str, str, float, int, tuple[str, ...]]] = [
        (_short(name), name, value, 1, (name,)) for name, value in shown
    ]
    if rest:
        label = f"other {len(rest)} feature{'s' if len(rest) != 1 else ''}"
        rows.append(
            (
                label,
                label,
                math.fsum(v for _, v in rest),
                len(rest),
                tuple(n for n, _ in rest),
            )
        )

    # Running totals: where each bar starts and ends, in output space.
    points = [base]
    running = base
    spans = []
    for _, _, value, _, _ in rows:
        spans.append((running, running + value))
        running += value
        points.append(running)
    # The last bar ends exactly at the total (no drift from the running sum).
    spans[-1] = (spans[-1][0], total)
    lo, hi = min(points), max(points)
    span = hi - lo
    if span <= 0:
        span = abs(hi) or 1.0
    lo, hi = lo - span * 0.05, hi + span * 0.05

    plot_left = LABEL_WIDTH
    plot_right = WIDTH - RIGHT_PAD
    scale = (plot_right - plot_left) / (hi - lo)

    def x(value: float) -> float:
        return plot_left + (value - lo) * scale

    base_y = TOP_PAD
    bars: list[Bar] = []
    for index, ((label, title, value, count, names), (start, end)) in enumerate(
        zip(rows, spans, strict=True)
    ):
        x0, x1 = x(start), x(end)
        positive = value >= 0
        bars.append(
            Bar(
                label=label,
                title=title,
                value=value,
                start=start,
                end=end,
                x=min(x0, x1),
                width=abs(x1 - x0),
                y=base_y + (index + 1) * ROW,
                colour=POSITIVE if positive else NEGATIVE,
                positive=positive,
                features=count,
                names=names if count > 1 else (),
            )
        )
    output_y = base_y + (len(bars) + 1) * ROW
    plot_bottom = output_y + BAR
    step = _nice_step(hi - lo)
    first = math.ceil(lo / step) * step
    ticks = []
    tick = first
    while tick <= hi + step * 1e-9:
        ticks.append(Tick(x=x(tick), label=_format(tick)))
        tick += step
    return Waterfall(
        bars=bars,
        base_value=base,
        output=total,
        reported_output=reported_output,
        scale=scale,
        base_x=x(base),
        output_x=x(total),
        width=WIDTH,
        height=plot_bottom + BOTTOM_PAD,
        plot_left=plot_left,
        plot_right=plot_right,
        plot_top=TOP_PAD - 6,
        plot_bottom=plot_bottom,
        base_y=base_y,
        output_y=output_y,
        method=str(explanation.get("method") or ""),
        output_space=str(explanation.get("output_space") or ""),
        target=explanation.get("target"),
        feature_count=len(items),
        ticks=ticks,
    )
