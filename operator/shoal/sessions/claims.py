"""Claims of warm pool pods for TrainingSessions: choose, claim without racing, adopt, release.

A claim is one merge patch guarded by the pod's resourceVersion, so two sessions can never hold the
same pod. A session first adopts a pod already claimed for it (its claim landed, its status write did
not), so a crash between the two never makes it claim a second pod.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from shoal import telemetry
from shoal.agent.protocol import ANN_SESSION_CONFIG
from shoal.api.pool import ContainerPoolSpec
from shoal.api.session import TrainingSessionSpec
from shoal.builders.pod import template_hash
from shoal.builders.session import LABEL_SESSION, requests, training_config
from shoal.config import Settings
from shoal.k8s.client import ApiError, Kube, custom_path, pods_path
from shoal.pool.pods import (
    ANN_CLAIMED_BY,
    ANN_CLAIMS,
    ANN_LAST_CLAIMED,
    ANN_LAST_RELEASED,
    ANN_LAST_SIGNATURE,
    CLAIMED,
    LABEL_POOL,
    LABEL_STATE,
)
from shoal.pool.selection import ClaimRequest, claimable, cursor_of, select_pod, unfit_reason
from shoal.runtime.cache import CachedPod, CachedPool, ClaimIndex
from shoal.sessions.lifecycle import ANN_COMMAND, ANN_COMMAND_ID, ANN_PROGRESS, FINAL, ClaimOutcome
from shoal.times import format_time

ATTEMPTS = 3  # claims lost to a faster session before this pass gives up


class Claimer:
    def __init__(self, kube: Kube, settings: Settings, index: ClaimIndex | None = None) -> None:
        self.kube = kube
        self.settings = settings
        self.index = index  # the watches' view of pools and their pods; None: list on every claim

    def claim(
        self,
        obj: dict[str, Any],
        spec: TrainingSessionSpec,
        resume_from: str | None,
        started: float,
        now: datetime,
    ) -> ClaimOutcome:
        """Claim a pod of spec.poolRef for the session `obj`; `started`: monotonic time it was first seen."""
        ns, session = obj["metadata"]["namespace"], obj["metadata"]["name"]
        assert spec.poolRef is not None
        pool_name = spec.poolRef.name
        pool = self.index.pool(ns, pool_name) if self.index else None
        if pool is None:
            raw = self.kube.get_if_exists(custom_path("containerpools", ns, pool_name))
            if raw is None:
                return ClaimOutcome(None, pool_name, "PoolNotFound")
            pool = CachedPool(raw["metadata"]["uid"], raw["spec"])
        pool_spec = ContainerPoolSpec.model_validate(pool.spec)
        req = ClaimRequest(
            signature=f"{spec.game}/{spec.algorithm}",
            requests=requests(spec, self.settings.gpu_resource, self.settings.gpu_memory_resource),
        )
        hashed, uid = template_hash(pool_spec), pool.uid
        unfit: list[str] = []  # why the last choice found nothing, when idle pods did not fit

        def choose(pods: Sequence[CachedPod]) -> str | None:
            owned = [p.view for p in pods if p.view.controller_uid == uid]
            mine = [p for p in owned if p.claimed_by == session]
            if mine:  # adopt: claimed for this session already
                return mine[0].name
            rotated = replace(req, cursor=cursor_of(owned))
            idle = claimable(owned, pool_spec.recycle, hashed, now)
            choice = select_pod(pool_spec.selection, idle, rotated)
            unfit[:] = [why] if (why := unfit_reason(idle, rotated)) else []
            return choice.name if choice else None

        patch = self._claim_patch(spec, session, resume_from, now)
        # First the watch index (no reads on the way to the claim), then a fresh list of the pool.
        claimed = self._claim_from(self.index, ns, pool_name, choose, patch) if self.index else None
        if claimed is None:
            listed = ClaimIndex()
            for p in self.kube.list_items(pods_path(ns), f"{LABEL_POOL}={pool_name}"):
                listed.pod_event(None, p)
            claimed = self._claim_from(listed, ns, pool_name, choose, patch)
            if claimed is not None and self.index is not None:
                self.index.pod_event("MODIFIED", claimed)
        if claimed is None:
            if unfit:
                return ClaimOutcome(None, pool_name, "NoFittingPod", message=unfit[0])
            return ClaimOutcome(None, pool_name, "NoIdlePod")
        latency = time.monotonic() - started
        telemetry.CLAIM_SECONDS.observe(latency)
        return ClaimOutcome(claimed["metadata"]["name"], pool_name, latency_ms=latency * 1000)

    def _claim_from(
        self,
        index: ClaimIndex,
        ns: str,
        pool_name: str,
        choose: Callable[[Sequence[CachedPod]], str | None],
        patch: Callable[[CachedPod], dict[str, Any]],
    ) -> dict[str, Any] | None:
        """Claim the pod `choose` picks from `index`, trying the next one when another claim wins;
        the claimed pod as the API server returned it, or None."""
        lost: set[str] = set()
        for _ in range(ATTEMPTS):
            picked = index.pick(ns, pool_name, choose, exclude=lost)
            if picked is None:
                return None
            name = picked.view.name
            try:
                claimed = self.kube.merge_patch(pods_path(ns, name), patch(picked))
            except ApiError as exc:
                index.release(ns, name)
                if exc.conflict or exc.not_found:
                    lost.add(name)  # someone else was faster, or it is gone: the next one
                    continue
                raise
            index.release(ns, name, claimed)
            return claimed
        return None

    @staticmethod
    def _claim_patch(
        spec: TrainingSessionSpec, session: str, resume_from: str | None, now: datetime
    ) -> Callable[[CachedPod], dict[str, Any]]:
        config = json.dumps({**training_config(spec), "resumeFrom": resume_from})

        def patch(pod: CachedPod) -> dict[str, Any]:
            labels = {LABEL_STATE: CLAIMED, LABEL_SESSION: session}
            if pod.view.claimed_by == session:
                # Adopting a claim made earlier (its record lost): the pod's agent may be training and
                # reporting already, so its progress, commands and config stay as they are, and no
                # resourceVersion: the pod is this session's whatever changed on it since (a 409 here
                # would send the claim on to a second pod).
                return {"metadata": {"labels": labels}}
            return {
                "metadata": {
                    "resourceVersion": pod.resource_version,  # lose the race cleanly, never double-claim
                    "labels": labels,
                    "annotations": {
                        ANN_CLAIMED_BY: session,
                        ANN_CLAIMS: str(pod.view.claims + 1),
                        ANN_LAST_CLAIMED: format_time(now),
                        ANN_COMMAND: None,
                        ANN_COMMAND_ID: None,
                        ANN_PROGRESS: None,
                        ANN_SESSION_CONFIG: config,
                    },
                }
            }

        return patch

    def release(self, namespace: str, pod_name: str, spec: TrainingSessionSpec | None, now: datetime) -> None:
        signature = f"{spec.game}/{spec.algorithm}" if spec is not None else None
        self.kube.merge_patch_if_exists(pods_path(namespace, pod_name), release_patch(now, signature))


def release_patch(now: datetime, signature: str | None = None) -> dict[str, Any]:
    """Back to the pool, clean: no session label, config, command or progress left."""
    annotations: dict[str, str | None] = {
        ANN_CLAIMED_BY: None,
        ANN_LAST_RELEASED: format_time(now),
        ANN_SESSION_CONFIG: None,
        ANN_PROGRESS: None,
        ANN_COMMAND: None,
        ANN_COMMAND_ID: None,
    }
    if signature:
        annotations[ANN_LAST_SIGNATURE] = signature
    return {"metadata": {"labels": {LABEL_SESSION: None}, "annotations": annotations}}


def config_signature(pod: dict[str, Any]) -> str | None:
    """The job signature of the session a pod was claimed for, from the config it was handed: what
    Affinity remembers of a claim given back after its session is gone."""
    try:
        config = json.loads((pod["metadata"].get("annotations") or {}).get(ANN_SESSION_CONFIG) or "{}")
    except ValueError:
        return None
    if not isinstance(config, dict) or not config.get("game") or not config.get("algorithm"):
        return None
    return f"{config['game']}/{config['algorithm']}"


def stranded(claims: dict[str, str], sessions: list[dict[str, Any]]) -> list[str]:
    """Pods (of `claims`: pod -> claiming session) that no live session holds or will adopt: the
    session is gone or finished, holds another pod, or holds none and does not want to run. One that
    wants to run and holds no pod adopts its claim on its next pass (its claim landed, its status
    write did not, or not yet): that claim stays."""
    by_name = {s["metadata"]["name"]: s for s in sessions if not s["metadata"].get("deletionTimestamp")}
    out = []
    for pod, session in sorted(claims.items()):
        obj = by_name.get(session)
        st = (obj or {}).get("status") or {}
        holds = st.get("podName")
        wants = ((obj or {}).get("spec") or {}).get("runState", "Running") == "Running"
        if obj is None or st.get("phase") in FINAL or (holds and holds != pod) or (not holds and not wants):
            out.append(pod)
    return out
