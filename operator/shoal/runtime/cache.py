"""What the watches last said about pools and their pods: an index for the claim path.

A session binding to a warm pod is the latency users feel, so the claim path picks its candidate
from this index instead of reading the pool and listing its pods on every claim. The index is only a
hint: the claim itself is a patch guarded by the pod's resourceVersion, so a stale entry costs a 409
and the next candidate, never a double claim, and an empty or exhausted index falls back to a list.
The pool reconciler plans from here too, as kcm's ReplicaSet controller plans from its informer: its
pool object and its pods, no list per pass. Three things make that safe: `prime` fills the index from
one list when the operator starts leading (pools wait for it: `synced`), a watch event older than what
the index holds is ignored (a relist delivering old versions after newer ones), and the pool's own
creates and deletes are held by `expectations` until the watch shows them.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shoal.claims.holders import Holder, held_signature
from shoal.pool.pods import PodView, observed_state, pod_view
from shoal.runtime.expectations import Expectations
from shoal.runtime.store import GONE_KEPT, older
from shoal.vocab import ANN_CLAIMED_BY, IDLE, LABEL_POOL


@dataclass(frozen=True)
class CachedPod:
    view: PodView
    resource_version: str
    signature: str | None = None  # the job signature of whoever holds it (claimed pods only)


def cached_pod(pod: Mapping[str, Any]) -> CachedPod:
    """A pod as the index keeps it, from the API's dict."""
    meta = pod.get("metadata") or {}
    claimed = bool((meta.get("annotations") or {}).get(ANN_CLAIMED_BY))
    return CachedPod(
        pod_view(dict(pod)), str(meta.get("resourceVersion", "")), held_signature(pod) if claimed else None
    )


