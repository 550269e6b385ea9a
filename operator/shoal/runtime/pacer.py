"""At most one reconcile per key and interval for work that only refreshes figures (a session's
progress metrics): client-go's work queues rate-limit per item the same way. The first event after a
quiet interval is handled at once, the ones after it wait for the interval's end and become one
reconcile there, which reads the latest state (the store is updated on every event)."""

from __future__ import annotations

from collections.abc import Hashable


class Pacer:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._slot: dict[Hashable, float] = {}  # key -> when its last (or next, if ahead) reconcile runs

    def delay(self, key: Hashable, now: float) -> float | None:
        """How long this event's reconcile waits: 0 (now), a delay, or None when one is already
        scheduled ahead that will read what this event brought."""
        last = self._slot.get(key)
        if last is None or now >= last + self.interval:
            self._slot[key] = now
            return 0.0
        if last >= now:
            return None
        self._slot[key] = last + self.interval
        return last + self.interval - now

    def ran(self, key: Hashable, now: float) -> None:
        """A reconcile of the key starts now (for whatever reason: it reads the figures too): the next
        figures-only one waits an interval from here. A slot scheduled ahead is not trusted to come:
        the work queue keeps only the earliest pending re-add of a key, so that one may be this very
        reconcile, and an event after it must schedule its own (a later re-add than a pending one is
        dropped there, and the pending one reads it)."""
        self._slot[key] = now

    def forget(self, key: Hashable) -> None:
        self._slot.pop(key, None)
