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

from typing import Any

from shoal.api.session import TrainingSessionSpec
from shoal.builders.gang import gang_metadata, per_node, worker_env, worker_template
from shoal.vocab import ANN_SPEC_HASH, ANN_STARTED

TRAINER_API = "trainer.kubeflow.org/v1alpha1"
NODE = "node"  # the replicated Job and container the torch plugin fills in (its `trainer` step)
ANCESTOR_LABEL = "trainer.kubeflow.org/trainjob-ancestor-step"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"


def node_job(trainjob: str) -> str:
    """The name JobSet gives the Job of replicated job `node` (replica 0)."""
    return f"{trainjob}-{NODE}-0"


def training_runtime(
    session: str, uid: str, spec: TrainingSessionSpec, gpu_resource: str, gpu_memory_resource: str = ""
) -> dict[str, Any]:
    """The session's pod as a namespaced TrainingRuntime named like the session."""
    template = worker_template(session, uid, spec, worker_env(spec), gpu_resource, gpu_memory_resource)
    template["spec"]["containers"][0]["name"] = NODE
    return {
        "apiVersion": TRAINER_API,
        "kind": "TrainingRuntime",
        "metadata": gang_metadata(session, session, uid),
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
                                    "template": template,
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
    metadata = gang_metadata(name, session, uid)
    metadata["annotations"] = {ANN_SPEC_HASH: spec_hash, ANN_STARTED: now}
    return {
        "apiVersion": TRAINER_API,
        "kind": "TrainJob",
        "metadata": metadata,
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
