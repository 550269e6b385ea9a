"""Every API path the operator requests is built here: each kind's group, version and plural once, so
a reader finds which endpoint a call reaches, and a kind that moves to another version changes in one
place. (Paths, not the kubernetes client's typed APIs: the operator reads and writes plain JSON.)"""

from __future__ import annotations

CORE = "/api/v1"
SHOAL = "/apis/shoal.dev/v1alpha1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
TRAINER = "/apis/trainer.kubeflow.org/v1alpha1"  # Kubeflow Trainer, where it is installed

# kind -> (its group and version's root, its plural)
KINDS: dict[str, tuple[str, str]] = {
    "Pod": (CORE, "pods"),
    "Node": (CORE, "nodes"),
    "Event": (CORE, "events"),
    "ConfigMap": (CORE, "configmaps"),
    "PersistentVolumeClaim": (CORE, "persistentvolumeclaims"),
    "Service": (CORE, "services"),
    "ServiceAccount": (CORE, "serviceaccounts"),
    "ResourceQuota": (CORE, "resourcequotas"),
    "Role": (RBAC, "roles"),
    "RoleBinding": (RBAC, "rolebindings"),
    "Job": ("/apis/batch/v1", "jobs"),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodMetrics": ("/apis/metrics.k8s.io/v1beta1", "pods"),
    "TrainJob": (TRAINER, "trainjobs"),
    "TrainingRuntime": (TRAINER, "trainingruntimes"),
}


def root(api_version: str) -> str:
    """The discovery path of a group and version ("v1" is the core group's)."""
    return CORE if api_version == "v1" else f"/apis/{api_version}"


def resource_path(
    base: str, plural: str, namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    """`base`'s `plural` in `namespace` (None: across all namespaces, or cluster-scoped), one object
    of it by `name`, and a subresource `sub` of that object."""
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def kind_path(
    kind: str, namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    base, plural = KINDS[kind]
    return resource_path(base, plural, namespace, name, sub)


def pods_path(namespace: str | None, name: str | None = None) -> str:
    return kind_path("Pod", namespace, name)


def custom_path(plural: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
    """One of Shoal's own kinds, by plural (containerpools, containerclaims, ...)."""
    return resource_path(SHOAL, plural, namespace, name, sub)
