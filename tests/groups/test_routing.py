"""Routing: weighted splits, stickiness and canary ramps (pure, no database)."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from scipy.stats import binom

from apps.groups.routing import (
    RouteMember,
    bucket_of,
    build_table,
    canary_percent,
    canary_weights,
    choose,
    choose_sticky,
    choose_weighted,
)

CHAMPION = RouteMember(1, 11, "champion", 70)
CHALLENGER = RouteMember(2, 12, "challenger", 30)
SHADOW = RouteMember(3, 13, "shadow", 0)


@pytest.mark.parametrize("weights", [(70, 30), (50, 50), (95, 5), (99, 1)])
def test_observed_split_is_inside_the_binomial_999_interval(weights):
    champion = RouteMember(1, 11, "champion", weights[0])
    challenger = RouteMember(2, 12, "challenger", weights[1])
    table = build_table(7, [champion, challenger, SHADOW])
    rng = random.Random(20261127)
    draws = 100_000

    hits = sum(choose(table, rng=rng).member_id == 2 for _ in range(draws))

    low, high = binom.interval(0.999, draws, weights[1] / 100)
    assert low <= hits <= high


def test_shadows_are_never_routed_and_zero_weights_are_skipped():
    idle = RouteMember(4, 14, "challenger", 0)
    table = build_table(7, [CHAMPION, CHALLENGER, SHADOW, idle])

    assert [m.member_id for m in table.routed] == [1, 2]
    assert table.shadows == (SHADOW,)
    assert {choose_weighted(table, d / 1000).member_id for d in range(1000)} == {1, 2}


def test_weighted_choice_follows_the_cumulative_bands():
    table = build_table(7, [CHALLENGER, CHAMPION])  # order given does not matter

    assert choose_weighted(table, 0.0).member_id == 1
    assert choose_weighted(table, 0.6999).member_id == 1
    assert choose_weighted(table, 0.70).member_id == 2
    assert choose_weighted(table, 0.9999).member_id == 2


def test_same_routing_key_lands_on_the_same_member_while_weights_hold():
    table = build_table(7, [CHAMPION, CHALLENGER], sticky=True)
    keys = [f"user-{i}" for i in range(2000)]

    first = {k: choose(table, routing_key=k).member_id for k in keys}
    again = {k: choose(table, routing_key=k).member_id for k in keys}

    assert first == again
    share = sum(v == 2 for v in first.values()) / len(keys)
    assert 0.25 < share < 0.35


def test_sticky_keys_move_only_as_much_as_the_weights_do():
    before = build_table(7, [CHAMPION, CHALLENGER], sticky=True)
    after = build_table(
        7,
        [RouteMember(1, 11, "champion", 60), RouteMember(2, 12, "challenger", 40)],
        sticky=True,
    )
    keys = [f"k{i}" for i in range(5000)]

    moved = [
        k
        for k in keys
        if choose_sticky(before, k).member_id != choose_sticky(after, k).member_id
    ]

    # Only keys in the 10 % band between 60 and 70 change sides, all towards the challenger.
    assert all(choose_sticky(after, k).member_id == 2 for k in moved)
    assert 0.07 < len(moved) / len(keys) < 0.13


def test_buckets_differ_between_groups():
    assert [bucket_of("same", "g1") for _ in range(3)] == [bucket_of("same", "g1")] * 3
    assert bucket_of("same", "g1") != bucket_of("same", "g2")


def test_empty_group_cannot_route():
    with pytest.raises(LookupError, match="no member to route to"):
        choose(build_table(7, [SHADOW]))


def test_canary_ramp_steps_up_on_schedule():
    start = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    schedule = [
        {"percent": 5},
        {"percent": 25, "after_minutes": 60},
        {"percent": 50, "after_minutes": 120},
        {"percent": 100, "after_minutes": 240},
    ]

    at = [
        canary_percent(schedule, start, start + timedelta(minutes=m))
        for m in (0, 59, 60, 150, 240, 10_000)
    ]

    assert at == [5, 5, 25, 50, 100, 100]
    assert canary_percent(schedule, None, start) == 5
    assert canary_percent([], start, start) == 0


def test_canary_weights_override_stored_weights():
    table = build_table(7, [CHAMPION, CHALLENGER], weights=canary_weights(1, 2, 25))

    assert [(m.member_id, m.weight) for m in table.routed] == [(1, 75), (2, 25)]
