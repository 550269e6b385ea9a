"""A session with `workers > 1`: an Indexed Job of torchrun workers and the headless Service they meet at.

This is the shape Kubeflow Trainer renders for a torch TrainJob, on the Job controller every cluster
runs: one pod per worker (index 0..N-1), each starting the user's command (`shoal-agent -- torchrun
...`) with torchrun's own PET_* variables set, so the program needs no launcher flags of its own:

- c10d rendezvous at worker 0: `<job>-0.<service>:29400`, where the Job's pod hostnames
  (`<job>-<index>`) and the Service as their subdomain give each worker a DNS name;
- each worker's rendezvous address is its own name, so torchrun's ranks (assigned in the order of the
  workers' addresses) put global rank 0 on worker 0, whose agent reports progress and takes commands;
- `backoffLimit: 0`: a lost worker fails the Job at once, and the operator restarts the whole gang from
  the last checkpoint with the session's backoff, as it restarts a single pod (a collective cannot go
  on with one member replaced mid-step).
"""

from __future__ import annotations

from typing import Any

from shoal.api.session import TrainingSessionSpec
from shoal.builders import controller_ref
from shoal.builders.session import (  # a label and an annotation of the Job's pods
    GANG_INDEX_LABEL,
    session_pod,
)
from shoal.vocab import ENV_WORKER_INDEX, ENV_WORKERS, LABEL_MANAGED, LABEL_SESSION

RENDEZVOUS_PORT = 29400
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def service_name(session: str) -> str:
    return f"{session}-workers"


def worker_host(job: str, session: str, index: int | str) -> str:
    """A worker's DNS name within the namespace: hostname.subdomain."""
    return f"{job}-{index}.{service_name(session)}"


def per_node(spec: TrainingSessionSpec) -> int:
    return max(1, spec.resources.gpu or 0)  # one process per GPU the pod holds; one on CPU


def worker_env(spec: TrainingSessionSpec) -> list[dict[str, Any]]:
    """How many workers there are and which one this is (the Job's completion index), for the agent:
    every gang's, whoever renders its pods (this Job, or Kubeflow Trainer's JobSet)."""
    return [
        {"name": ENV_WORKERS, "value": str(spec.workers)},
        {
            "name": ENV_WORKER_INDEX,
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{GANG_INDEX_LABEL}']"}},
        },
    ]


def torchrun_env(job: str, session: str, spec: TrainingSessionSpec) -> list[dict[str, Any]]:
    """torchrun reads PET_<FLAG> for each of its flags: the launcher's arguments, set for every worker."""
    return [
        *worker_env(spec),
        {"name": "PET_NNODES", "value": str(spec.workers)},
        {"name": "PET_NPROC_PER_NODE", "value": str(per_node(spec))},
        {"name": "PET_RDZV_BACKEND", "value": "c10d"},
        {"name": "PET_RDZV_ENDPOINT", "value": f"{worker_host(job, session, 0)}:{RENDEZVOUS_PORT}"},
        {"name": "PET_RDZV_ID", "value": job},  # a new gang, a new rendezvous
        # $(VAR) expands the index defined above (the kubelet's dependent variables).
        {"name": "PET_LOCAL_ADDR", "value": worker_host(job, session, f"$({ENV_WORKER_INDEX})")},
        {"name": "PET_MAX_RESTARTS", "value": "0"},  # restarts are the operator's, from a checkpoint
    ]


def gang_metadata(name: str, session: str, uid: str) -> dict[str, Any]:
    """The metadata of an object that runs a session's gang (a Job, a TrainJob, its runtime)."""
    return {
        "name": name,
        "labels": {LABEL_SESSION: session, LABEL_MANAGED: "true"},
        "ownerReferences": [controller_ref("TrainingSession", session, uid)],
    }


def worker_template(
    session: str,
    uid: str,
    spec: TrainingSessionSpec,
    env: list[dict[str, Any]],
    gpu_resource: str,
    gpu_memory_resource: str = "",
    resume_from: str | None = None,
) -> dict[str, Any]:
    """The session's pod as a gang's pod template: `env` (the worker's own) first, the rendezvous
    port; no name or owner, which the Job that makes the pods gives them."""
    pod = session_pod(session, uid, session, spec, gpu_resource, gpu_memory_resource, resume_from)
    container = pod["spec"]["containers"][0]
    container["env"] = env + container["env"]
    container["ports"].append({"name": "rendezvous", "containerPort": RENDEZVOUS_PORT})
    meta = pod["metadata"]
    for key in ("name", "ownerReferences"):
        meta.pop(key)
    return {"metadata": meta, "spec": pod["spec"]}


def gang_job(
    session: str,
    uid: str,
    job: str,
    spec: TrainingSessionSpec,
    gpu_resource: str,
    gpu_memory_resource: str = "",
    resume_from: str | None = None,
) -> dict[str, Any]:
    """The Indexed Job running `spec.workers` copies of the session's pod, as one gang."""
    env = torchrun_env(job, session, spec)
    template = worker_template(session, uid, spec, env, gpu_resource, gpu_memory_resource, resume_from)
    template["spec"]["subdomain"] = service_name(session)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": gang_metadata(job, session, uid),
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.workers,
            "parallelism": spec.workers,
            "backoffLimit": 0,
            "template": template,
        },
    }


def gang_service(session: str, uid: str) -> dict[str, Any]:
    """Headless, and listing workers before they are ready: the rendezvous happens before readiness."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(session),
            "labels": {LABEL_SESSION: session},
            "ownerReferences": [controller_ref("TrainingSession", session, uid)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_SESSION: session},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
        },
    }
