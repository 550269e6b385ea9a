"""A deduplicating, delaying work queue with a fixed number of workers (client-go's pattern).

Watch events only enqueue a key; a burst of events for one object becomes one reconcile, a key is
never processed by two workers at once, and time-based work (recycling at max age, deadlines) is a
delayed re-add rather than a timer or thread per object. Reconcilers run in a bounded thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("shoal.workqueue")

Key = Hashable
Reconciler = Callable[[Any], float | None]


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[Key, int] = {}

    def add(self, key: Key) -> None:
        if key in self._active:
            self._again.add(key)  # processed again once the current run ends
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Re-add after `delay` seconds; an earlier pending re-add of the same key wins."""
        when = time.monotonic() + max(0.0, delay)
        current = self._timers.get(key)
        if current and current[0] <= when:
            return
        if current:
            current[1].cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = (when, loop.call_later(max(0.0, delay), self._fire, key))

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def backoff(self, key: Key) -> float:
        """Exponential per-key backoff for failed reconciles: 0.5 s doubling to 5 min."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        # The exponent is capped: 0.5 * 2**n as a float overflows after ~1,025 failures in a row.
        return min(300.0, 0.5 * 2.0 ** min(n, 10))

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._queued)


async def run_workers(
    queue: WorkQueue,
    reconcile: Reconciler,
    workers: int,
    executor: ThreadPoolExecutor,
    ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Process keys until cancelled. `ready` is awaited before each key (leadership)."""
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        while True:
            if ready:
                await ready()
            key = await queue.get()
            try:
                requeue = await loop.run_in_executor(executor, reconcile, key)
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = queue.backoff(key)
                log.exception("reconcile of %s failed; retrying in %.1fs", key, delay)
                queue.add_after(key, delay)
            else:
                queue.forget(key)
                if requeue is not None:
                    queue.add_after(key, requeue)
            finally:
                queue.done(key)

    await asyncio.gather(*(worker() for _ in range(workers)))
