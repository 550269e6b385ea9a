"""ContainerPool watches: the pool itself and the pods that carry its label."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from shoal import telemetry
from shoal.runtime import operator
from shoal.vocab import LABEL_POOL

KIND = "ContainerPool"


@kopf.on.event("shoal.dev", "v1alpha1", "containerpools")
async def pool_event(
    namespace: str | None, name: str, type: str | None, event: Mapping[str, Any], **_: Any
) -> None:
    runtime = operator.get()
    if runtime.index.pool_event(type, event["object"]):  # not for the echo of its status write
        runtime.enqueue(KIND, namespace or "", name, urgent=True)


def pool_pod_event(
    namespace: str, labels: Mapping[str, str], type: str | None, obj: Mapping[str, Any]
) -> None:
    """A pod labelled with a pool (handlers/pods.py dispatches it)."""
    runtime = operator.get()
    telemetry.POD_EVENTS.labels("pool").inc()
    if runtime.index.pod_event(type, obj):  # not for a progress report alone
        runtime.enqueue(KIND, namespace, labels[LABEL_POOL])