def _shape(pool: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a pool a pass depends on besides its pods: all but its status."""
    meta = pool.get("metadata") or {}
    return (
        meta.get("uid"),
        meta.get("generation"),
        meta.get("labels"),
        meta.get("annotations"),
        pool.get("spec"),
    )


def _relevant(view: PodView) -> PodView:
    return dataclasses.replace(view, state_label=None)


@dataclass(frozen=True)
class CachedPool:
    obj: Mapping[str, Any]  # the whole pool, as the watch (or a read) last delivered it

    @property
    def uid(self) -> str:
        return str((self.obj.get("metadata") or {}).get("uid", ""))

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.obj.get("spec") or {}


class ClaimIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods: dict[tuple[str, str], dict[str, CachedPod]] = {}
        self._pools: dict[tuple[str, str], CachedPool] = {}
        self._gone: dict[tuple[str, str], str] = {}  # (namespace, pod) -> resourceVersion it went at
        self.expectations = Expectations()  # the pools' creates and deletes not yet seen
        self.synced = threading.Event()  # set once `prime` has filled the pods
        # Pods a worker of this process is claiming right now: concurrent claims skip them rather
        # than all choosing the same least-recently-used pod and losing the race to each other.
        self._reserved: set[tuple[str, str]] = set()
        self._watched: dict[tuple[str, str], PodView] = {}  # (namespace, pod): as the watch last said
        # Holders waiting for a pod: (namespace, pool) -> {(kind, name): whether a new pod would fit}.
        self._waiting: dict[tuple[str, str], dict[tuple[str, str], bool]] = {}
        # Pods of a pool that turned idle so far: a claim that found none compares it when it starts
        # waiting, so a pod freed during its pass still wakes it.
        self._idle_epoch: dict[tuple[str, str], int] = {}
        # (kind, namespace, name) -> enqueue it; set by the runtime (thread-safe), None in tests.
        self.wake: Callable[[str, str, str], None] | None = None

    def pod_event(self, event_type: str | None, pod: Mapping[str, Any], from_watch: bool = True) -> bool:
        """Record a pod; True when the pool's view of it changed since the watch last delivered it.

        A pod event that changes nothing the pool plans on (an agent's progress report, a
        resourceVersion bump) returns False, so the pool is not re-listed for it. `from_watch=False`
        (the claim path's own write) updates the index without counting as delivered: the watch
        event that follows still reports the change to the pool.
        """
        meta = pod.get("metadata") or {}
        pool = (meta.get("labels") or {}).get(LABEL_POOL)
        if not pool:
            return False
        key = (meta.get("namespace", ""), pool)
        name = meta["name"]
        gone = event_type == "DELETED" or bool(meta.get("deletionTimestamp"))
        entry = None if gone else cached_pod(pod)
        view = entry.view if entry is not None else None
        woken: list[tuple[str, str]] = []
        with self._lock:
            pods = self._pods.setdefault(key, {})
            prev = pods.get(name)
            went = self._gone.get((key[0], name))
            if (prev is not None and older(pod, prev.resource_version)) or (
                prev is None and went is not None and older(pod, went)
            ):
                if not pods:
                    del self._pods[key]
                return False  # an older version than the one the index holds
            turned_idle = prev is None or observed_state(prev.view) != IDLE
            # A holder leaving a shared pod frees a slot: a claim waiting for room may take it.
            slot_freed = prev is not None and view is not None and len(view.holders) < len(prev.view.holders)
            if view is not None and ((observed_state(view) == IDLE and turned_idle) or slot_freed):
                self._idle_epoch[key] = self._idle_epoch.get(key, 0) + 1
                woken = list(self._waiting.get(key, {}))
            if entry is None:
                pods.pop(name, None)
                if not pods:
                    del self._pods[key]
                self._gone[(key[0], name)] = str(meta.get("resourceVersion", ""))
                while len(self._gone) > GONE_KEPT:
                    del self._gone[next(iter(self._gone))]
            else:
                self._gone.pop((key[0], name), None)
                pods[name] = entry
            changed = False
            if from_watch:
                wkey = (key[0], name)
                before = self._watched.pop(wkey, None) if view is None else self._watched.get(wkey)
                if view is not None:
                    self._watched[wkey] = view
                # Its state label alone is the pool's own write (or about to be rewritten by it).
                changed = view is None or before is None or _relevant(before) != _relevant(view)
        if from_watch and prev is None and view is not None:
            self.expectations.created(key)
        if gone:
            self.expectations.deleted(key, str(meta.get("uid", "")))
        self._wake(key[0], woken)
        return changed

    def prime(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """Fill the index from a list of every pool pod (when the operator starts leading): from then on
        pools plan from it. Counted as delivered, so the watch's own initial events for the same
        versions cause no passes."""
        for pod in pods:
            self.pod_event(None, pod)
        self.synced.set()

    def _wake(self, namespace: str, who: list[tuple[str, str]]) -> None:
        if self.wake is not None:
            for kind, name in who:
                self.wake(kind, namespace, name)

    def pool_event(self, event_type: str | None, pool: Mapping[str, Any], from_watch: bool = True) -> bool:
        """Record a pool; True when it needs a pass: new, deleted, or its spec, labels or annotations
        changed. A change of its status alone is the pool's own write (`from_watch=False` records the
        object that write returned, so the next pass compares against it): no pass for its echo."""
        meta = pool.get("metadata") or {}
        key = (meta.get("namespace", ""), meta["name"])
        woken: list[tuple[str, str]] = []
        with self._lock:
            before = self._pools.get(key)
            if event_type == "DELETED" or meta.get("deletionTimestamp"):
                self._pools.pop(key, None)
                relevant = True
            elif before is not None and older(
                pool, (before.obj.get("metadata") or {}).get("resourceVersion")
            ):
                return False
            else:
                if before is None:  # claims that found no such pool
                    woken = list(self._waiting.get(key, {}))
                self._pools[key] = CachedPool(pool)
                relevant = before is None or _shape(before.obj) != _shape(pool)
        self._wake(key[0], woken)
        return relevant and from_watch

    def pool(self, namespace: str, name: str) -> CachedPool | None:
        with self._lock:
            return self._pools.get((namespace, name))

    def pool_object(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of the pool as the watch last delivered it (None: not seen, or deleted)."""
        with self._lock:
            cached = self._pools.get((namespace, name))
        return copy.deepcopy(dict(cached.obj)) if cached is not None else None

    def pool_view(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The pool as the watch last delivered it, not a copy: for readers only."""
        cached = self.pool(namespace, name)
        return cached.obj if cached is not None else None

    def pods(self, namespace: str, pool: str) -> list[CachedPod]:
        with self._lock:
            return list(self._pods.get((namespace, pool), {}).values())

    def pod(self, namespace: str, pool: str, name: str) -> CachedPod | None:
        with self._lock:
            return self._pods.get((namespace, pool), {}).get(name)

    def pick(
        self,
        namespace: str,
        pool: str,
        choose: Callable[[Sequence[CachedPod]], str | None],
        exclude: set[str] | frozenset[str] = frozenset(),
    ) -> CachedPod | None:
        """Choose among the pool's unreserved pods and reserve the choice until `release`."""
        with self._lock:
            pods = [
                p
                for name, p in self._pods.get((namespace, pool), {}).items()
                if (namespace, name) not in self._reserved and name not in exclude
            ]
            chosen = choose(pods)
            if chosen is None:
                return None
            self._reserved.add((namespace, chosen))
            return next(p for p in pods if p.view.name == chosen)

    def release(self, namespace: str, name: str, pod: Mapping[str, Any] | None = None) -> None:
        """End a reservation; `pod` is the claimed pod as the API server returned it."""
        if pod is not None:
            self.pod_event("MODIFIED", pod, from_watch=False)  # before un-reserving: never idle again
        with self._lock:
            self._reserved.discard((namespace, name))

    def idle_epoch(self, namespace: str, pool: str) -> int:
        with self._lock:
            return self._idle_epoch.get((namespace, pool), 0)

    def wait(self, namespace: str, pool: str, holder: Holder, grows: bool, epoch: int | None = None) -> None:
        """`holder` found no pod in `pool`; `grows`: a new pod of the pool would fit it. A holder
        newly counted towards the pool's size makes the pool look again now (to grow). `epoch`: the
        pool's idle_epoch when the holder's pass began; a pod turned idle since wakes it at once."""
        who = (holder.kind, holder.name)
        with self._lock:
            missed = epoch is not None and self._idle_epoch.get((namespace, pool), 0) != epoch
            for (ns, other), waiters in list(self._waiting.items()):
                if ns == namespace and other != pool:
                    waiters.pop(who, None)  # its poolRef changed
            waiters = self._waiting.setdefault((namespace, pool), {})
            counted = grows and not waiters.get(who, False)
            waiters[who] = grows
        self._wake(namespace, ([("ContainerPool", pool)] if counted else []) + ([who] if missed else []))

    def unwait(self, namespace: str, holder: Holder) -> None:
        """`holder` got a pod, or wants none any more (bound elsewhere, finished, deleted)."""
        who = (holder.kind, holder.name)
        with self._lock:
            for (ns, pool), waiters in list(self._waiting.items()):
                if ns == namespace and waiters.pop(who, None) is not None and not waiters:
                    del self._waiting[(ns, pool)]

    def waiting(self, namespace: str, pool: str, holding: Collection[Holder] = ()) -> int:
        """Holders waiting for `pool` that a new pod of it would serve: the pool grows for them.
        `holding`: holders a pod of the pool is claimed for (as the pool just listed them), not
        counted: a claim that has landed but not yet taken its holder off this list is not one pod
        claimed and one more wanted."""
        held = {(h.kind, h.name) for h in holding}
        with self._lock:
            return sum(
                1
                for who, grows in self._waiting.get((namespace, pool), {}).items()
                if grows and who not in held
            )

    def waiters(self, namespace: str, pool: str) -> list[tuple[str, str]]:
        """(kind, name) of every holder waiting for `pool`: woken when one of its pods turns idle."""
        with self._lock:
            return sorted(self._waiting.get((namespace, pool), {}))

    def size(self) -> int:
        """Pods held. (Not `__len__`: an index with no pods must not read as no index in `if index`.)"""
        with self._lock:
            return sum(len(p) for p in self._pods.values())
