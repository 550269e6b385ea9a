"""Wires the work queue, the reconcilers and leader election into kopf's event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shoal import telemetry
from shoal.config import Settings
from shoal.k8s.client import Kube, NotLeading
from shoal.k8s.paths import custom_path
from shoal.k8s.watch import Reflector
from shoal.runtime.cache import ClaimIndex
from shoal.runtime.leader import LeaderElector
from shoal.runtime.pacer import Pacer
from shoal.runtime.store import Store
from shoal.runtime.workqueue import Supervision, WorkQueue, run_workers

log = logging.getLogger("shoal.runtime")
RESYNC_SECONDS = 300.0

# (kind, namespace, name): the unit of work. kind selects the reconciler.
Key = tuple[str, str, str]


class OperatorRuntime:
    def __init__(self, settings: Settings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        # One queue and its own workers per kind (client-go's controller per kind): a burst of pool
        # reconciles never delays a session's claim, and a slow scaler source never delays a pool.
        self.queues: dict[str, WorkQueue] = {}
        self.executor = ThreadPoolExecutor(max_workers=1)  # replaced in start(), once the kinds are known
        self.reconcilers: dict[str, Callable[[str, str], float | None]] = {}
        self.workers: dict[str, int] = {}
        self.filters: dict[str, Callable[[str | None, Mapping[str, Any]], bool]] = {}
        self.index = ClaimIndex()  # fed by the pool and pod watches, read by the claim path
        self.session_pods = Store()  # pods labelled with a session, fed by the pod watch
        self.progress_pacer = Pacer(settings.progress_status_seconds)  # sessions' figures-only reconciles
        self.listers: dict[str, str] = {}  # kind -> plural, for full resyncs
        self.leader: LeaderElector | None = None
        self.supervision: dict[str, Supervision] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        # Fills the watch cache before anything plans from it (reconcile/poolpods.prime), once.
        self.primer: Callable[[], None] | None = None
        self.primed = asyncio.Event()
        self.reflectors: list[Reflector] = []  # the pod watch (handlers/pods.py), started after this

    def register(
        self,
        kind: str,
        plural: str,
        reconciler: Callable[[str, str], float | None],
        relevant: Callable[[str | None, Mapping[str, Any]], bool] | None = None,
        workers: int | None = None,
    ) -> None:
        """`relevant(event_type, object)` may drop watch events that need no reconcile; `workers`:
        the kind's concurrent reconciles (settings.workers unless given)."""
        self.workers[kind] = workers or self.settings.workers
        self.reconcilers[kind] = reconciler
        if relevant is not None:
            self.filters[kind] = relevant
        self.listers[kind] = plural
        queue = self.queues[kind] = WorkQueue(waited=telemetry.QUEUE_WAIT_SECONDS.labels(kind).observe)
        self.supervision[kind] = Supervision()
        telemetry.QUEUE_DEPTH.labels(kind).set_function(lambda: len(queue))  # as it is when scraped
        telemetry.RECONCILE_ERRORS.labels(kind)  # a zero series from the start, for rate() and alerts

    def enqueue(self, kind: str, namespace: str, name: str, urgent: bool = False) -> None:
        """`urgent`: someone waits for it (a new or changed object, a bind, a pod freed for a waiting
        claim); taken before bookkeeping in its kind's queue."""
        queue = self.queues[kind]
        queue.add((kind, namespace, name), urgent)

    def enqueue_after(self, kind: str, namespace: str, name: str, delay: float) -> None:
        """Queued (as bookkeeping) after `delay` seconds; an earlier pending re-add of the key wins."""
        self.queues[kind].add_after((kind, namespace, name), delay)

    def _wake(self, kind: str, namespace: str, name: str) -> None:
        self.loop.call_soon_threadsafe(self._enqueue_known, kind, namespace, name)

    def _enqueue_known(self, kind: str, namespace: str, name: str) -> None:
        if kind in self.queues:
            self.enqueue(kind, namespace, name, urgent=True)  # a holder waiting for a pod, or its pool

    def notify(self, kind: str, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """A watch event about an object of `kind`: enqueue it (as urgent: a user's change) unless the
        kind's filter drops it."""
        relevant = self.filters.get(kind)
        if relevant is None or relevant(event_type, obj):
            meta = obj.get("metadata") or {}
            self.enqueue(kind, meta.get("namespace", ""), meta.get("name", ""), urgent=True)

    def _session_taken(self, key: Key) -> None:
        """A session's reconcile starts: it reads its pod's latest progress, whatever caused it."""
        self.progress_pacer.ran((key[1], key[2]), time.monotonic())

    def _reconcile(self, key: Key) -> float | None:
        kind, namespace, name = key
        started = time.perf_counter()
        try:
            return self.reconcilers[kind](namespace, name)
        except NotLeading:
            return 0.0  # not an error: done by whoever leads next (the workers wait for leadership)
        except Exception:
            telemetry.RECONCILE_ERRORS.labels(kind).inc()
            raise
        finally:
            telemetry.RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - started)

    def _resync(self) -> None:
        """Enqueue every object of every kind: after gaining leadership and now and then."""
        namespaces = self.settings.namespaces or (None,)
        for kind, plural in self.listers.items():
            for ns in namespaces:
                path = custom_path(plural, ns)
                try:
                    items = self.kube.list_items(path)
                except Exception as exc:
                    log.warning("resync of %s failed: %s", plural, exc)
                    continue
                for item in items:
                    meta = item["metadata"]
                    self.loop.call_soon_threadsafe(self.enqueue, kind, meta["namespace"], meta["name"])

    async def _periodic_resync(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            await self.loop.run_in_executor(self.executor, self._resync)

    async def _ready(self) -> None:
        if self.leader is not None:
            await self.leader.is_leader.wait()
        await self.primed.wait()

    def _prime(self) -> None:
        """Run the primer until it succeeds (the workers wait for it), then release the workers."""
        delays = iter((1.0, 2.0, 5.0))
        while self.primer is not None and not self.primed.is_set():
            try:
                self.primer()
                break
            except Exception as exc:
                delay = next(delays, 10.0)
                log.warning("priming the watch cache failed (%s); again in %.0fs", exc, delay)
                time.sleep(delay)
        self.loop.call_soon_threadsafe(self.primed.set)

    def _lead(self) -> None:
        self._prime()
        self._resync()

    def _on_leadership(self, held: bool) -> None:
        telemetry.LEADER.set(1 if held else 0)
        if held:
            self.loop.run_in_executor(self.executor, self._lead)
        else:
            telemetry.forget_workloads()  # the next leader's figures are the current ones

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        # The claim index wakes waiting claims (and their pools) from any thread.
        self.index.wake = self._wake
        self.executor.shutdown(wait=False)
        self.executor = ThreadPoolExecutor(
            max_workers=sum(self.workers.values()) + 1, thread_name_prefix="reconcile"
        )
        if self.settings.leader_election:
            self.leader = LeaderElector(
                Kube(self.kube.api),  # its own, unfenced: the lease writes are what keep the fence open
                self.settings.lease_namespace,
                self.settings.lease_name,
                self.settings.identity,
                self.settings.lease_duration,
                self.settings.lease_renew_deadline,
                self.settings.lease_retry_period,
                on_change=self._on_leadership,
            )
            self.kube.fence = self.leader.write_budget
            self.tasks.append(asyncio.create_task(self.leader.run(), name="leader-election"))
        else:
            telemetry.LEADER.set(1)
            self.loop.run_in_executor(self.executor, self._prime)
        for kind, queue in self.queues.items():
            self.tasks.append(
                asyncio.create_task(
                    run_workers(
                        queue,
                        self._reconcile,
                        self.workers[kind],
                        self.executor,
                        self._ready,
                        self.supervision[kind],
                        taken=self._session_taken if kind == "TrainingSession" else None,
                    ),
                    name=f"workers-{kind}",
                )
            )
        self.tasks.append(asyncio.create_task(self._periodic_resync(), name="resync"))

    def health(self) -> dict[str, Any]:
        """For /healthz (kopf's probes): raises when a part that must run is gone (a worker that died
        is restarted by its supervisor, so it counts in `restarts`, not as gone)."""
        dead = [t.get_name() for t in self.tasks if t.done()]
        dead += [f"watch of {r.path}" for r in self.reflectors if not r.alive()]
        if dead:
            raise RuntimeError(f"stopped: {', '.join(dead)}")
        workers = {
            kind: {
                "alive": s.alive,
                "restarts": s.restarts,
                "lastError": s.last_error,
                "queued": len(self.queues[kind]),
            }
            for kind, s in self.supervision.items()
        }
        if not self.kube.events_alive():
            raise RuntimeError("the event recorder's thread is gone")
        leader = self.leader
        return {
            "workers": workers,
            "leader": leader is None or leader.is_leader.is_set(),
            "leaderTransitions": leader.transitions if leader else 0,
            "eventBacklog": self.kube.events_backlog(),
        }

    async def stop(self) -> None:
        for reflector in self.reflectors:
            reflector.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.leader is not None:
            await self.leader.release()
        await asyncio.get_running_loop().run_in_executor(None, self.kube.flush_events, 2.0)
        self.executor.shutdown(wait=False, cancel_futures=True)


_runtime: OperatorRuntime | None = None


def get() -> OperatorRuntime:
    if _runtime is None:
        raise RuntimeError("operator runtime not started")
    return _runtime


def install(runtime: OperatorRuntime) -> None:
    global _runtime
    _runtime = runtime
