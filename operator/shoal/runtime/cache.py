"""What the watches last said about pools and their pods: an index for the claim path.

A session binding to a warm pod is the latency users feel, so the claim path picks its candidate
from this index instead of reading the pool and listing its pods on every claim. The index is only a
hint: the claim itself is a patch guarded by the pod's resourceVersion, so a stale entry costs a 409
and the next candidate, never a double claim, and an empty or exhausted index falls back to a list.
Reconcilers that decide what to create or delete keep reading the API server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shoal.pool.pods import LABEL_POOL, PodView, pod_view


@dataclass(frozen=True)
class CachedPod:
    view: PodView
    resource_version: str


@dataclass(frozen=True)
class CachedPool:
    uid: str
    spec: Mapping[str, Any]


class ClaimIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods: dict[tuple[str, str], dict[str, CachedPod]] = {}
        self._pools: dict[tuple[str, str], CachedPool] = {}
        # Pods a worker of this process is claiming right now: concurrent claims skip them rather
        # than all choosing the same least-recently-used pod and losing the race to each other.
        self._reserved: set[tuple[str, str]] = set()
        self._watched: dict[tuple[str, str], PodView] = {}  # (namespace, pod): as the watch last said

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
        view = None if gone else pod_view(dict(pod))
        with self._lock:
            pods = self._pods.setdefault(key, {})
            if view is None:
                pods.pop(name, None)
                if not pods:
                    del self._pods[key]
            else:
                pods[name] = CachedPod(view, str(meta.get("resourceVersion", "")))
            if not from_watch:
                return False
            wkey = (key[0], name)
            before = self._watched.pop(wkey, None) if view is None else self._watched.get(wkey)
            if view is not None:
                self._watched[wkey] = view
            return view is None or before != view

    def pool_event(self, event_type: str | None, pool: Mapping[str, Any]) -> None:
        meta = pool.get("metadata") or {}
        key = (meta.get("namespace", ""), meta["name"])
        with self._lock:
            if event_type == "DELETED" or meta.get("deletionTimestamp"):
                self._pools.pop(key, None)
            else:
                self._pools[key] = CachedPool(str(meta.get("uid", "")), pool.get("spec") or {})

    def pool(self, namespace: str, name: str) -> CachedPool | None:
        with self._lock:
            return self._pools.get((namespace, name))

    def pods(self, namespace: str, pool: str) -> list[CachedPod]:
        with self._lock:
            return list(self._pods.get((namespace, pool), {}).values())

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

    def __len__(self) -> int:
        with self._lock:
            return sum(len(p) for p in self._pods.values())
