"""What a waiting TrainingSession may use: pure arithmetic over quotas, nodes and pods, and the reads
that feed it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from shoal.api.common import parse_quantity
from shoal.api.session import TrainingSessionSpec
from shoal.builders.session import requests
from shoal.config import Settings
from shoal.k8s.client import Kube
from shoal.k8s.paths import custom_path, kind_path, pods_path
from shoal.sessions.admission import SessionView, Verdict, decide_admission
from shoal.sessions.lifecycle import ACTIVE
from shoal.sessions.placement import ENDED, fitting_nodes, node_free, pod_requests
from shoal.times import parse_time

INF = Decimal("Infinity")
PLURAL = "trainingsessions"
SNAPSHOT_SECONDS = 2.0
# A debit whose session shows no pod this long after its admission came to nothing (a refused pod).
SETTLE_SECONDS = 10.0


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
    per_node: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Decimal]]], pods: Iterable[Mapping[str, Any]]
) -> dict[str, Decimal]:
    """Over a per-node view (placement.node_free of the same pods): allocatable of Ready, schedulable
    nodes less the requests of pods that have not ended, each pod counted as the scheduler counts it
    (init containers included, see placement.pod_requests). A pod not yet bound still counts: it will
    take its share of some node; a pod on a node that is not counted does not."""
    free: dict[str, Decimal] = {}
    for _, left in per_node.values():
        for k, v in left.items():
            free[k] = free.get(k, Decimal(0)) + v
    for pod in pods:
        if (pod.get("spec") or {}).get("nodeName") or (pod.get("status") or {}).get("phase") in ENDED:
            continue
        for k, v in pod_requests(pod).items():
            free[k] = free.get(k, Decimal(0)) - v
    return free


@dataclass
class Listing:
    """One namespace's sessions and ResourceQuotas as read at `taken` (monotonic)."""

    taken: float
    sessions: list[dict[str, Any]]
    quotas: list[dict[str, Any]]


@dataclass
class Debit:
    """A session this process admitted that the API server's lists may not show yet."""

    requests: dict[str, Decimal]  # all of it: a gang's workers together
    nodes: tuple[str, ...]  # where each pod (each worker) was found room
    at: float


