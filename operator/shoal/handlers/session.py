"""TrainingSession watches: the session and the pods labelled with it (own or claimed from a pool)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from shoal import telemetry
from shoal.builders.session import LABEL_SESSION
from shoal.runtime import operator

KIND = "TrainingSession"


@kopf.on.event("shoal.dev", "v1alpha1", "trainingsessions")
async def session_event(type: str | None, event: Mapping[str, Any], **_: Any) -> None:
    obj = event["object"]
    runtime = operator.get()
    runtime.notify(KIND, type, obj)
    pool = (obj.get("status") or {}).get("claimedFromPool")
    if type == "DELETED" and pool:
        # No finalizer holds the session back, so its claim is given back by its pool (which frees
        # claims no session holds): now, not at the pool's next requeue.
        runtime.enqueue("ContainerPool", obj["metadata"]["namespace"], pool)


def session_pod_event(namespace: str, labels: Mapping[str, str]) -> None:
    """A pod labelled with a session, its own or claimed (handlers/pods.py dispatches it)."""
    telemetry.POD_EVENTS.labels("session").inc()
    operator.get().enqueue(KIND, namespace, labels[LABEL_SESSION])
