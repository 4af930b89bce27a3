"""Benchmark item 6: the routing decision against an empty function call, and the
observed split of 100k draws against the binomial 99.9 % interval.

`apps.groups.routing` is pure: no database, no server. The table is the demo group's
shape (champion 80, challenger 20). Timed per call, in alternating rounds:
  empty     a Python function with choose()'s signature that returns at once
  weighted  choose(table): weighted random (the demo group without a routing key)
  sticky    choose(sticky_table, routing_key=k): BLAKE2b bucket of a key
  per-request  table() + choose(): what predict() pays, since the table is rebuilt
            from the cached route on every request (context)
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h

from apps.groups import routing

SECTION = "routing"
MEMBERS = (
    routing.RouteMember(1, 11, "champion", 80),
    routing.RouteMember(2, 12, "challenger", 20),
)


def empty(table: Any, routing_key: str | None = None, rng: Any = None) -> None:
    return None


def per_call_us(fn: Any, args: list[tuple[Any, ...]], calls: int) -> float:
    """Microseconds per call of fn(*args[i % len(args)]) over `calls` calls."""
    n = len(args)
    t0 = time.perf_counter_ns()
    for i in range(calls):
        fn(*args[i % n])
    return (time.perf_counter_ns() - t0) / calls / 1000


def main() -> None:
    args = h.parse_args(__doc__ or "")
    calls = 30_000 if args.quick else 100_000
    draws = 100_000
    weighted = routing.build_table(1, MEMBERS)
    sticky = routing.build_table(1, MEMBERS, sticky=True)
    keys = [f"user-{i}" for i in range(10_000)]
    w_args = [(weighted,)]
    s_args = [(sticky, k) for k in keys]

    def rebuild(key: str) -> routing.RouteMember:
        return routing.choose(
            routing.build_table(1, MEMBERS, sticky=True), routing_key=key
        )

    results = h.ab_rounds(
        {
            "empty": lambda: {"us": per_call_us(empty, w_args, calls)},
            "weighted": lambda: {"us": per_call_us(routing.choose, w_args, calls)},
            "sticky": lambda: {"us": per_call_us(routing.choose, s_args, calls)},
            "per_request": lambda: {
                "us": per_call_us(rebuild, [(k,) for k in keys], calls)
            },
        },
        warmup=lambda: per_call_us(routing.choose, s_args, calls // 10),
        label="routing",
    )

    def added(name: str) -> float:
        return h.paired(results, "empty", name, "us")

    from scipy.stats import binom

    low, high = binom.interval(0.999, draws, 0.8)
    champion_weighted = sum(
        routing.choose(weighted).role == "champion" for _ in range(draws)
    )
    champion_sticky = sum(
        routing.choose(sticky, routing_key=f"split-{random.random()}-{i}").role
        == "champion"
        for i in range(draws)
    )
    inside = all(low <= c <= high for c in (champion_weighted, champion_sticky))
    empty_us = results["empty"]["median"]["us"]
    out = []
    for name, label in (
        ("weighted", "routing decision, weighted"),
        ("sticky", "routing decision, sticky key"),
    ):
        extra = added(name)
        out.append(
            h.Row(
                id="6",
                what=label,
                baseline=f"empty call {empty_us:.3f} us",
                measured=f"{results[name]['median']['us']:.3f} us",
                delta=f"+{extra:.3f} us",
                goal="<= 5 us",
                passed=extra <= 5.0,
                data={"added_us": extra},
            )
        )
    extra = added("per_request")
    out.append(
        h.Row(
            id="6 ctx",
            what="table rebuild + sticky choose (per request)",
            baseline=f"empty call {empty_us:.3f} us",
            measured=f"{results['per_request']['median']['us']:.3f} us",
            delta=f"+{extra:.3f} us",
            goal="(context) <= 5 us",
            passed=None,
            data={"added_us": extra},
        )
    )
    out.append(
        h.Row(
            id="6",
            what="observed split 80/20, 100k draws",
            baseline=f"binom 99.9 % [{low:,.0f}, {high:,.0f}]",
            measured=(f"weighted {champion_weighted:,}, sticky {champion_sticky:,}"),
            delta=(f"{champion_weighted / draws:.2%} / {champion_sticky / draws:.2%}"),
            goal="inside the interval",
            passed=inside,
            data={
                "interval": [low, high],
                "weighted": champion_weighted,
                "sticky": champion_sticky,
            },
        )
    )
    h.result_write(
        SECTION, out, {"quick": args.quick, "calls": calls, "results": results}
    )
    print(h.table(out))


if __name__ == "__main__":
    main()
