"""Event aggregation, as client-go's EventCorrelator does it: the same Event about the same object
(type, reason and message alike) within AGGREGATE_SECONDS is one Event whose `count` and
`lastTimestamp` grow, not a new object per occurrence. A warning repeated every poll of a scaler so
costs one Event in etcd, however long it lasts. Pure bookkeeping here; the poster does the writes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

AGGREGATE_SECONDS = 600.0  # client-go's default window
REMEMBERED = 4096  # client-go's LRU size

Key = tuple[str, str, str, str, str]  # namespace, involved uid (or name), type, reason, message


@dataclass
class Seen:
    name: str
    count: int
    first: float


class Correlator:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, window: float = AGGREGATE_SECONDS
    ) -> None:
        self.clock = clock
        self.window = window
        self.seen: OrderedDict[Key, Seen] = OrderedDict()

    def repeat_of(self, key: Key) -> Seen | None:
        """The Event this one repeats (its count already raised), or None: post a new one."""
        prior = self.seen.get(key)
        if prior is None or self.clock() - prior.first > self.window:
            return None
        prior.count += 1
        self.seen.move_to_end(key)
        return prior

    def posted(self, key: Key, name: str) -> None:
        self.seen[key] = Seen(name, 1, self.clock())
        self.seen.move_to_end(key)
        while len(self.seen) > REMEMBERED:
            self.seen.popitem(last=False)

    def forget(self, key: Key) -> None:
        self.seen.pop(key, None)
