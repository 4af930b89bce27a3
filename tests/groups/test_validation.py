"""validate_rows' quick check passes only what the full check passes, and the
answer (rows, or the problems by name) is the full check's for any input."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.groups.validation import (
    InputError,
    _all_valid,
    _plan,
    validate_rows,
    validate_rows_fully,
)

NAMES = ["a", "b", "c", "d"]
VALUES = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([True, False, None, "x", "", [], {}, math.nan, -0.0]),
    st.text(max_size=3),
)
FEATURES = st.builds(
    lambda name, kind, required, constraints: {
        "name": name,
        **({"type": kind} if kind else {}),
        **({"required": required} if required is not None else {}),
        **({"constraints": constraints} if constraints is not None else {}),
    },
    st.sampled_from(NAMES),
    st.sampled_from(
        [None, "number", "integer", "boolean", "string", "categorical", "other"]
    ),
    st.sampled_from([None, True, False]),
    st.sampled_from([None, {}, {"minimum": 0}, {"maximum": 1.5}, {"enum": ["x"]}]),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
)


@st.composite
def schemas_and_inputs(draw):
    """A schema, and rows mostly close to it: every feature present with a value
    that usually fits, then perhaps one left out, one added, one swapped for a name
    that is not a feature, or one spoilt."""
    plain = st.builds(
        lambda name, typed: {"name": name, **({"type": "number"} if typed else {})},
        st.sampled_from(NAMES),
        st.booleans(),
    )
    schema = draw(st.lists(st.one_of(plain, plain, FEATURES), min_size=1, max_size=4))

    def row():
        values = draw(st.lists(st.one_of(NUMBERS, VALUES), min_size=5, max_size=5))
        out = {f["name"]: v for f, v in zip(schema, values, strict=False)}
        change = draw(st.sampled_from(["none", "none", "drop", "add", "swap", "spoil"]))
        if change in ("drop", "swap"):
            out.pop(draw(st.sampled_from(sorted(out))))
        if change == "swap":
            out["e"] = draw(VALUES)
        elif change == "add":
            out[draw(st.sampled_from([*NAMES, "e"]))] = draw(VALUES)
        elif change == "spoil":
            out[draw(st.sampled_from(sorted(out)))] = draw(VALUES)
        return out

    shape = draw(st.sampled_from(["row", "batch", "other"]))
    if shape == "row":
        return schema, row()
    if shape == "batch":
        return schema, [row() for _ in range(draw(st.integers(0, 3)))]
    return schema, draw(st.one_of(VALUES, st.lists(VALUES, max_size=2)))


def _outcome(check, schema, inputs):
    try:
        return ("ok", check(schema, inputs))
    except InputError as exc:
        return ("error", exc.fields)


@settings(max_examples=1000, deadline=None)
@given(case=schemas_and_inputs())
def test_the_answer_is_the_full_checks(case):
    schema, inputs = case
    assert _outcome(validate_rows, schema, inputs) == _outcome(
        validate_rows_fully, schema, inputs
    )
    rows = inputs if isinstance(inputs, list) else [inputs]
    if rows and _all_valid(_plan(schema), rows):
        assert validate_rows_fully(schema, inputs) == rows


def test_a_plain_row_takes_the_quick_check_and_a_bad_one_is_named():
    schema = [{"name": n, "type": "number"} for n in NAMES]
    row = {"a": 1, "b": 2.5, "c": -0.0, "d": 10**30}
    assert _all_valid(_plan(schema), [row])
    assert validate_rows(schema, row) == [row]
    for bad, problem in [
        ({**row, "a": math.inf}, {"inputs.a": ["must be a finite number"]}),
        ({**row, "b": True}, {"inputs.b": ["expected a number, got bool"]}),
        ({**row, "e": 1}, {"inputs.e": ["not a feature of this model"]}),
        ({"a": 1, "b": 2, "c": 3}, {"inputs.d": ["missing"]}),
    ]:
        assert not _all_valid(_plan(schema), [bad])
        assert _outcome(validate_rows, schema, bad) == ("error", problem)
