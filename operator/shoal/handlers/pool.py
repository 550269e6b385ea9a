"""ContainerPool watches: the pool itself and the pods that carry its label."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from shoal import telemetry
from shoal.pool.pods import LABEL_POOL
from shoal.runtime import operator

KIND = "ContainerPool"


@kopf.on.event("shoal.dev", "v1alpha1", "containerpools")
async def pool_event(
    namespace: str | None, name: str, type: str | None, event: Mapping[str, Any], **_: Any
) -> None:
    runtime = operator.get()
    runtime.index.pool_event(type, event["object"])
    runtime.enqueue(KIND, namespace or "", name)


@kopf.on.event("", "v1", "pods", labels={LABEL_POOL: kopf.PRESENT})
async def pod_event(
    namespace: str | None, labels: Mapping[str, str], type: str | None, event: Mapping[str, Any], **_: Any
) -> None:
    runtime = operator.get()
    telemetry.POD_EVENTS.labels("pool").inc()
    if runtime.index.pod_event(type, event["object"]):  # not for a progress report alone
        runtime.enqueue(KIND, namespace or "", labels[LABEL_POOL])
