"""A deduplicating, delaying work queue with a fixed number of workers (client-go's pattern).

Watch events only enqueue a key; a burst of events for one object becomes one reconcile, a key is
never processed by two workers at once, and time-based work (recycling at max age, deadlines) is a
delayed re-add rather than a timer or thread per object. Reconcilers run in a bounded thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("shoal.workqueue")

Key = Hashable
Reconciler = Callable[[Any], float | None]


class WorkQueue:
    def __init__(self, max_backoff: float = 300.0, waited: Callable[[float], None] | None = None) -> None:
        self.max_backoff = max_backoff
        self._waited = waited  # told how long each key waited between its add and a worker taking it
        self._added: dict[Key, float] = {}
        # Two lanes: work someone is waiting for (a new claim or session, a bind) is taken before
        # bookkeeping (progress reports, requeues), which can then never hold it up. A key queued in
        # the slow lane and added as urgent moves to the fast one.
        self._lanes: tuple[deque[Key], deque[Key]] = (deque(), deque())
        self._queued: dict[Key, bool] = {}  # key -> queued as urgent
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._active: set[Key] = set()
        self._again: dict[Key, bool] = {}  # processed again once the current run ends (urgent or not)
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[Key, int] = {}

    def add(self, key: Key, urgent: bool = False) -> None:
        if key in self._active:
            self._again[key] = self._again.get(key, False) or urgent
            return
        queued = self._queued.get(key)
        if queued is None:
            self._added[key] = time.monotonic()
        elif queued or not urgent:
            return
        else:
            self._lanes[1].remove(key)  # promoted: the slow lane's entry goes
        self._queued[key] = urgent
        self._lanes[0 if urgent else 1].append(key)
        self._wake_next()

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
        while not (self._lanes[0] or self._lanes[1]):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_next()  # it was this one's turn: pass it on
                raise
        key = (self._lanes[0] or self._lanes[1]).popleft()
        del self._queued[key]
        self._active.add(key)
        added = self._added.pop(key, None)
        if self._waited is not None and added is not None:
            self._waited(time.monotonic() - added)
        return key

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._again:
            self.add(key, self._again.pop(key))

    def backoff(self, key: Key) -> float:
        """Exponential per-key backoff for failed reconciles: 0.5 s doubling to 5 min."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        # The exponent is capped: 0.5 * 2**n as a float overflows after ~1,025 failures in a row.
        return min(self.max_backoff, 0.5 * 2.0 ** min(n, 10))

    def release(self, key: Key) -> None:
        """A key whose worker died: no longer in progress, without the re-add done() would do."""
        self._active.discard(key)
        self._again.pop(key, None)

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._queued)


class Supervision:
    """What the workers of one queue did that a health probe reports."""

    def __init__(self) -> None:
        self.restarts = 0
        self.alive = 0
        self.last_error = ""


async def run_workers(
    queue: WorkQueue,
    reconcile: Reconciler,
    workers: int,
    executor: ThreadPoolExecutor,
    ready: Callable[[], Awaitable[None]] | None = None,
    supervision: Supervision | None = None,
    restart_delay: float = 1.0,
    taken: Callable[[Any], None] | None = None,
) -> None:
    """Process keys until cancelled. `ready` is awaited before each key (leadership); `taken` is
    called (on the loop) with each key as a worker takes it, before its reconcile reads anything. A
    worker that dies (an error outside a reconcile: the queue's own bookkeeping, `ready`) is logged and
    started again after `restart_delay`, so the queue never silently loses its workers."""
    loop = asyncio.get_running_loop()
    sup = supervision or Supervision()

    holding: dict[int, Key] = {}  # worker -> the key it is processing

    async def worker(n: int) -> None:
        while True:
            if ready:
                await ready()
            key = holding[n] = await queue.get()
            try:
                if taken is not None:
                    taken(key)
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
                holding.pop(n, None)

    async def supervised(n: int) -> None:
        while True:
            sup.alive += 1
            try:
                await worker(n)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                key = holding.pop(n, None)
                if key is not None:  # not lost: processed again once a worker is back
                    queue.release(key)
                    queue.add_after(key, restart_delay)
                sup.restarts += 1
                sup.last_error = repr(exc)[:200]
                log.exception(
                    "worker %d died; restarting it in %.1fs (restart %d)", n, restart_delay, sup.restarts
                )
            finally:
                sup.alive -= 1
            await asyncio.sleep(restart_delay)

    await asyncio.gather(*(supervised(n) for n in range(workers)))
