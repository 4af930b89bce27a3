"""What one process trusts for a few seconds instead of asking the database again.

A `TrustCache` maps a key to a value read from the database, answers it while it is
younger than a number of seconds read from settings at every lookup (0 turns it
off), and forgets entries when the process itself changes what they were read from.
Other processes see a change once their copy is older than that. Bounded: cleared
when it grows past `max_size`. Safe to share between threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from django.conf import settings

V = TypeVar("V")

_all: list[TrustCache[object]] = []


class TrustCache(Generic[V]):
    def __init__(self, setting: str, max_size: int = 10_000) -> None:
        self.setting = setting
        self.max_size = max_size
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        _all.append(self)  # type: ignore[arg-type]

    @property
    def seconds(self) -> float:
        return float(getattr(settings, self.setting))

    def get(self, key: Hashable) -> V | None:
        hit = self._entries.get(key)
        if hit is None or time.monotonic() - hit[0] >= self.seconds:
            return None
        return hit[1]

    def put(self, key: Hashable, value: V) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_size:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), value)

    def get_or_read(self, key: Hashable, read: Callable[[], V]) -> V:
        value = self.get(key)
        if value is None:
            value = read()
            self.put(key, value)
        return value

    def forget(self, where: Callable[[Hashable, V], bool] | None = None) -> None:
        """Forget the entries `where(key, value)` selects, or all of them."""
        with self._lock:
            if where is None:
                self._entries.clear()
                return
            for key, (_, value) in list(self._entries.items()):
                if where(key, value):
                    self._entries.pop(key, None)


def forget_all() -> None:
    """Every process cache emptied (tests: nothing outlives the test that filled it)."""
    for cache in _all:
        cache.forget()
