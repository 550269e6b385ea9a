"""Claims of warm pool pods, for TrainingSessions and ContainerClaims alike: choose, claim without
racing, adopt, and wait.

A claim is one merge patch guarded by the pod's resourceVersion, so two holders can never hold the
same pod. A holder first adopts a pod already claimed for it (its claim landed, its status write did
not), so a crash between the two never makes it claim a second pod. A claim that finds no pod is
recorded as waiting in the index: the pool counts it (it grows for it if its pods would fit) and
the pod watch wakes it when one of the pool's pods turns idle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from shoal import telemetry
from shoal.api.pool import ContainerPoolSpec
from shoal.api.session import TrainingSessionSpec
from shoal.builders.pod import build_pod, template_hash
from shoal.builders.session import claim_request
from shoal.claims.holders import SESSION, ClaimOutcome, Holder, claim_patch, holder_of, leave_patch
from shoal.claims.selection import (
    LIVE_USAGE,
    ClaimRequest,
    claimable,
    cursor_of,
    missing_devices,
    select_pod,
    unfit_reason,
)
from shoal.config import Settings
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, pods_path
from shoal.pool.pods import PodView, pod_view
from shoal.reconcile.usage import PoolUsage
from shoal.runtime.cache import CachedPod, CachedPool, ClaimIndex
from shoal.sessions import warm
from shoal.vocab import LABEL_POOL

ATTEMPTS = 3  # claims lost to a faster holder before this pass gives up
log = logging.getLogger("shoal.claims")


class Claimer:
    def __init__(self, kube: Kube, settings: Settings, index: ClaimIndex | None = None) -> None:
        self.kube = kube
        self.settings = settings
        self.index = index  # the watches' view of pools and their pods; None: list on every claim
        self.usage = PoolUsage(kube)

    def claim(
        self,
        namespace: str,
        pool_name: str,
        holder: Holder,
        req: ClaimRequest,
        handed: Mapping[str, str | None],
        started: float,
        now: datetime,
        refuse: Callable[[ContainerPoolSpec, PodView], tuple[str, str] | None] | None = None,
        pin: Callable[[ContainerPoolSpec], str | None] | None = None,
    ) -> ClaimOutcome:
        """Claim a pod of `pool_name` for `holder`; `handed`: annotations the pod gets with the claim
        (a session's config); `started`: monotonic time the holder was first seen; `refuse`: why no
        pod of the pool (its spec, a pod as its template makes them) could ever serve the holder;
        `pin`: the one pod that may serve it while that pod exists (it holds the holder's files)."""
        ns = namespace
        epoch = self.index.idle_epoch(ns, pool_name) if self.index is not None else None
        pool = self.index.pool(ns, pool_name) if self.index is not None else None
        if pool is None:
            raw = self.kube.get_if_exists(custom_path("containerpools", ns, pool_name))
            if raw is None:
                self._wait(ns, pool_name, holder, False, epoch)
                return ClaimOutcome(None, pool_name, "PoolNotFound")
            pool = CachedPool(raw)
        pool_spec = ContainerPoolSpec.model_validate(pool.spec)
        hashed, uid = template_hash(pool_spec), pool.uid

        def template() -> PodView:
            """A new pod of the pool, as its template makes them: whether growing could help, or anything."""
            return pod_view(
                build_pod(pool_name, uid, pool_spec, hashed, self.settings.gpu_resource, name="new")
            )

        refused = refuse(pool_spec, template()) if refuse is not None else None
        if refused is not None:
            self.unwait(ns, holder)  # not counted by the pool: no pod of it would do
            return ClaimOutcome(None, pool_name, refused[0], message=refused[1])
        if pool_spec.selection in LIVE_USAGE:
            req = replace(req, usage=self.usage.read(ns, pool_name))
        unfit: list[str] = []  # why the last choice found nothing, when idle pods did not fit
        pinned = pin(pool_spec) if pin is not None else None
        held_up: list[str] = []  # the pinned pod, when it exists but serves someone else

        def choose(pods: Sequence[CachedPod]) -> str | None:
            owned = [p.view for p in pods if p.view.controller_uid == uid]
            mine = [p for p in owned if holder.claimed_by in p.holders]
            if mine:  # adopt: claimed for this holder already
                return mine[0].name
            rotated = replace(req, cursor=cursor_of(owned))
            idle = claimable(owned, pool_spec.recycle, hashed, now, pool_spec.claimsPerPod)
            if pinned is not None and any(p.name == pinned for p in owned):
                if any(p.name == pinned for p in idle):
                    return pinned
                held_up[:] = [pinned]
                return None
            held_up.clear()
            choice = select_pod(pool_spec.selection, idle, rotated)
            unfit[:] = [why] if (why := unfit_reason(pool_spec.selection, idle, rotated)) else []
            return choice.name if choice else None

        def patch(pod: CachedPod) -> dict[str, Any]:
            shared = pool_spec.claimsPerPod > 1
            return claim_patch(pod.view, pod.resource_version, holder, req.signature, handed, now, shared)

        # First the watch index (no reads on the way to the claim), then a fresh list of the pool.
        claimed = (
            self._claim_from(self.index, ns, pool_name, choose, patch, holder)
            if self.index is not None
            else None
        )
        if claimed is None:
            listed = ClaimIndex()
            for p in self.kube.list_items(pods_path(ns), f"{LABEL_POOL}={pool_name}"):
                listed.pod_event(None, p)
            claimed = self._claim_from(listed, ns, pool_name, choose, patch, holder)
            if claimed is not None and self.index is not None:
                self.index.pod_event("MODIFIED", claimed)
        if claimed is None:
            # Growing helps only if a new pod of the pool would have what the claim asks for, and
            # not at all for a holder that waits for its one pod.
            grows = not held_up and not missing_devices(template(), req)
            self._wait(ns, pool_name, holder, grows, epoch)
            if held_up:
                return ClaimOutcome(
                    None,
                    pool_name,
                    "NoIdlePod",
                    message=f"waiting for pod {held_up[0]}, which holds its checkpoint",
                )
            if unfit:
                return ClaimOutcome(None, pool_name, "NoFittingPod", message=unfit[0])
            return ClaimOutcome(None, pool_name, "NoIdlePod")
        self.unwait(ns, holder)
        latency = time.monotonic() - started
        telemetry.CLAIM_SECONDS.observe(latency)
        return ClaimOutcome(
            claimed["metadata"]["name"],
            pool_name,
            latency_ms=latency * 1000,
            pod_ip=(claimed.get("status") or {}).get("podIP"),
            node=(claimed.get("spec") or {}).get("nodeName"),
        )

    def pool_turns(
        self, namespace: str, pool_name: str, spec: TrainingSessionSpec, now: datetime
    ) -> warm.PoolTurns | None:
        """For a warm session's admission (sessions/admission.decide_warm), from the watches: the
        pool's idle pods, whether it may still grow, whether its pods keep checkpoints to themselves
        (warm.pinned), and the sessions holding its pods. None where the claim itself must answer:
        no index, a pool not seen, or one that cannot serve `spec` at all (the claim names why)."""
        cached = self.index.pool(namespace, pool_name) if self.index is not None else None
        if self.index is None or cached is None:
            return None
        pool = ContainerPoolSpec.model_validate(cached.spec)
        hashed = template_hash(pool)
        template = pod_view(
            build_pod(pool_name, cached.uid, pool, hashed, self.settings.gpu_resource, name="new")
        )
        req, _ = claim_request(spec, None, self.settings)
        if warm.refusal(spec, pool, template, req) is not None:
            return None
        owned = [p.view for p in self.index.pods(namespace, pool_name) if p.view.controller_uid == cached.uid]
        idle = claimable(owned, pool.recycle, hashed, now)
        live = sum(1 for p in owned if not p.deleting)
        can_grow = pool.maxReplicas is None or live < pool.maxReplicas
        # The pods say who holds them before those sessions' own status does (it is written after
        # the claim): a session that claimed a moment ago holds its pod, it does not wait in turn.
        holders = frozenset(
            h.name for p in owned for each in p.holders if (h := holder_of(each)).kind == SESSION
        )
        return warm.PoolTurns(len(idle), can_grow, warm.pinned(pool, "any") is not None, holders)

    def wait(self, namespace: str, pool_name: str, holder: Holder) -> None:
        """`holder` waits its turn at a pool that cannot grow: woken when one of its pods turns idle."""
        self._wait(namespace, pool_name, holder, False, None)

    def claim_session(
        self,
        namespace: str,
        name: str,
        spec: TrainingSessionSpec,
        resume_from: str | None,
        started: float,
        now: datetime,
        checkpoint_pod: str | None = None,
    ) -> ClaimOutcome:
        """A TrainingSession's claim of a pod of its poolRef, handing the pod the session's config;
        refused at once when no pod of the pool could run it, and held to `checkpoint_pod` while that
        pod holds the checkpoint it resumes from (sessions/warm.py)."""
        assert spec.poolRef is not None
        req, handed = claim_request(spec, resume_from, self.settings)
        return self.claim(
            namespace,
            spec.poolRef.name,
            Holder(SESSION, name),
            req,
            handed,
            started,
            now,
            refuse=lambda pool, template: warm.refusal(spec, pool, template, req),
            pin=lambda pool: warm.pinned(pool, checkpoint_pod if resume_from else None),
        )

    def unwait(self, namespace: str, holder: Holder) -> None:
        """`holder` no longer waits for a pod (bound, paused, finished, gone): its pool stops counting it."""
        if self.index is not None:
            self.index.unwait(namespace, holder)

    def _wait(self, ns: str, pool_name: str, holder: Holder, grows: bool, epoch: int | None) -> None:
        if self.index is not None:
            self.index.wait(ns, pool_name, holder, grows, epoch)

    def _claim_from(
        self,
        index: ClaimIndex,
        ns: str,
        pool_name: str,
        choose: Callable[[Sequence[CachedPod]], str | None],
        patch: Callable[[CachedPod], dict[str, Any]],
        holder: Holder,
    ) -> dict[str, Any] | None:
        """Claim the pod `choose` picks from `index` for `holder`, trying the next one when another claim
        wins; the claimed pod as the API server returned it, or None."""
        lost: set[str] = set()
        for _ in range(ATTEMPTS):
            picked = index.pick(ns, pool_name, choose, exclude=lost)
            if picked is None:
                return None
            name = picked.view.name
            try:
                claimed = self.kube.merge_patch(pods_path(ns, name), patch(picked))
            except Exception as exc:
                index.release(ns, name)
                if isinstance(exc, ApiError) and exc.conflict:
                    # Changed since this view (another claim won, or it is ours and its agent wrote):
                    # read it again, and the next choice sees it as it is now.
                    fresh = self.kube.get_if_exists(pods_path(ns, name))
                    if fresh is None:
                        lost.add(name)
                    else:
                        index.pod_event("MODIFIED", fresh, from_watch=False)
                    continue
                if isinstance(exc, ApiError) and exc.not_found:
                    lost.add(name)  # gone: the next one
                    continue
                # No answer (a 5xx, a dropped connection): the claim may have landed all the same.
                if won := self._won_anyway(index, ns, name, holder):
                    return won
                raise
            index.release(ns, name, claimed)
            return claimed
        return None

    def _won_anyway(self, index: ClaimIndex, ns: str, name: str, holder: Holder) -> dict[str, Any] | None:
        """A claim patch that got no answer (a 5xx, a dropped connection) may have been applied: the pod,
        read afresh, says. Claimed for `holder`: that is its claim, and a retry that chose another pod
        from an index the watch has not caught up with would claim a second one. Otherwise the index
        learns the pod as it is, and None (the error stands)."""
        try:
            fresh = self.kube.get_if_exists(pods_path(ns, name))
        except Exception:
            return None  # no answer either: the retry's guarded patch of this pod finds out
        if fresh is None:
            return None
        index.pod_event("MODIFIED", fresh, from_watch=False)
        return fresh if holder.claimed_by in pod_view(fresh).holders else None

    def release(
        self,
        namespace: str,
        pod_name: str,
        holder: Holder,
        signature: str | None,
        now: datetime,
        ok: bool | None = None,
    ) -> bool:
        """Give the pod back if `holder` still holds it, adding the job (`ok`: how it ended, None: not
        known) to its history; False when it holds it no longer (released already, maybe claimed by
        someone else since: that claim stays). The write is guarded by the read's resourceVersion."""
        path = pods_path(namespace, pod_name)
        for _ in range(ATTEMPTS):
            pod = self.kube.get_if_exists(path)
            if pod is None:
                return False
            view = pod_view(pod)
            if holder.claimed_by not in view.holders:
                return False
            rv = str(pod["metadata"].get("resourceVersion", ""))
            try:
                self.kube.merge_patch(path, leave_patch(view, [holder.claimed_by], now, signature, ok, rv))
            except ApiError as exc:
                if exc.conflict:
                    continue  # its agent wrote meanwhile: read it again
                if exc.not_found:
                    return False
                raise
            return True
        log.warning("could not release pod %s/%s: it kept changing", namespace, pod_name)
        return False
