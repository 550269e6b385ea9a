"""TrainingSession watches: the session and the pods labelled with it (own or claimed from a pool)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import kopf

from shoal import telemetry
from shoal.runtime import operator
from shoal.sessions.progress import lifecycle_view
from shoal.vocab import ANN_PROGRESS, LABEL_SESSION

KIND = "TrainingSession"


@kopf.on.event("shoal.dev", "v1alpha1", "trainingsessions")
async def session_event(type: str | None, event: Mapping[str, Any], **_: Any) -> None:
    obj = event["object"]
    runtime = operator.get()
    runtime.notify(KIND, type, obj)
    pool = (obj.get("status") or {}).get("claimedFromPool")
    if type == "DELETED":
        runtime.progress_pacer.forget((obj["metadata"]["namespace"], obj["metadata"]["name"]))
    if type == "DELETED" and pool:
        # No finalizer holds the session back, so its claim is given back by its pool (which frees
        # claims no session holds): now, not at the pool's next requeue.
        runtime.enqueue("ContainerPool", obj["metadata"]["namespace"], pool)


# (namespace, pod) -> what the session's lifecycle last read of it (sessions/progress.lifecycle_view)
_seen: dict[tuple[str, str], tuple[Any, ...]] = {}


def session_pod_event(
    namespace: str, labels: Mapping[str, str], type: str | None, obj: Mapping[str, Any]
) -> None:
    """A pod labelled with a session, its own or claimed (handlers/pods.py dispatches it). A change
    only to its progress report's metrics is bookkeeping: queued behind work someone waits for (new
    sessions, binds, acknowledgements, exits), at most one reconcile per SHOAL_PROGRESS_STATUS_SECONDS
    (the pacer), and coalesced with the reports after it while it waits."""
    telemetry.POD_EVENTS.labels("session").inc()
    key = (namespace, (obj.get("metadata") or {}).get("name", ""))
    view = lifecycle_view(obj, ANN_PROGRESS)
    urgent = type == "DELETED" or _seen.get(key) != view
    if type == "DELETED":
        _seen.pop(key, None)
    else:
        _seen[key] = view
    telemetry.SESSION_POD_EVENTS.labels("urgent" if urgent else "bookkeeping").inc()
    runtime = operator.get()
    runtime.session_pods.event(type, obj)  # before the reconcile it causes reads it
    session = labels[LABEL_SESSION]
    now = time.monotonic()
    if urgent:
        runtime.progress_pacer.ran((namespace, session), now)  # its reconcile writes the figures too
        runtime.enqueue(KIND, namespace, session, urgent=True)
        return
    delay = runtime.progress_pacer.delay((namespace, session), now)
    if delay == 0:
        runtime.enqueue(KIND, namespace, session)
    elif delay is not None:
        runtime.enqueue_after(KIND, namespace, session, delay)


def unlabelled_pod_event(namespace: str, name: str) -> None:
    """A pod without a session label: one given back to its pool is no longer a session's to read
    from the store (a session that still names it reads it from the API server)."""
    _seen.pop((namespace, name), None)
    operator.get().session_pods.drop(namespace, name)
