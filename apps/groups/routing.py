"""Routing as pure functions: no ORM, no I/O, tested on their own.

A route table is the group's active members with weights summing to 100 (shadows
apart). Weighted random uses a number in [0, 1); sticky routing hashes the routing key
to one of 10,000 buckets, so the same key lands on the same member while the weights
stay the same.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

BUCKETS = 10_000


@dataclass(frozen=True)
class RouteMember:
    member_id: int
    version_id: int
    role: str  # champion | challenger | shadow
    weight: int


@dataclass(frozen=True)
class RouteTable:
    group_id: int
    routed: tuple[RouteMember, ...]  # non-shadow, weight > 0, in a stable order
    shadows: tuple[RouteMember, ...]
    champion: RouteMember | None
    sticky: bool = False
    fallback_to_champion: bool = False
    salt: str = ""

    @property
    def cumulative(self) -> tuple[int, ...]:
        total, out = 0, []
        for member in self.routed:
            total += member.weight
            out.append(total)
        return tuple(out)


def build_table(
    group_id: int,
    members: Sequence[RouteMember],
    *,
    sticky: bool = False,
    fallback_to_champion: bool = False,
    weights: dict[int, int] | None = None,
) -> RouteTable:
    """`weights` (member id -> percent) overrides stored weights, e.g. a canary step."""
    effective = [
        RouteMember(
            m.member_id,
            m.version_id,
            m.role,
            (weights or {}).get(m.member_id, m.weight),
        )
        for m in members
    ]
    routed = tuple(
        sorted(
            (m for m in effective if m.role != "shadow" and m.weight > 0),
            key=lambda m: (m.role != "champion", m.member_id),
        )
    )
    shadows = tuple(m for m in effective if m.role == "shadow")
    champion = next((m for m in effective if m.role == "champion"), None)
    return RouteTable(
        group_id,
        routed,
        shadows,
        champion,
        sticky,
        fallback_to_champion,
        salt=f"g{group_id}",
    )


def _pick(table: RouteTable, point: float) -> RouteMember:
    """The member whose cumulative-weight band contains `point` in [0, total)."""
    if not table.routed:
        raise LookupError("the group has no member to route to")
    for member, upper in zip(table.routed, table.cumulative, strict=True):
        if point < upper:
            return member
    return table.routed[-1]


def choose_weighted(table: RouteTable, draw: float) -> RouteMember:
    """`draw` uniform in [0, 1)."""
    total = table.cumulative[-1] if table.routed else 0
    return _pick(table, draw * total)


def bucket_of(key: str, salt: str = "") -> int:
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def choose_sticky(table: RouteTable, key: str) -> RouteMember:
    total = table.cumulative[-1] if table.routed else 0
    return _pick(table, bucket_of(key, table.salt) * total / BUCKETS)


def choose(
    table: RouteTable, routing_key: str | None = None, rng: random.Random | None = None
) -> RouteMember:
    """Sticky when the group says so and a key is given, else weighted random."""
    if table.sticky and routing_key:
        return choose_sticky(table, routing_key)
    return choose_weighted(table, (rng or random).random())


def canary_percent(
    schedule: Sequence[dict[str, Any]], started: datetime | None, now: datetime
) -> int:
    """The challenger's share at `now` on a ramp such as
    [{"percent": 5}, {"percent": 25, "after_minutes": 60}, {"percent": 100, "after_minutes": 240}]:
    each step applies once its minutes since `started` have passed."""
    if not schedule:
        return 0
    percent = int(schedule[0].get("percent", 0))
    if started is None:
        return percent
    elapsed = now - started
    for step in schedule:
        if elapsed >= timedelta(minutes=float(step.get("after_minutes", 0))):
            percent = int(step["percent"])
    return max(0, min(100, percent))


def canary_weights(
    champion_id: int, challenger_id: int, percent: int
) -> dict[int, int]:
    return {champion_id: 100 - percent, challenger_id: percent}
