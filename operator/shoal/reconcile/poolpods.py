"""How a pool reads its pods: the watch cache filled once from a list, the label its watch selects on,
and the claims no holder holds any more (given back to the pool)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from shoal import telemetry
from shoal.claims.holders import CLAIM_PREFIX, holder_of, leave_patch, stranded, stranded_holders
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, pods_path
from shoal.pool.pods import holders_of
from shoal.pool.record import names
from shoal.runtime.cache import CachedPod, ClaimIndex, cached_pod
from shoal.vocab import LABEL_MANAGED, LABEL_POOL

log = logging.getLogger("shoal.pool")


def label_managed(kube: Kube, pod: dict[str, Any]) -> dict[str, Any]:
    """`pod` with the label the operator's pod watch selects on (pods made before it existed)."""
    if (pod["metadata"].get("labels") or {}).get(LABEL_MANAGED) == "true":
        return pod
    meta = pod["metadata"]
    try:
        return kube.merge_patch(
            pods_path(meta["namespace"], meta["name"]), {"metadata": {"labels": {LABEL_MANAGED: "true"}}}
        )
    except ApiError as exc:
        if not exc.not_found:
            raise
        return pod


def prime(kube: Kube, index: ClaimIndex, namespaces: tuple[str, ...] | list[str]) -> None:
    """Fill the watch cache with every pool pod from one list per namespace (one in all when the
    operator watches the whole cluster), a page at a time, before any pool plans from it. Pods made
    before the operator labelled its pods for its watch get that label here, the only time they are
    looked for."""
    count = 0

    def pods() -> Iterator[dict[str, Any]]:
        nonlocal count
        for path in [pods_path(ns) for ns in namespaces] or [pods_path(None)]:
            for pod in kube.list_paged(path, LABEL_POOL):
                count += 1
                yield label_managed(kube, pod)

    index.prime(pods())
    log.info("pool cache primed with %d pod(s)", count)


class Stranded:
    """Gives back the pods of a pool whose holder is gone, finished or holds another pod."""

    def __init__(
        self,
        kube: Kube,
        index: ClaimIndex | None,
        claims_cache: Callable[[str], list[dict[str, Any]]] | None,
        sessions_cache: Callable[[str], list[dict[str, Any]]] | None,
    ) -> None:
        self.kube = kube
        self.index = index
        # namespace -> its ContainerClaims (TrainingSessions) as their watch last showed them (None: list)
        self.claims_cache = claims_cache
        self.sessions_cache = sessions_cache

    def release(self, pool: dict[str, Any], pods: list[CachedPod], now: datetime) -> list[CachedPod]:
        """Give back claims no live holder holds (its session or ContainerClaim deleted, or a claim
        its holder went on without); the pods as they are after that."""
        claims = {p.view.name: p.view.claimed_by for p in pods if p.view.claimed_by}
        if not claims:
            return pods
        namespace = pool["metadata"]["namespace"]
        kinds = {c.startswith(CLAIM_PREFIX) for c in claims.values()}  # True: a ContainerClaim's
        sessions = self._sessions(namespace, claims) if False in kinds else []
        by_claims = self._container_claims(namespace, claims) if True in kinds else []
        leaving = stranded_holders(claims, sessions, by_claims)
        freed = sorted(leaving)
        out = []
        for p in pods:
            name = p.view.name
            if name in leaving:
                # The signature is the pod's first holder's: a shared pod's others record no job.
                whole = len(leaving[name]) == len(p.view.holders)
                signature = p.signature if whole else None
                patch = leave_patch(
                    p.view, leaving[name], now, signature, resource_version=p.resource_version
                )
                try:
                    released = self.kube.merge_patch(pods_path(namespace, name), patch)
                except ApiError as exc:
                    if exc.not_found:
                        continue
                    if not exc.conflict:
                        raise
                    # Changed since this pass read it (released and claimed again, say): the
                    # claim it has now is judged on the next pass, not undone on this one's read.
                    fresh = self.kube.get_if_exists(pods_path(namespace, name))
                    if fresh is not None:
                        out.append(cached_pod(fresh))
                        if self.index is not None:
                            self.index.pod_event("MODIFIED", fresh, from_watch=False)
                    freed.remove(name)
                    continue
                if self.index is not None:
                    self.index.pod_event("MODIFIED", released, from_watch=False)
                p = cached_pod(released)
                telemetry.POOL_EVENTS.labels("release", "Stranded").inc()
            out.append(p)
        if freed:
            self.kube.event(
                pool,
                "Normal",
                "Released",
                f"Released pod(s) {names(freed)} from claims no session or ContainerClaim holds any more",
            )
        return out

    def _sessions(self, namespace: str, claims: dict[str, str]) -> list[dict[str, Any]]:
        """The sessions that hold pods of the pool: from the session watch's cache, and read afresh for
        each pod the cache says is stranded (a session's podName moves on and back, so a cached
        version a step behind could give back a pod it holds again); listed without a cache."""
        if self.sessions_cache is None:
            return self.kube.list_items(custom_path("trainingsessions", namespace))
        cached = {s["metadata"]["name"]: s for s in self.sessions_cache(namespace)}
        suspects = {
            holder_of(claims[pod]).name
            for pod in stranded(claims, list(cached.values()), None)
            if not claims[pod].startswith(CLAIM_PREFIX)
        }
        for holder in suspects:
            fresh = self.kube.get_if_exists(custom_path("trainingsessions", namespace, holder))
            if fresh is None:
                cached.pop(holder, None)
            else:
                cached[holder] = fresh
        return list(cached.values())

    def _container_claims(self, namespace: str, claims: dict[str, str]) -> list[dict[str, Any]]:
        """The namespace's ContainerClaims, from the claim watch's cache when it knows every holder
        (a stale entry can only keep a pod a pass longer: a final phase or a podName never reverts);
        listed when a holder is missing from it (not seen yet, e.g. just after a start)."""
        cached = self.claims_cache(namespace) if self.claims_cache else None
        if cached is not None:
            known = {c["metadata"]["name"] for c in cached}
            holders = {
                h[len(CLAIM_PREFIX) :]
                for c in claims.values()
                for h in holders_of(c)
                if h.startswith(CLAIM_PREFIX)
            }
            if holders <= known:
                return cached
        return self.kube.list_items(custom_path("containerclaims", namespace))