class Capacity:
    """Admission's reads, from snapshots shared by every pending session for SNAPSHOT_SECONDS: nodes
    and pods (cluster-wide), and each namespace's sessions and quotas. What this process admits is
    debited from every view until a later snapshot shows it (the session holding its pod), so two
    admissions never count the same free capacity however stale the lists are."""

    def __init__(self, kube: Kube, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self.lock = threading.Lock()
        self.taken = -SNAPSHOT_SECONDS
        self.per_node: dict[str, tuple[Mapping[str, Any], dict[str, Decimal]]] = {}
        self.headroom: dict[str, Decimal] = {}  # the aggregate over all nodes, of the same snapshot
        self.listings: dict[str, Listing] = {}
        self.debits: dict[tuple[str, str], Debit] = {}
        self.pausing: dict[tuple[str, str], float] = {}  # victims this process asked to pause, and when

    def verdict(self, obj: dict[str, Any], spec: TrainingSessionSpec) -> Verdict:
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        mine = self.view(obj, spec)
        with self.lock:
            listing = self._listing(ns)
            self._refresh()  # after the listing: a pod the listing names is in the pod list
            self._settle(ns, listing)
            waiting, running = self._classify(ns, name, listing)
            free = self.free(ns, listing, mine.requests)
            verdict = decide_admission(mine, waiting, running, free)
            now = self.clock()
            for victim in verdict.preempt:
                self.pausing[(ns, victim)] = now
            if not verdict.admit:
                return verdict
            tolerations = [t.model_dump(mode="json", exclude_none=True) for t in spec.tolerations or []]
            # A gang is admitted whole: a node for every worker, or none of them starts.
            one = self.worker_requests(spec)
            nodes, why = fitting_nodes(self.per_node, one, spec.workers, spec.nodeSelector, tolerations)
            if nodes is None:
                return Verdict(False, reason="NoNodeFits", message=why)
            self.debits[(ns, name)] = Debit(dict(mine.requests), tuple(nodes), now)
            for node in nodes:
                self._debit(node, one)
            return verdict

    def _classify(self, ns: str, name: str, listing: Listing) -> tuple[list[SessionView], list[SessionView]]:
        waiting, running = [], []
        for other in listing.sessions:
            other_name = other["metadata"]["name"]
            if other_name == name:
                continue
            try:
                ospec = TrainingSessionSpec.model_validate(other.get("spec") or {})
            except ValidationError:
                continue
            if ospec.poolRef:
                continue
            ost = other.get("status") or {}
            view = self.view(other, ospec, preempting=(ns, other_name) in self.pausing)
            if (ost.get("podName") and ost.get("phase") in ACTIVE) or (ns, other_name) in self.debits:
                running.append(view)
            elif ost.get("phase", "Pending") == "Pending" and ospec.runState == "Running":
                waiting.append(view)
        return waiting, running

    def _listing(self, ns: str) -> Listing:
        listing = self.listings.get(ns)
        if listing is None or self.clock() - listing.taken >= SNAPSHOT_SECONDS:
            listing = Listing(
                self.clock(),
                self.kube.list_items(custom_path(PLURAL, ns)),
                self.kube.list_items(kind_path("ResourceQuota", ns)),
            )
            # Snapshots past their age go (a namespace's sessions may all be gone, or the namespace).
            now = listing.taken
            self.listings = {k: v for k, v in self.listings.items() if now - v.taken < SNAPSHOT_SECONDS}
            self.listings[ns] = listing
        return listing

    def _refresh(self) -> None:
        if self.clock() - self.taken < SNAPSHOT_SECONDS:
            return
        pods = self.kube.list_items(pods_path(None))
        self.per_node = node_free(self.kube.list_items(kind_path("Node")), pods)
        self.headroom = node_headroom(self.per_node, pods)  # before the debits below change per_node
        self.taken = self.clock()
        for debit in self.debits.values():
            share = {k: v / len(debit.nodes) for k, v in debit.requests.items()}
            for node in debit.nodes:
                self._debit(node, share)

    def _debit(self, node: str, want: Mapping[str, Decimal]) -> None:
        if node in self.per_node:
            left = self.per_node[node][1]
            for k, v in want.items():
                left[k] = left.get(k, Decimal(0)) - v

    def _settle(self, ns: str, listing: Listing) -> None:
        """Drop the debits and pauses of `ns` that the lists now show (or that came to nothing)."""
        status = {o["metadata"]["name"]: o.get("status") or {} for o in listing.sessions}
        for key in [k for k in self.debits if k[0] == ns]:
            debit, st = self.debits[key], status.get(key[1])
            if listing.taken <= debit.at:
                continue
            shown = st is not None and st.get("podName") and st.get("phase") in ACTIVE
            if (
                (shown and self.taken >= listing.taken)
                or st is None
                or listing.taken - debit.at > SETTLE_SECONDS
            ):
                del self.debits[key]  # in the lists now; or gone, or its admission made no pod
        for key in [k for k in self.pausing if k[0] == ns]:
            st = status.get(key[1])
            if listing.taken > self.pausing[key] and (
                st is None or st.get("preemptedBy") or st.get("phase") != "Running"
            ):
                del self.pausing[key]

    def worker_requests(self, spec: TrainingSessionSpec) -> dict[str, Decimal]:
        """One pod's (one worker's) requests."""
        want = requests(spec, self.settings.gpu_resource, self.settings.gpu_memory_resource)
        return {k: parse_quantity(v) for k, v in want.items()}

    def view(self, obj: dict[str, Any], spec: TrainingSessionSpec, preempting: bool = False) -> SessionView:
        """The session as admission weighs it: a gang as one, with all its workers' requests, so it
        queues, is admitted and is preempted whole."""
        created = parse_time(obj["metadata"].get("creationTimestamp"))
        return SessionView(
            obj["metadata"]["name"],
            spec.priority,
            created.timestamp() if created else 0.0,
            {k: v * spec.workers for k, v in self.worker_requests(spec).items()},
            preempting=preempting or bool((obj.get("status") or {}).get("preemptedBy")),
        )

    def free(self, ns: str, listing: Listing, want: Iterable[str]) -> dict[str, Decimal]:
        """The namespace's ResourceQuota headroom if it has one, else unreserved node capacity; less
        what this process admitted that the lists do not show yet."""
        pending = [d for (n, _), d in self.debits.items() if n == ns or not listing.quotas]
        if listing.quotas:
            free = quota_headroom(listing.quotas, {*want, *(k for d in pending for k in d.requests)})
        else:
            free = dict(self.headroom)
        for d in pending:
            for k, v in d.requests.items():
                free[k] = free.get(k, Decimal(0)) - v
        return free
