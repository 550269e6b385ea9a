"""Objects of a TrainingSession: its pod, checkpoint PVC, config, Service and the agent's narrow RBAC."""

from __future__ import annotations

import copy
import json
from typing import Any

from shoal.api.common import resource_names
from shoal.api.session import TrainingSessionSpec
from shoal.builders import controller_ref
from shoal.builders.pod import RESTRICTED_CONTAINER_SECURITY, RESTRICTED_POD_SECURITY, own_pod_access
from shoal.claims.selection import ClaimRequest
from shoal.config import Settings
from shoal.pool.jobs import signature_text
from shoal.vocab import (
    AGENT_METRICS_PORT,
    AGENT_METRICS_PORT_NAME,
    ANN_RESUME_FROM,
    ANN_SESSION_CONFIG,
    ENV_ALGORITHM,
    ENV_CHECKPOINT_DIR,
    ENV_CONFIG_FILE,
    ENV_GAME,
    ENV_POD_NAME,
    ENV_POD_NAMESPACE,
    ENV_RESUME_FROM,
    ENV_WORKDIR,
    LABEL_MANAGED,
    LABEL_SESSION,
)

TENSORBOARD_PORT = 6006
GANG_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
VIDEO_PORT = 8000


def names(session: str) -> dict[str, str]:
    return {
        "pvc": f"{session}-checkpoints",
        "config": f"{session}-config",
        "service": session,
        "account": f"{session}-agent",
        "policy": f"{session}-endpoints",
    }


def signature(spec: TrainingSessionSpec) -> str:
    """A session's job signature, as Affinity compares them."""
    return signature_text({"game": spec.game, "algorithm": spec.algorithm}) or ""


def claim_request(
    spec: TrainingSessionSpec, resume_from: str | None, settings: Settings
) -> tuple[ClaimRequest, dict[str, str | None]]:
    """What a session asks of a warm pod (its resources covered, CPU and memory too), and what the pod
    is handed with the claim: its config and env."""
    req = ClaimRequest(
        signature=signature(spec),
        requests=requests(spec, settings.gpu_resource, settings.gpu_memory_resource),
        burstable=False,
    )
    return req, handed(training_config(spec), spec, resume_from)


def training_config(spec: TrainingSessionSpec) -> dict[str, Any]:
    return {
        "game": spec.game,
        "algorithm": spec.algorithm,
        "totalTimesteps": spec.totalTimesteps,
        "vecEnvs": spec.vecEnvs,
        "learningRate": spec.learningRate,
        "checkpointEverySec": spec.checkpointEverySec,
        "videoRecording": spec.videoRecording,
    }


def handed(
    config: dict[str, Any], spec: TrainingSessionSpec, resume_from: str | None
) -> dict[str, str | None]:
    """The annotations a claimed pod gets: the session's config, its env and where it resumes from."""
    body: dict[str, Any] = {**config, "resumeFrom": resume_from}
    if spec.env:
        body["env"] = {e.name: e.value for e in spec.env}
    return {ANN_SESSION_CONFIG: json.dumps(body)}


def requests(spec: TrainingSessionSpec, gpu_resource: str, gpu_memory_resource: str = "") -> dict[str, str]:
    return resource_names(spec.resources, gpu_resource, gpu_memory_resource)


def placement(spec: TrainingSessionSpec) -> dict[str, Any]:
    return {
        "nodeSelector": dict(spec.nodeSelector or {}),
        "tolerations": [t.model_dump(mode="json", exclude_none=True) for t in spec.tolerations or []],
        "affinity": copy.deepcopy(spec.affinity),
    }


def session_pod(
    session: str,
    uid: str,
    pod_name: str,
    spec: TrainingSessionSpec,
    gpu_resource: str,
    gpu_memory_resource: str = "",
    resume_from: str | None = None,
) -> dict[str, Any]:
    n = names(session)
    res = requests(spec, gpu_resource, gpu_memory_resource)
    env = [
        {"name": ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": ENV_POD_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": ENV_CONFIG_FILE, "value": "/etc/shoal/config.json"},
        {"name": ENV_CHECKPOINT_DIR, "value": "/checkpoints"},
        {"name": ENV_WORKDIR, "value": "/shoal"},
        {"name": ENV_GAME, "value": spec.game},
        {"name": ENV_ALGORITHM, "value": spec.algorithm},
    ]
    if resume_from:
        env.append({"name": ENV_RESUME_FROM, "value": resume_from})
    env += [{"name": e.name, "value": e.value} for e in spec.env]
    container: dict[str, Any] = {
        "name": "trainer",
        "image": spec.image or "",  # set unless poolRef (CEL), and then there is no pod of its own
        "command": spec.command or ["shoal-agent"],
        "env": env,
        "ports": [
            {"name": "tensorboard", "containerPort": TENSORBOARD_PORT},
            {"name": "video", "containerPort": VIDEO_PORT},
            {"name": AGENT_METRICS_PORT_NAME, "containerPort": AGENT_METRICS_PORT},
        ],
        "volumeMounts": [
            {"name": "checkpoints", "mountPath": "/checkpoints"},
            {"name": "config", "mountPath": "/etc/shoal", "readOnly": True},
            {"name": "work", "mountPath": "/shoal"},
        ],
        "securityContext": copy.deepcopy(RESTRICTED_CONTAINER_SECURITY),
    }
    if spec.args:
        container["args"] = spec.args
    if res:
        container["resources"] = {"requests": dict(res), "limits": dict(res)}
    annotations = {ANN_RESUME_FROM: resume_from} if resume_from else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "labels": {LABEL_SESSION: session, LABEL_MANAGED: "true"},
            "annotations": annotations,
            "ownerReferences": [controller_ref("TrainingSession", session, uid)],
        },
        "spec": {
            "restartPolicy": "Never",  # restarts are the operator's, with backoff and from a checkpoint
            "serviceAccountName": n["account"],
            "securityContext": pod_security(spec),
            "containers": [container],
            **{k: v for k, v in placement(spec).items() if v},
            "volumes": [
                {"name": "checkpoints", "persistentVolumeClaim": {"claimName": n["pvc"]}},
                {"name": "config", "configMap": {"name": n["config"]}},
                {"name": "work", "emptyDir": {}},
            ],
        },
    }


