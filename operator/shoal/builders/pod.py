"""Pods of a ContainerPool, built from its template."""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from typing import Any

from shoal.api.pool import ContainerPoolSpec
from shoal.builders import controller_ref
from shoal.vocab import (
    AGENT_METRICS_PORT,
    AGENT_METRICS_PORT_NAME,
    ENV_CHECKPOINT_DIR,
    ENV_POD_NAME,
    ENV_POD_NAMESPACE,
    ENV_WORKDIR,
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_STATE,
    LABEL_TEMPLATE_HASH,
    UNCLAIMED,
)

# Pod Security "restricted" defaults, used where the user's template says nothing.
RESTRICTED_POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def template_hash(spec: ContainerPoolSpec) -> str:
    """Changes whenever the pods the pool would create change."""
    data: dict[str, Any] = {
        "template": spec.template.model_dump(mode="json", exclude_none=True),
        "resources": spec.resources.model_dump(mode="json", exclude_none=True) if spec.resources else None,
    }
    if spec.sessionAgent is not None:  # only when set: existing pools keep their pods
        data["sessionAgent"] = spec.sessionAgent.model_dump(mode="json", exclude_none=True)
    if spec.ownPodAccess:
        data["ownPodAccess"] = True
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def resource_list(spec: ContainerPoolSpec, gpu_resource: str) -> dict[str, str]:
    r = spec.resources
    if r is None:
        return {}
    out = {"cpu": r.cpu, "memory": r.memory, "ephemeral-storage": r.ephemeralStorage}
    if r.gpu:
        out[gpu_resource] = str(r.gpu)
    return {k: v for k, v in out.items() if v is not None}


def agent_pod_name(pool_name: str) -> str:
    """A pod with its own ServiceAccount needs its name before it exists (no generateName)."""
    return f"{pool_name[:57]}-{secrets.token_hex(3)[:5]}"


def _add_env(first: dict[str, Any], wanted: list[dict[str, Any]]) -> None:
    env = {e["name"] for e in first.get("env") or []}  # the user's template decides
    first["env"] = [*(first.get("env") or []), *(e for e in wanted if e["name"] not in env)]


def _add_identity(pod_spec: dict[str, Any], pod_name: str) -> None:
    """The pod's own ServiceAccount (a Role reaching this pod only) and its own name and namespace."""
    pod_spec["serviceAccountName"] = pod_name
    pod_spec["automountServiceAccountToken"] = True
    _add_env(
        pod_spec["containers"][0],
        [
            {"name": ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": ENV_POD_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
    )


def _add_agent(pod_spec: dict[str, Any], pod_name: str, checkpoint_claim: str | None) -> None:
    """What a warm pod's agent needs besides its identity: a work and a checkpoint folder."""
    _add_identity(pod_spec, pod_name)
    first = pod_spec["containers"][0]
    _add_env(
        first,
        [
            {"name": ENV_WORKDIR, "value": "/shoal"},
            {"name": ENV_CHECKPOINT_DIR, "value": "/checkpoints"},
        ],
    )
    # The agent's metrics, by name for the chart's PodMonitor, unless the template declares the port.
    ports = first.setdefault("ports", [])
    if not any(p.get("containerPort") == AGENT_METRICS_PORT for p in ports):
        ports.append({"name": AGENT_METRICS_PORT_NAME, "containerPort": AGENT_METRICS_PORT})
    mounted = {m["mountPath"] for m in first.get("volumeMounts") or []}
    volumes = pod_spec.setdefault("volumes", [])
    for vol, path in (("shoal-work", "/shoal"), ("shoal-checkpoints", "/checkpoints")):
        if path in mounted:
            continue  # the user's template decides
        first.setdefault("volumeMounts", []).append({"name": vol, "mountPath": path})
        if vol == "shoal-checkpoints" and checkpoint_claim:
            volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": checkpoint_claim}})
        else:
            volumes.append({"name": vol, "emptyDir": {}})


def build_pod(
    pool_name: str,
    pool_uid: str,
    spec: ContainerPoolSpec,
    thash: str,
    gpu_resource: str = "nvidia.com/gpu",
    name: str | None = None,
) -> dict[str, Any]:
    """`name`: for a pool whose pods have their own ServiceAccount (ownPodAccess, sessionAgent),
    the name it was created under."""
    template = spec.template.model_dump(mode="json", exclude_none=True)
    meta = copy.deepcopy(template.get("metadata") or {})
    pod_spec: dict[str, Any] = template["spec"]
    labels = {
        **(meta.get("labels") or {}),
        LABEL_POOL: pool_name,
        LABEL_STATE: UNCLAIMED,
        LABEL_TEMPLATE_HASH: thash,
        LABEL_MANAGED: "true",
    }
    first = pod_spec["containers"][0]
    resources = resource_list(spec, gpu_resource)
    if (
        resources
        and not (first.get("resources") or {}).get("requests")
        and not (first.get("resources") or {}).get("limits")
    ):
        first["resources"] = {"requests": dict(resources), "limits": dict(resources)}
    pod_spec.setdefault("securityContext", copy.deepcopy(RESTRICTED_POD_SECURITY))
    for c in pod_spec["containers"] + pod_spec.get("initContainers", []):
        c.setdefault("securityContext", copy.deepcopy(RESTRICTED_CONTAINER_SECURITY))
    pod_spec.setdefault("automountServiceAccountToken", False)
    pod_spec.setdefault("restartPolicy", "Always")
    if spec.sessionAgent is not None and name:
        _add_agent(pod_spec, name, spec.sessionAgent.checkpointClaimName)
    elif spec.ownPodAccess and name:
        _add_identity(pod_spec, name)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **({"name": name} if name else {"generateName": f"{pool_name[:57]}-"}),
            "labels": labels,
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": [controller_ref("ContainerPool", pool_name, pool_uid)],
        },
        "spec": pod_spec,
    }


def agent_account(pool_name: str, pool_uid: str, pod_name: str) -> dict[str, Any]:
    """Created before the pod (which names it), owned by the pool until the pod exists, then by the pod."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": pod_name,
            "labels": {LABEL_POOL: pool_name},
            "ownerReferences": [controller_ref("ContainerPool", pool_name, pool_uid)],
        },
        "automountServiceAccountToken": True,
    }


def pod_ref(pod_name: str, pod_uid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid, "controller": True}


def own_pod_access(
    account: str, pod_name: str, owner: dict[str, Any], labels: dict[str, str]
) -> list[dict[str, Any]]:
    """A Role and RoleBinding: `account` may read, watch (commands) and patch (progress) `pod_name`
    and nothing else. A watch with the field selector metadata.name=<pod> is authorized against
    resourceNames."""
    meta = {"name": account, "labels": labels, "ownerReferences": [owner]}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods"],
                    "verbs": ["get", "watch", "patch"],
                    "resourceNames": [pod_name],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account}],
        },
    ]
