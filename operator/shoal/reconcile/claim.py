"""ContainerClaim reconciler: read the claim and its pod, call the pure step (claims/containerclaim.py),
claim or give back through the shared claimer, write status and Events.

Deleting a claim releases its pod without a finalizer: the claim's DELETED event enqueues its pool,
which gives back every claim no live holder holds (reconcile/pool.py), as for TrainingSessions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shoal import conditions
from shoal.api.claim import ContainerClaimSpec
from shoal.claims.containerclaim import (
    HeldPod,
    claim_request,
    decide,
    gpu_memory_condition,
    record,
)
from shoal.claims.holders import CONTAINER_CLAIM, Holder, signature_text
from shoal.config import Settings
from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, pods_path
from shoal.pool.pods import pod_view
from shoal.reconcile import write_status
from shoal.reconcile.claimer import Claimer
from shoal.runtime.cache import ClaimIndex
from shoal.runtime.store import Store

log = logging.getLogger("shoal.claim")
PLURAL = "containerclaims"


class ClaimReconciler:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        index: ClaimIndex | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.claimer = Claimer(kube, settings, index)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.first_seen: dict[str, float] = {}  # uid -> monotonic time this process first saw it
        self.seen: dict[tuple[str, str], tuple[str, int]] = {}  # what a reconcile last read: uid, generation
        # Each claim as its watch (or this process's own status write) last showed it, as a client-go
        # lister would: the bind path reads no claim from the API server, a request less per claim.
        self.store = Store()

    def relevant(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """A new claim, a spec change or a deletion: the echo of each status write is skipped (what
        the claim does next follows its pod's events and its own requeues)."""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            # Nothing to read back: its pool gives the pod back; here it stops counting as waiting.
            self.store.gone(obj)  # the answer to a write in flight must not bring it back
            self._forget(key[0], key[1], dict(obj))
            return False
        self.store.put(obj)
        if event_type in (None, "ADDED") or meta.get("deletionTimestamp"):
            return True
        return self.seen.get(key) != (str(meta.get("uid")), int(meta.get("generation") or 0))

    def cached(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's claims as last seen (for the pool's check of who still holds its pods)."""
        return self.store.items(namespace)

    def reconcile(self, namespace: str, name: str) -> float | None:
        holder = Holder(CONTAINER_CLAIM, name)
        obj = self.store.read(
            namespace, name, lambda: self.kube.get_if_exists(custom_path(PLURAL, namespace, name))
        )
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            self._forget(namespace, name, obj)
            return None
        meta = obj["metadata"]
        self.seen[(namespace, name)] = (str(meta.get("uid")), int(meta.get("generation") or 0))
        started = self.first_seen.setdefault(meta["uid"], time.monotonic())
        now = self.clock()
        status = dict(obj.get("status") or {})
        try:
            spec = ContainerClaimSpec.model_validate(obj.get("spec") or {})
        except ValidationError as exc:  # the schema refuses nearly all of it; this is the rest
            self.claimer.unwait(namespace, holder)
            self.first_seen.pop(meta["uid"], None)
            message = str(exc)[:512]
            invalid = conditions.condition("Bound", False, "InvalidSpec", message)
            self._write(obj, {**status, "phase": status.get("phase") or "Pending"}, invalid, now)
            return None
        held = self._held(namespace, spec.poolRef.name, status.get("podName"), holder)
        step = decide(spec, status, held, None, now)
        patched = chosen = 0.0
        if step.needs_claim:
            req = claim_request(spec, self.settings.gpu_resource, self.settings.gpu_memory_resource)
            chosen = time.time()  # the attempt that binds chooses its pod here, then patches it
            outcome = self.claimer.claim(namespace, spec.poolRef.name, holder, req, {}, started, now)
            patched = time.time()
            step = decide(spec, status, None, outcome, now)
        if step.status.get("phase") != "Pending":
            self.claimer.unwait(namespace, holder)
        if step.release:
            self.claimer.release(
                namespace, step.release, holder, signature_text(spec.signature), now, ok=False
            )  # overran its hold
        bound = conditions.condition("Bound", *step.bound) if step.bound else None
        self._write(
            obj, step.status, bound, now, gpu_memory_condition(spec, self.settings.gpu_memory_resource)
        )
        if status.get("phase") != "Bound" and step.status.get("phase") == "Bound" and patched:
            # Where the bind's time went, in the moments this process recorded (wall clock).
            moments = {
                "seen": time.time() - (time.monotonic() - started),
                "chosen": chosen,
                "patched": patched,
                "status": time.time(),
            }
            log.info(
                "claim %s/%s bound in %.3f s",
                namespace,
                name,
                moments["status"] - moments["seen"],
                extra={"claim": f"{namespace}/{name}", "moments": moments},
            )
        for type_, reason, message in step.events:  # after the status they describe
            self.kube.event(obj, type_, reason, message)
        if step.status.get("phase") in ("Expired", "Lost"):
            self.first_seen.pop(meta["uid"], None)
        return step.requeue

    def _held(self, namespace: str, pool: str, pod_name: str | None, holder: Holder) -> HeldPod | None:
        """The pod the claim's status names, from the pool's watch cache (a GET only when the cache
        does not hold it: not seen yet, or gone)."""
        if not pod_name:
            return None
        index = self.claimer.index
        cached = index.pod(namespace, pool, pod_name) if index is not None else None
        if cached is not None:
            view = cached.view
            mine = holder.claimed_by in view.holders
            return None if view.deleting else HeldPod(pod_name, mine, ip=view.ip, node=view.node)
        pod = self.kube.get_if_exists(pods_path(namespace, pod_name))
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return None
        mine = holder.claimed_by in pod_view(pod).holders
        return HeldPod(
            pod_name,
            mine,
            ip=(pod.get("status") or {}).get("podIP"),
            node=(pod.get("spec") or {}).get("nodeName"),
        )

    def _forget(self, namespace: str, name: str, obj: dict[str, Any] | None) -> None:
        """The claim is gone (or going): nothing of it stays here, and it no longer waits."""
        self.seen.pop((namespace, name), None)
        self.claimer.unwait(namespace, Holder(CONTAINER_CLAIM, name))
        if obj is not None:
            self.first_seen.pop(obj["metadata"]["uid"], None)

    def _write(
        self,
        obj: dict[str, Any],
        status: dict[str, Any],
        bound: dict[str, Any] | None,
        now: datetime,
        gpu_memory: dict[str, Any] | None = None,
    ) -> None:
        old = obj.get("status") or {}
        new = record(old, status, bound, obj["metadata"].get("generation"), now, gpu_memory)
        written = write_status(self.kube, PLURAL, obj, new)
        if written is None:
            return
        self.store.put(written)
        if gpu_memory and conditions.turned_false(
            old.get("conditions"), gpu_memory
        ):  # once, after the status it describes
            self.kube.event(obj, "Warning", gpu_memory["reason"], gpu_memory["message"])
