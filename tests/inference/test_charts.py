"""The SHAP waterfall's geometry, without a database: bars add up to output minus
base value, the 12 largest get their own bar, colours follow the sign."""

from __future__ import annotations

import math
import random

import pytest

from apps.inference.charts import NEGATIVE, POSITIVE, TOP, waterfall


def _explanation(values: dict[str, float], base: float = 0.25) -> dict:
    return {
        "method": "tree",
        "output_space": "log_odds",
        "target": 1,
        "base_value": base,
        "output": base + math.fsum(values.values()),
        "values": values,
    }


@pytest.mark.parametrize("count", [1, 5, 12, 13, 30])
def test_signed_bar_widths_add_up_to_output_minus_base_value(count):
    rng = random.Random(count)
    values = {f"feature_{i}": rng.uniform(-2, 2) for i in range(count)}
    explanation = _explanation(values, base=-0.7)

    chart = waterfall(explanation)

    signed = math.fsum(b.signed_width for b in chart.bars)
    expected = explanation["output"] - explanation["base_value"]
    assert signed / chart.scale == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert math.fsum(b.value for b in chart.bars) == pytest.approx(expected)
    assert chart.output_x - chart.base_x == pytest.approx(signed)
    assert chart.adds_up


def test_the_twelve_largest_get_a_bar_and_the_rest_are_summed_as_other():
    values = {f"f{i:02d}": (i + 1) * (-1) ** i for i in range(20)}  # |value| = i + 1

    chart = waterfall(_explanation(values))

    assert len(chart.bars) == TOP + 1
    assert [b.title for b in chart.bars[:TOP]] == [
        f"f{i:02d}" for i in range(19, 7, -1)
    ]
    other = chart.bars[-1]
    assert other.label == "other 8 features" and other.features == 8
    assert other.value == sum(values[f"f{i:02d}"] for i in range(8))
    assert set(other.names) == {f"f{i:02d}" for i in range(8)}
    assert chart.feature_count == 20


def test_no_other_bar_when_twelve_or_fewer_features():
    chart = waterfall(_explanation({f"f{i}": 1.0 + i for i in range(12)}))

    assert len(chart.bars) == 12
    assert not any(b.features > 1 for b in chart.bars)


def test_positive_and_negative_contributions_have_two_colours_and_chain():
    chart = waterfall(_explanation({"up": 2.0, "down": -0.5, "flat": 0.0}, base=1.0))

    by_name = {b.title: b for b in chart.bars}
    assert by_name["up"].colour == POSITIVE and by_name["up"].positive
    assert by_name["down"].colour == NEGATIVE and not by_name["down"].positive
    assert by_name["flat"].width == 0
    assert [b.title for b in chart.bars] == ["up", "down", "flat"]
    # Each bar starts where the previous one ended, from the base value.
    assert chart.bars[0].start == 1.0
    for before, after in zip(chart.bars, chart.bars[1:], strict=False):
        assert after.start == before.end
        assert after.x == pytest.approx(min(before.end_x, after.end_x))
    assert chart.bars[-1].end == pytest.approx(2.5) == chart.output


def test_bars_stay_inside_the_plot():
    rng = random.Random(3)
    chart = waterfall(_explanation({f"f{i}": rng.gauss(0, 5) for i in range(40)}))

    for bar in chart.bars:
        assert chart.plot_left <= bar.x <= chart.plot_right
        assert bar.x + bar.width <= chart.plot_right + 1e-9
        assert bar.width >= 0
    assert chart.plot_left <= chart.base_x <= chart.plot_right
    assert chart.ticks and all(
        chart.plot_left <= t.x <= chart.plot_right for t in chart.ticks
    )


def test_all_zero_contributions_do_not_divide_by_zero():
    chart = waterfall(_explanation({"a": 0.0, "b": 0.0}, base=0.0))

    assert math.isfinite(chart.scale)
    assert [b.width for b in chart.bars] == [0.0, 0.0]
    assert chart.base_x == chart.output_x


def test_a_stored_output_that_does_not_add_up_is_reported_not_hidden():
    explanation = _explanation({"a": 1.0, "b": -0.25}, base=0.5)
    explanation["output"] = 2.0

    chart = waterfall(explanation)

    assert chart.output == 1.25
    assert chart.reported_output == 2.0
    assert chart.residual == pytest.approx(0.75)
    assert not chart.adds_up


def test_long_feature_names_are_shortened_for_the_label_only():
    name = "a_very_long_feature_name_that_goes_on_and_on"
    chart = waterfall(_explanation({name: 1.0}))

    assert chart.bars[0].title == name
    assert len(chart.bars[0].label) < len(name) and chart.bars[0].label.endswith("…")


@pytest.mark.parametrize(
    ("explanation", "message"),
    [
        ({"values": {"a": 1.0}}, "base_value is not a number"),
        ({"base_value": "0.1", "values": {"a": 1.0}}, "base_value is not a number"),
        ({"base_value": 0.1, "values": {}}, "values is not a non-empty object"),
        ({"base_value": 0.1, "values": [1.0]}, "values is not a non-empty object"),
        ({"base_value": 0.1, "values": {"a": True}}, "values.a is not a number"),
        ({"base_value": 0.1, "values": {"a": float("nan")}}, "values.a is not finite"),
        ({"base_value": 0.1, "values": {"a": 1.0}, "output": None}, None),
        ({"base_value": 0.1, "values": {"a": 1.0}, "output": "x"}, "output"),
        ([1, 2], "the explanation is not an object"),
    ],
)
def test_malformed_explanations_raise_value_error_naming_the_part(explanation, message):
    if message is None:
        assert waterfall(explanation).output == pytest.approx(1.1)
        return
    with pytest.raises(ValueError, match=message):
        waterfall(explanation)
