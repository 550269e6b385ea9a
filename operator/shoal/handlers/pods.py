"""The one pod watch: each pod event goes to the pool, session and claim it is labelled with.

Pods come through the operator's own reflector (shoal.k8s.watch), not kopf: it is the busiest watch,
and kopf's per-event machinery was half the operator's CPU in B1's profile. The reflector reads and
parses in its own thread; the events are handled here, in the event loop the work queues live in.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

from shoal import telemetry
from shoal.claims.holders import CLAIM_PREFIX
from shoal.handlers.claim import claim_pod_event
from shoal.handlers.pool import pool_pod_event
from shoal.handlers.session import session_pod_event, unlabelled_pod_event
from shoal.k8s.client import Kube
from shoal.k8s.paths import pods_path
from shoal.k8s.watch import Event, Reflector
from shoal.vocab import ANN_CLAIMED_BY, LABEL_CLAIM, LABEL_MANAGED, LABEL_POOL, LABEL_SESSION, MANAGED

HANDLE_TIMEOUT = 30.0  # seconds the reflector waits for the loop to handle a batch, at most


def pod_event(type: str | None, pod: Mapping[str, Any]) -> None:
    meta = pod.get("metadata") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    # Every pod event that arrives, counted: with the server-side selector no foreign one does.
    telemetry.POD_WATCH_EVENTS.labels("shoal" if labels.get(LABEL_MANAGED) == "true" else "foreign").inc()
    ns = meta.get("namespace") or ""
    if LABEL_POOL in labels:
        pool_pod_event(ns, labels, type, pod)
    if LABEL_SESSION in labels:
        session_pod_event(ns, labels, type, pod)
    else:
        unlabelled_pod_event(ns, meta.get("name", ""))
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    if LABEL_CLAIM in labels or CLAIM_PREFIX in annotations.get(ANN_CLAIMED_BY, ""):
        claim_pod_event(ns, labels, annotations, type, meta)


def pod_events(batch: list[Event]) -> None:
    for type_, pod in batch:
        pod_event(type_, pod)


def watch_pods(kube: Kube, namespaces: tuple[str, ...] | list[str]) -> list[Reflector]:
    """Start watching the operator's pods (one watch per namespace, or one for the cluster), their
    events handed to `pod_events` in the running event loop."""
    loop = asyncio.get_running_loop()

    def deliver(batch: list[Event]) -> None:
        # Waits until the loop has handled the batch: the reflector reads no faster than the events
        # are handled, so a backlog (a list of thousands of pods) never piles up in memory.
        handled = threading.Event()

        def handle() -> None:
            try:
                pod_events(batch)
            finally:
                handled.set()

        loop.call_soon_threadsafe(handle)
        handled.wait(HANDLE_TIMEOUT)

    # Server-side selection: foreign pods cost the operator nothing.
    reflectors = [
        Reflector(kube, path, MANAGED, deliver)
        for path in [pods_path(ns) for ns in namespaces] or [pods_path(None)]
    ]
    for reflector in reflectors:
        reflector.start()
    return reflectors
