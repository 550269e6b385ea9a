"""The one pod watch handler: kopf runs its handler machinery once per handler per event, so one
handler that hands each event to the pool, session and claim it is labelled with costs a third of
three (B1's profile: kopf's per-handler work was the largest part of the operator's CPU)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from shoal import telemetry
from shoal.builders import LABEL_MANAGED
from shoal.builders.session import LABEL_SESSION
from shoal.handlers.claim import claim_pod_event
from shoal.handlers.pool import pool_pod_event
from shoal.handlers.session import session_pod_event, unlabelled_pod_event
from shoal.pool.claims import LABEL_CLAIM
from shoal.pool.pods import LABEL_POOL


@kopf.on.event("", "v1", "pods")
async def pod_event(
    namespace: str | None,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    type: str | None,
    meta: Mapping[str, Any],
    event: Mapping[str, Any],
    **_: Any,
) -> None:
    # Every pod event that arrives, counted: with the server-side selector no foreign one does.
    telemetry.POD_WATCH_EVENTS.labels("shoal" if labels.get(LABEL_MANAGED) == "true" else "foreign").inc()
    ns = namespace or ""
    if LABEL_POOL in labels:
        pool_pod_event(ns, labels, type, event["object"])
    if LABEL_SESSION in labels:
        session_pod_event(ns, labels, type, event["object"])
    else:
        unlabelled_pod_event(ns, meta.get("name", ""))
    if LABEL_CLAIM in labels:
        claim_pod_event(ns, labels, annotations, type, meta)
