"""ContainerClaim watches: the claim, and the pool pod it holds (labelled with it, or on a shared pod
named in its shoal.dev/claimed-by)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from shoal import telemetry
from shoal.claims.holders import CLAIM_PREFIX, CONTAINER_CLAIM, Holder
from shoal.pool.pods import holders_of
from shoal.runtime import operator
from shoal.vocab import ANN_CLAIMED_BY, LABEL_CLAIM

KIND = "ContainerClaim"


@kopf.on.event("shoal.dev", "v1alpha1", "containerclaims")
async def claim_event(type: str | None, event: Mapping[str, Any], **_: Any) -> None:
    obj = event["object"]
    runtime = operator.get()
    runtime.notify(KIND, type, obj)
    pool = ((obj.get("spec") or {}).get("poolRef") or {}).get("name")
    if type == "DELETED" and pool and (obj.get("status") or {}).get("podName"):
        # Deleting the claim is how its pod is given back: its pool frees claims no holder holds.
        runtime.enqueue("ContainerPool", obj["metadata"]["namespace"], pool)


def claim_holders(labels: Mapping[str, str], annotations: Mapping[str, str]) -> list[str]:
    """The ContainerClaims a pool pod's event concerns: the one its label names, or on a shared pod
    (no holder label) every claim its shoal.dev/claimed-by lists."""
    if LABEL_CLAIM in labels:
        return [labels[LABEL_CLAIM]]
    listed = holders_of(annotations.get(ANN_CLAIMED_BY))
    return [h[len(CLAIM_PREFIX) :] for h in listed if h.startswith(CLAIM_PREFIX)]


def claim_pod_event(
    namespace: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    type: str | None,
    meta: Mapping[str, Any],
) -> None:
    """A pool pod held by ContainerClaims (handlers/pods.py dispatches it)."""
    telemetry.POD_EVENTS.labels("claim").inc()
    held_by = holders_of(annotations.get(ANN_CLAIMED_BY))
    for name in claim_holders(labels, annotations):
        holder = Holder(CONTAINER_CLAIM, name)
        # A claim only needs to hear that its pod is going or no longer its own (Lost); the echo of
        # its own claim patch and any later change on a pod it still holds need no reconcile.
        if type == "DELETED" or meta.get("deletionTimestamp") or holder.claimed_by not in held_by:
            operator.get().enqueue(KIND, namespace, holder.name, urgent=True)
