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
    operator.get().notify(KIND, type, event["object"])


@kopf.on.event("", "v1", "pods", labels={LABEL_SESSION: kopf.PRESENT})
async def session_pod_event(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    telemetry.POD_EVENTS.labels("session").inc()
    operator.get().enqueue(KIND, namespace or "", labels[LABEL_SESSION])
