"""A session with `workers > 1` where Kubeflow Trainer is installed: a TrainJob on a TrainingRuntime of its own.

The runtime is the session's pod as a Trainer torch runtime: one replicated Job `node` whose pod is
the one Shoal would run itself (agent, volumes, account, restricted security, the session's label),
with `mlPolicy.torch`, so the Trainer's torch plugin sets torchrun's PET_* variables (static
rendezvous at node 0, `PET_NODE_RANK` from the Job's completion index) and JobSet gives the pods
their DNS names. The TrainJob itself says only how many nodes, and whether it is suspended:

- pause suspends it (the Trainer suspends its JobSet, whose Jobs end their pods with SIGTERM, and the
  agents checkpoint on it); resume unsuspends the same TrainJob;
- where it resumes from is in the session's ConfigMap (`resumeFrom`), not in the pods' environment:
  a suspended JobSet's pod template may change only its labels, annotations, node selector and
  tolerations (JobSet's webhook), and the agent reads the mounted config when its pod starts.
"""

from __future__ import annotations

import copy
from typing import Any

from shoal.api.session import TrainingSessionSpec
from shoal.builders import controller_ref
from shoal.builders.gang import RENDEZVOUS_PORT
from shoal.builders.session import GANG_INDEX_LABEL, session_pod
from shoal.vocab import (
    ANN_SPEC_HASH,
    ANN_STARTED,
    ENV_WORKER_INDEX,
    ENV_WORKERS,
    LABEL_MANAGED,
    LABEL_SESSION,
)

TRAINER_API = "trainer.kubeflow.org/v1alpha1"
NODE = "node"  # the replicated Job and container the torch plugin fills in (its `trainer` step)
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"


def node_job(trainjob: str) -> str:
    """The name JobSet gives the Job of replicated job `node` (replica 0)."""
    return f"{trainjob}-{NODE}-0"


def per_node(spec: TrainingSessionSpec) -> int:
    return max(1, spec.resources.gpu or 0)  # one process per GPU the pod holds; one on CPU


def training_runtime(
    session: str, uid: str, spec: TrainingSessionSpec, gpu_resource: str, gpu_memory_resource: str = ""
) -> dict[str, Any]:
    """The session's pod as a namespaced TrainingRuntime named like the session."""
    pod = session_pod(session, uid, session, spec, gpu_resource, gpu_memory_resource)
    container = pod["spec"]["containers"][0]
    container["name"] = NODE
    container["env"] = [
        {"name": ENV_WORKERS, "value": str(spec.workers)},
        {
            "name": ENV_WORKER_INDEX,
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{GANG_INDEX_LABEL}']"}},
        },
        *container["env"],
    ]
    container["ports"].append({"name": "rendezvous", "containerPort": RENDEZVOUS_PORT})
    template_meta = copy.deepcopy(pod["metadata"])
    for key in ("name", "ownerReferences", "annotations"):
        template_meta.pop(key)
    return {
        "apiVersion": TRAINER_API,
        "kind": "TrainingRuntime",
        "metadata": {
            "name": session,
            "labels": {LABEL_SESSION: session, LABEL_MANAGED: "true"},
            "ownerReferences": [controller_ref("TrainingSession", session, uid)],
        },
        "spec": {
            "mlPolicy": {"numNodes": spec.workers, "torch": {"numProcPerNode": per_node(spec)}},
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": NODE,
                            "replicas": 1,
                            "template": {
                                "metadata": {"labels": {ANCESTOR_LABEL: "trainer"}},
                                "spec": {
                                    # A lost worker fails the Job, the JobSet and the TrainJob at once;
                                    # the operator restarts the gang from the last checkpoint.
                                    "backoffLimit": 0,
                                    "template": {"metadata": template_meta, "spec": pod["spec"]},
                                },
                            },
                        }
                    ]
                }
            },
        },
    }


def train_job(
    session: str, uid: str, name: str, spec: TrainingSessionSpec, spec_hash: str, now: str
) -> dict[str, Any]:
    return {
        "apiVersion": TRAINER_API,
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "labels": {LABEL_SESSION: session, LABEL_MANAGED: "true"},
            "annotations": {ANN_SPEC_HASH: spec_hash, ANN_STARTED: now},
            "ownerReferences": [controller_ref("TrainingSession", session, uid)],
        },
        "spec": {
            "runtimeRef": {"name": session, "apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime"},
            "trainer": {"numNodes": spec.workers, "numProcPerNode": per_node(spec)},
            "suspend": False,
        },
    }


def suspension(suspend: bool, now: str) -> dict[str, Any]:
    """The merge patch that suspends a TrainJob, or resumes it (and marks when it started again)."""
    patch: dict[str, Any] = {"spec": {"suspend": suspend}}
    if not suspend:
        patch["metadata"] = {"annotations": {ANN_STARTED: now}}
    return patch