def pod_security(spec: TrainingSessionSpec) -> dict[str, Any]:
    """The pod's securityContext: restricted's unless spec.securityContext says whom to run as."""
    out: dict[str, Any] = copy.deepcopy(RESTRICTED_POD_SECURITY)
    if spec.securityContext is not None:
        out.update(spec.securityContext.model_dump(exclude_none=True))
    return out


def supporting_objects(
    session: str,
    uid: str,
    namespace: str,
    spec: TrainingSessionSpec,
    ingress_from: tuple[dict[str, Any], ...] | None = None,
    resume_from: str | None = None,
) -> list[dict[str, Any]]:
    """PVC, ConfigMap, Service, the agent's ServiceAccount (its Role is per pod: agent_role), and with
    `ingress_from` (the operator's setting) a NetworkPolicy admitting only those peers to the pod.
    `resume_from`: written into the config, for pods whose environment cannot say it (a TrainJob's)."""
    n = names(session)
    config = training_config(spec)
    if resume_from:
        config["resumeFrom"] = resume_from

    def meta(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "labels": {LABEL_SESSION: session},
            "ownerReferences": [controller_ref("TrainingSession", session, uid)],
        }

    pvc_spec: dict[str, Any] = {
        # A gang's workers all mount it (one template), on several nodes; only worker 0 writes.
        "accessModes": ["ReadWriteMany" if spec.workers > 1 else "ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.checkpoint.size or "1Gi"}},
    }
    if spec.checkpoint.storageClassName:
        pvc_spec["storageClassName"] = spec.checkpoint.storageClassName
    return [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(n["pvc"]), "spec": pvc_spec},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(n["config"]),
            "data": {"config.json": json.dumps(config, sort_keys=True)},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(n["service"]),
            "spec": {
                # Headless: the name resolves to the session's one pod, whose ports the Service's
                # are; no cluster IP to allocate (two fewer writes on every start, warm ones included).
                "clusterIP": "None",
                # A gang's endpoints are worker 0's, whose agent serves them (the Job labels its index).
                "selector": {LABEL_SESSION: session, **({GANG_INDEX_LABEL: "0"} if spec.workers > 1 else {})},
                "ports": [
                    {"name": "tensorboard", "port": TENSORBOARD_PORT, "targetPort": TENSORBOARD_PORT},
                    *(
                        [{"name": "video", "port": VIDEO_PORT, "targetPort": VIDEO_PORT}]
                        if spec.videoRecording
                        else []
                    ),
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(n["account"]),
            "automountServiceAccountToken": True,
        },
        *(
            [network_policy(meta(n["policy"]), session, spec, ingress_from)]
            if ingress_from is not None
            else []
        ),
    ]


def network_policy(
    metadata: dict[str, Any], session: str, spec: TrainingSessionSpec, peers: tuple[dict[str, Any], ...]
) -> dict[str, Any]:
    """Only `peers` reach the session's pod (a warm pod too, while the session's label is on it), and
    only on what the agent serves: TensorBoard, the stream with videoRecording, its metrics. No peers:
    nothing reaches it."""
    ports = [TENSORBOARD_PORT, *([VIDEO_PORT] if spec.videoRecording else []), AGENT_METRICS_PORT]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": {LABEL_SESSION: session}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": list(peers), "ports": [{"protocol": "TCP", "port": p} for p in ports]}]
            if peers
            else [],
        },
    }


def agent_role(session: str, uid: str, pod_name: str) -> list[dict[str, Any]]:
    """The session's agent may reach its own pod and nothing else."""
    return own_pod_access(
        names(session)["account"],
        pod_name,
        controller_ref("TrainingSession", session, uid),
        {LABEL_SESSION: session},
    )


def endpoints(session: str, namespace: str, video: bool) -> dict[str, str]:
    """What the agent serves: TensorBoard always, the live stream only with videoRecording."""
    host = f"{session}.{namespace}.svc"
    out = {"tensorboard": f"http://{host}:{TENSORBOARD_PORT}"}
    if video:
        out["video"] = f"http://{host}:{VIDEO_PORT}/stream"
    return out
