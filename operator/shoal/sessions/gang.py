"""A gang's Job and its worker pods seen as the one pod the session lifecycle knows (pure).

The lifecycle (sessions/lifecycle.py) decides from one pod: its phase, readiness, the agent's
annotations. A gang (builders/gang.py) is that pod when:
- its annotations, progress and commands are worker 0's, whose agent speaks for the session;
- it is ready only when every worker is running and ready (a rendezvous needs them all);
- it has failed as soon as any worker has, or the Job has (`backoffLimit: 0`): the lifecycle then
  restarts the whole gang from the last checkpoint, with the session's backoff;
- it is unschedulable, or stuck, when any worker is (the gang cannot start without it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shoal.builders.gang import JOB_NAME_LABEL
from shoal.builders.session import GANG_INDEX_LABEL


def worker_index(pod: Mapping[str, Any]) -> int | None:
    meta = pod.get("metadata") or {}
    raw = (meta.get("labels") or {}).get(GANG_INDEX_LABEL) or (meta.get("annotations") or {}).get(
        GANG_INDEX_LABEL
    )
    try:
        return int(str(raw))
    except ValueError:
        return None


def members(
    job_name: str, pods: Iterable[Mapping[str, Any]], terminating: bool = False
) -> dict[int, Mapping[str, Any]]:
    """The Job's live pods by index (the newest of an index, should the Job have replaced one); with
    `terminating`, those being deleted too (a suspended gang's, whose agents are still checkpointing)."""
    out: dict[int, Mapping[str, Any]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (meta.get("labels") or {}).get(JOB_NAME_LABEL) != job_name:
            continue
        if meta.get("deletionTimestamp") and not terminating:
            continue
        index = worker_index(pod)
        if index is None:
            continue
        if index not in out or str(meta.get("creationTimestamp")) > str(
            out[index]["metadata"].get("creationTimestamp")
        ):
            out[index] = pod
    return out


def _job_failed(job: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Failed" and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _ready(pod: Mapping[str, Any]) -> bool:
    st = pod.get("status") or {}
    return st.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
    )


def gang_pod(
    job: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]],
    workers: int,
    job_name: str | None = None,
    suspended: bool = False,
    started: str | None = None,
) -> dict[str, Any] | None:
    """The gang as one pod object (name and uid the Job's), or None when the Job is gone.

    A TrainJob (builders/trainjob.py) is a gang too: `job` is the TrainJob (its conditions say Failed
    as a Job's do), `job_name` the Job its JobSet runs, `started` when it was created or last resumed.
    `suspended`: its pods are being ended (a pause); it is one pod until the last of them is gone.
    """
    if job is None or (job.get("metadata") or {}).get("deletionTimestamp"):
        return None
    meta = job["metadata"]
    by_index = members(job_name or meta["name"], pods, terminating=suspended)
    if suspended and not by_index:
        return None
    leader = by_index.get(0)
    lead_meta = (leader or {}).get("metadata") or {}
    lead_status = dict((leader or {}).get("status") or {})
    phase = lead_status.get("phase", "Pending")
    lost = [i for i, p in sorted(by_index.items()) if (p.get("status") or {}).get("phase") == "Failed"]
    if lost or _job_failed(job):
        phase = "Failed"
    elif phase == "Succeeded" and any(
        (p.get("status") or {}).get("phase") != "Succeeded" for p in by_index.values()
    ):
        phase = "Running"  # worker 0 is done; the others are still finishing the same last step
    ready = len(by_index) == workers and all(_ready(p) for p in by_index.values())
    conditions = [
        c for c in lead_status.get("conditions") or [] if c.get("type") not in ("Ready", "PodScheduled")
    ]
    conditions.append({"type": "Ready", "status": "True" if ready else "False"})
    # The first worker the scheduler cannot place is the gang's (and the first stuck container, below).
    unplaced = next(
        (
            c
            for _, p in sorted(by_index.items())
            for c in (p.get("status") or {}).get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("status") == "False"
        ),
        None,
    )
    if unplaced is not None:
        conditions.append(unplaced)
    statuses = [
        s for _, p in sorted(by_index.items()) for s in (p.get("status") or {}).get("containerStatuses") or []
    ]
    return {
        "metadata": {
            "name": meta["name"],
            "uid": meta.get("uid", ""),
            "creationTimestamp": started or meta.get("creationTimestamp"),
            "annotations": dict(lead_meta.get("annotations") or {}),
        },
        "status": {"phase": phase, "conditions": conditions, "containerStatuses": statuses},
        "leader": lead_meta.get("name"),
        "workerPods": [p["metadata"]["name"] for _, p in sorted(by_index.items())],
        "readyWorkers": sum(1 for p in by_index.values() if _ready(p)),
        "lost": lost,
    }
