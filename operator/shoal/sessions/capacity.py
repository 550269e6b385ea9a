"""What a waiting TrainingSession may use: pure arithmetic over quotas, nodes and pods, and the reads
that feed it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from shoal.api.common import parse_quantity
from shoal.api.session import TrainingSessionSpec
from shoal.builders.session import requests
from shoal.config import Settings
from shoal.k8s.client import Kube, custom_path
from shoal.sessions.admission import SessionView, Verdict, decide_admission
from shoal.sessions.lifecycle import ACTIVE
from shoal.sessions.placement import fitting_node, node_free, schedulable
from shoal.times import parse_time

INF = Decimal("Infinity")
PLURAL = "trainingsessions"
SNAPSHOT_SECONDS = 2.0


def quota_headroom(quotas: Iterable[Mapping[str, Any]], want: Iterable[str]) -> dict[str, Decimal]:
    """What the namespace's ResourceQuotas leave of each requested resource (the tightest wins)."""
    free = {k: INF for k in want}
    for q in quotas:
        hard = (q.get("status") or {}).get("hard") or q.get("spec", {}).get("hard", {})
        used = (q.get("status") or {}).get("used") or {}
        for key, value in hard.items():
            res = key.removeprefix("requests.")
            if key.startswith(("limits.", "count/")) or res in ("pods", "services", "configmaps"):
                continue
            left = parse_quantity(value) - parse_quantity(used.get(key, "0"))
            free[res] = min(free.get(res, INF), left)
    return free


def node_headroom(
    nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> dict[str, Decimal]:
    """Allocatable of Ready, schedulable nodes less the requests of pods that have not ended."""
    free: dict[str, Decimal] = {}
    for node in nodes:
        if not schedulable(node):
            continue
        for k, v in ((node.get("status") or {}).get("allocatable") or {}).items():
            free[k] = free.get(k, Decimal(0)) + parse_quantity(v)
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for c in pod.get("spec", {}).get("containers", []):
            for k, v in ((c.get("resources") or {}).get("requests") or {}).items():
                free[k] = free.get(k, Decimal(0)) - parse_quantity(v)
    return free


class Capacity:
    """Admission's reads. Nodes and pods (cluster-wide, the costly part) come from one snapshot shared
    by every pending session for SNAPSHOT_SECONDS; what this process admits meanwhile is taken off it,
    so two admissions in one window never count the same free capacity."""

    def __init__(self, kube: Kube, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self.lock = threading.Lock()
        self.taken = -SNAPSHOT_SECONDS
        self.nodes: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = []
        self.per_node: dict[str, tuple[Mapping[str, Any], dict[str, Decimal]]] = {}
        self.debited: dict[str, Decimal] = {}  # admitted since the snapshot, for the aggregate view

    def verdict(self, obj: dict[str, Any], spec: TrainingSessionSpec) -> Verdict:
        ns = obj["metadata"]["namespace"]
        mine = self.view(obj, spec)
        waiting, running = [], []
        for other in self.kube.list_items(custom_path(PLURAL, ns)):
            if other["metadata"]["name"] == obj["metadata"]["name"]:
                continue
            try:
                ospec = TrainingSessionSpec.model_validate(other.get("spec") or {})
            except ValidationError:
                continue
            if ospec.poolRef:
                continue
            ost = other.get("status") or {}
            view = self.view(other, ospec)
            if ost.get("podName") and ost.get("phase") in ACTIVE:
                running.append(view)
            elif ost.get("phase", "Pending") == "Pending" and ospec.runState == "Running":
                waiting.append(view)
        with self.lock:
            self._refresh()
            verdict = decide_admission(mine, waiting, running, self.free(ns, mine.requests))
            if not verdict.admit:
                return verdict
            tolerations = [t.model_dump(mode="json", exclude_none=True) for t in spec.tolerations or []]
            node, why = fitting_node(self.per_node, mine.requests, spec.nodeSelector, tolerations)
            if node is None:
                return Verdict(False, reason="NoNodeFits", message=why)
            left = self.per_node[node][1]
            for k, v in mine.requests.items():
                left[k] = left.get(k, Decimal(0)) - v
                self.debited[k] = self.debited.get(k, Decimal(0)) + v
            return verdict

    def _refresh(self) -> None:
        if self.clock() - self.taken < SNAPSHOT_SECONDS:
            return
        self.nodes = self.kube.list_items("/api/v1/nodes")
        self.pods = self.kube.list_items("/api/v1/pods")
        self.per_node = node_free(self.nodes, self.pods)
        self.debited = {}
        self.taken = self.clock()

    def view(self, obj: dict[str, Any], spec: TrainingSessionSpec) -> SessionView:
        created = parse_time(obj["metadata"].get("creationTimestamp"))
        want = requests(spec, self.settings.gpu_resource, self.settings.gpu_memory_resource)
        return SessionView(
            obj["metadata"]["name"],
            spec.priority,
            created.timestamp() if created else 0.0,
            {k: parse_quantity(v) for k, v in want.items()},
            preempting=bool((obj.get("status") or {}).get("preemptedBy")),
        )

    def free(self, namespace: str, want: Mapping[str, Decimal]) -> dict[str, Decimal]:
        """The namespace's ResourceQuota headroom if it has one, else unreserved node capacity."""
        quotas = self.kube.list_items(f"/api/v1/namespaces/{namespace}/resourcequotas")
        if quotas:
            return quota_headroom(quotas, want)
        free = node_headroom(self.nodes, self.pods)
        return {k: v - self.debited.get(k, Decimal(0)) for k, v in free.items()}
