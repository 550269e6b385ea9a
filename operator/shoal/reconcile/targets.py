"""What a WorkerScaler scales: its target's /scale path (from API discovery, cached per kind) and whether
another scaler or an HPA already scales that target (namespace listings shared for LIST_TTL)."""

from __future__ import annotations

import threading
import time
from typing import Any

from shoal.api.scaler import WorkerScalerSpec
from shoal.k8s.client import ApiError, Kube
from shoal.k8s.paths import custom_path, kind_path, resource_path, root

PLURAL = "workerscalers"
LIST_TTL = 5.0


class TargetError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ScaleTargets:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.lock = threading.Lock()
        self.discovery: dict[tuple[str, str], str] = {}
        self.lists: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def scale_path(self, namespace: str, api_version: str, kind: str, name: str) -> str:
        key = (api_version, kind)
        plural = self.discovery.get(key)
        if plural is None:
            try:
                resources = self.kube.get(root(api_version)).get("resources", [])
            except ApiError as exc:
                raise TargetError(
                    "TargetKindUnknown", f"API {api_version} is not served: {exc.message}"
                ) from None
            plural = next(
                (r["name"] for r in resources if r.get("kind") == kind and "/" not in r["name"]), None
            )
            if plural is None:
                raise TargetError("TargetKindUnknown", f"no kind {kind} in {api_version}")
            if not any(r["name"] == f"{plural}/scale" for r in resources):
                raise TargetError("TargetNotScalable", f"{kind} has no scale subresource")
            self.discovery[key] = plural
        return resource_path(root(api_version), plural, namespace, name, "scale")

    def conflicts(self, scaler: dict[str, Any], spec: WorkerScalerSpec) -> str | None:
        """Another WorkerScaler (created earlier) or an HPA on the same target makes this one stand down."""
        meta = scaler["metadata"]
        ns, ref = meta["namespace"], spec.targetRef
        me = (meta.get("creationTimestamp", ""), meta["name"])
        for other in self._listed(custom_path(PLURAL, ns)):
            o = other["metadata"]
            tr = other.get("spec", {}).get("targetRef", {})
            if o["name"] == meta["name"] or (tr.get("kind"), tr.get("name")) != (ref.kind, ref.name):
                continue
            if (o.get("creationTimestamp", ""), o["name"]) < me:
                return f"WorkerScaler {o['name']} already scales {ref.kind}/{ref.name}"
        try:
            hpas = self._listed(kind_path("HorizontalPodAutoscaler", ns))
        except ApiError:
            hpas = []
        for hpa in hpas:
            tr = hpa.get("spec", {}).get("scaleTargetRef", {})
            if (tr.get("kind"), tr.get("name")) == (ref.kind, ref.name):
                return (
                    f"HorizontalPodAutoscaler {hpa['metadata']['name']} already scales {ref.kind}/{ref.name}"
                )
        return None

    def _listed(self, path: str) -> list[dict[str, Any]]:
        """A namespace's scalers/HPAs, shared by its scalers for LIST_TTL seconds.

        Conflict checks would otherwise list the whole namespace on every evaluation of every scaler
        (quadratic in the number of scalers); a new conflicting object is seen within LIST_TTL.
        """
        now = time.monotonic()
        with self.lock:
            hit = self.lists.get(path)
            if hit and now - hit[0] < LIST_TTL:
                return hit[1]
        items = self.kube.list_items(path)
        with self.lock:
            self.lists = {k: v for k, v in self.lists.items() if now - v[0] < LIST_TTL}  # gone namespaces
            self.lists[path] = (now, items)
        return items
