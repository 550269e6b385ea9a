from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

from shoal.config import Settings
from shoal.k8s.client import Kube
from shoal.runtime.operator import OperatorRuntime
from shoal.runtime.workqueue import WorkQueue, run_workers


def test_duplicate_keys_are_processed_once() -> None:
    async def scenario() -> list[object]:
        q = WorkQueue()
        for _ in range(5):
            q.add("a")
        q.add("b")
        seen = [await q.get(), await q.get()]
        assert len(q) == 0
        return seen

    assert asyncio.run(scenario()) == ["a", "b"]


def test_key_added_while_active_is_processed_again_after_done() -> None:
    async def scenario() -> None:
        q = WorkQueue()
        q.add("a")
        key = await q.get()
        q.add("a")  # an event arrived during the reconcile
        assert len(q) == 0
        q.done(key)
        assert len(q) == 1

    asyncio.run(scenario())


def drive(
    reconcile: Callable[[object], float | None],
    workers: int,
    done: Callable[[], bool],
    taken: Callable[[object], None] | None = None,
) -> None:
    """Key "k" through run_workers until `done()` (at most 2 s), then the workers cancelled."""

    async def scenario() -> None:
        q = WorkQueue()
        q.add("k")
        with ThreadPoolExecutor(workers) as ex:
            task = asyncio.create_task(run_workers(q, reconcile, workers, ex, taken=taken))
            for _ in range(200):
                if done():
                    break
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_add_after_keeps_the_earliest_and_workers_requeue() -> None:
    calls: list[str] = []

    def reconcile(key: object) -> float | None:
        calls.append(str(key))
        return 0.05 if len(calls) < 3 else None

    drive(reconcile, 2, lambda: len(calls) >= 3)
    assert calls == ["k", "k", "k"]


def test_taken_is_told_of_each_key_before_its_reconcile_reads() -> None:
    """The pacer's hook: every reconcile, a requeue's as an event's, is seen as it starts."""
    order: list[str] = []

    def reconcile(key: object) -> float | None:
        order.append(f"reconcile {key}")
        return 0.01 if order.count(f"reconcile {key}") < 2 else None

    drive(reconcile, 1, lambda: len(order) >= 4, taken=lambda key: order.append(f"taken {key}"))
    assert order == ["taken k", "reconcile k", "taken k", "reconcile k"]


def test_failures_back_off_exponentially() -> None:
    q = WorkQueue()
    assert [q.backoff("x") for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    q.forget("x")
    assert q.backoff("x") == 0.5


def test_each_kind_has_its_own_workers_so_a_stuck_kind_does_not_hold_up_another() -> None:
    release = threading.Event()
    done: list[str] = []

    def stuck(namespace: str, name: str) -> None:
        release.wait(10)
        done.append(f"pool/{name}")

    def quick(namespace: str, name: str) -> None:
        done.append(f"session/{name}")

    async def scenario() -> None:
        runtime = OperatorRuntime(Settings(workers=1, leader_election=False), cast(Kube, None))
        runtime.register("ContainerPool", "containerpools", stuck)
        runtime.register("TrainingSession", "trainingsessions", quick)
        runtime.start()
        try:
            runtime.enqueue("ContainerPool", "ns", "busy")  # takes the only pool worker and holds it
            runtime.enqueue("TrainingSession", "ns", "s1")
            deadline = time.monotonic() + 5
            while "session/s1" not in done and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert done == ["session/s1"]  # served while the pool reconcile is still stuck
        finally:
            release.set()
            for task in runtime.tasks:
                task.cancel()
            await asyncio.gather(*runtime.tasks, return_exceptions=True)
            runtime.executor.shutdown(wait=True)

    asyncio.run(scenario())


def test_backoff_is_clamped_however_long_one_key_keeps_failing() -> None:
    queue = WorkQueue()
    key = ("ContainerPool", "ns", "broken")
    delays = [queue.backoff(key) for _ in range(2000)]  # the old 0.5 * 2**n raised OverflowError at ~1,025
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == 300.0 and delays[-1] == 300.0
    queue.forget(key)
    assert queue.backoff(key) == 0.5


def test_one_key_failing_two_thousand_times_does_not_delay_the_others_and_a_dead_worker_comes_back() -> None:
    """The backoff is cut to 1 ms so that 2,000 failures take a moment; the other keys requeue
    themselves every 20 ms and must keep that pace; one worker is killed once (its `ready` raises)."""
    from shoal.runtime.workqueue import Supervision

    failures = 0
    good: dict[str, list[float]] = {f"good-{i}": [] for i in range(3)}
    lock = threading.Lock()

    def reconcile(key: object) -> float | None:
        nonlocal failures
        if key == "bad":
            with lock:
                failures += 1
            raise RuntimeError("always")
        good[str(key)].append(time.monotonic())
        return 0.02

    killed = False

    async def ready() -> None:
        nonlocal killed
        if not killed and failures >= 1000:
            killed = True
            raise RuntimeError("a bug outside any reconcile")

    async def scenario() -> Supervision:
        q = WorkQueue(max_backoff=0.001)
        sup = Supervision()
        for key in ("bad", *good):
            q.add(key)
        with ThreadPoolExecutor(2) as ex:
            task = asyncio.create_task(run_workers(q, reconcile, 2, ex, ready, sup, restart_delay=0.05))
            deadline = time.monotonic() + 60
            while failures < 2000 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return sup

    sup = asyncio.run(scenario())
    assert failures >= 2000 and killed
    assert sup.restarts == 1 and "outside any reconcile" in sup.last_error
    for key, times in good.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) > 20, key
        assert max(gaps) < 0.5, (key, max(gaps))  # on time throughout: 20 ms pace, well under 0.5 s


def test_each_key_reports_how_long_it_waited_once_per_take() -> None:
    waits: list[float] = []

    async def scenario() -> None:
        q = WorkQueue(waited=waits.append)
        q.add("a")
        q.add("a")  # deduplicated: one wait, from the first add
        await asyncio.sleep(0.05)
        q.add("b")
        assert await q.get() == "a"
        assert await q.get() == "b"

    asyncio.run(scenario())
    assert len(waits) == 2
    assert waits[0] >= 0.05 > waits[1] >= 0.0


def test_urgent_keys_are_taken_before_bookkeeping_and_a_queued_key_is_promoted() -> None:
    async def scenario() -> list[object]:
        q = WorkQueue()
        for key in ("progress-1", "progress-2", "progress-3"):
            q.add(key)
        q.add("new-session", urgent=True)
        q.add("progress-2", urgent=True)  # its acknowledgement arrived while its report was queued
        q.add("progress-1")  # queued already: still once
        assert len(q) == 4
        return [await q.get() for _ in range(4)]

    assert asyncio.run(scenario()) == ["new-session", "progress-2", "progress-1", "progress-3"]


def test_an_urgent_add_during_a_run_is_urgent_when_it_comes_back() -> None:
    async def scenario() -> list[object]:
        q = WorkQueue()
        q.add("a")
        key = await q.get()
        q.add("b")
        q.add("a", urgent=True)
        q.done(key)
        return [await q.get(), await q.get()]

    assert asyncio.run(scenario()) == ["a", "b"]


def test_a_waiting_worker_is_woken_by_an_add() -> None:
    async def scenario() -> object:
        q = WorkQueue()
        getter = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.add("k", urgent=True)
        return await asyncio.wait_for(getter, 1)

    assert asyncio.run(scenario()) == "k"
