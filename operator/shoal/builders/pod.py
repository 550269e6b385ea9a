"""Pods of a ContainerPool, built from its template."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from shoal.api.pool import ContainerPoolSpec
from shoal.builders import controller_ref
from shoal.pool.pods import LABEL_POOL, LABEL_STATE, LABEL_TEMPLATE_HASH, PENDING

# Pod Security "restricted" defaults, used where the user's template says nothing.
RESTRICTED_POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def template_hash(spec: ContainerPoolSpec) -> str:
    """Changes whenever the pods the pool would create change."""
    data = {
        "template": spec.template.model_dump(mode="json", exclude_none=True),
        "resources": spec.resources.model_dump(mode="json", exclude_none=True) if spec.resources else None,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def resource_list(spec: ContainerPoolSpec, gpu_resource: str) -> dict[str, str]:
    r = spec.resources
    if r is None:
        return {}
    out = {"cpu": r.cpu, "memory": r.memory, "ephemeral-storage": r.ephemeralStorage}
    if r.gpu:
        out[gpu_resource] = str(r.gpu)
    return {k: v for k, v in out.items() if v is not None}


def build_pod(
    pool_name: str, pool_uid: str, spec: ContainerPoolSpec, thash: str, gpu_resource: str = "nvidia.com/gpu"
) -> dict[str, Any]:
    template = spec.template.model_dump(mode="json", exclude_none=True)
    meta = copy.deepcopy(template.get("metadata") or {})
    pod_spec: dict[str, Any] = template["spec"]
    labels = {
        **(meta.get("labels") or {}),
        LABEL_POOL: pool_name,
        LABEL_STATE: PENDING,
        LABEL_TEMPLATE_HASH: thash,
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
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{pool_name[:57]}-",
            "labels": labels,
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": [controller_ref("ContainerPool", pool_name, pool_uid)],
        },
        "spec": pod_spec,
    }
