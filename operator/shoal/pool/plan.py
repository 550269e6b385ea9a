"""What a pool should do next, decided from its spec and its pods at time `now`.

`plan()` is the whole of the ContainerPool's decision making: the reconciler lists the pods,
calls it, and carries out the returned actions. Nothing here reads the clock or the cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from shoal.api.pool import ContainerPoolSpec, Recycle
from shoal.pool.pods import PodView, load_state, observed_state, pod_load, state_label
from shoal.vocab import CLAIMED, DRAINING, FAILED, IDLE, OVERLOADED, PENDING, WARMING

# Healthy pods replaced at once (age, claims, template change), as a share of the desired size:
# replacements start before the old pods go, so capacity dips by at most this much.
RECYCLE_SURGE = 0.25


@dataclass(frozen=True)
class Deletion:
    pod: str
    uid: str
    reason: str  # ScaleDown, MaxAge, MaxClaims, TemplateChanged, Failed, NotReadyTimeout, Orphan


@dataclass
class Counts:
    replicas: int = 0
    ready: int = 0
    idle: int = 0
    claimed: int = 0
    pending: int = 0
    warming: int = 0
    failed: int = 0
    claimed_slots: int = 0  # claims held (a busy pod: all its slots); = claimed when pods are exclusive
    slots: int = 1  # claimsPerPod
    overloaded: int = 0  # claimed pods at OVERLOAD or more (the rest of the claimed ones are Healthy)

    @property
    def utilization(self) -> float:
        total = self.replicas * self.slots
        return round(self.claimed_slots / total, 4) if total else 0.0


@dataclass
class Plan:
    desired: int
    create: int = 0
    delete: list[Deletion] = field(default_factory=list)
    relabel: dict[str, str] = field(default_factory=dict)  # pod name -> state label
    load_labels: dict[str, str | None] = field(default_factory=dict)  # pod name -> load state (None: off)
    adopt: list[str] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    requeue_after: float | None = None  # seconds until a time-based rule next fires


def demand(spec: ContainerPoolSpec, claimed: int, waiting: int = 0) -> int:
    """Pods the claims need: `claimed` slots held and `waiting` claims, claimsPerPod to a pod, plus
    warm.minIdle pods' worth of free slots (a pod each when pods are exclusive)."""
    min_idle = spec.warm.minIdle if spec.warm else 0
    return math.ceil((claimed + waiting) / spec.claimsPerPod) + min_idle


def size_limit(spec: ContainerPoolSpec, claimed: int, waiting: int = 0) -> tuple[str, str] | None:
    """(reason, message) when a bound, not spec.replicas or the claims, sets the pool's size.
    `claimed`: slots held (pods, when pods are exclusive)."""
    min_idle = spec.warm.minIdle if spec.warm else 0
    needed = demand(spec, claimed, waiting)
    want = max(spec.replicas, needed)
    if want < spec.minReplicas:
        return "BelowMinReplicas", (
            f"spec.replicas {spec.replicas} is below minReplicas {spec.minReplicas}: running {spec.minReplicas}"
        )
    if spec.maxReplicas is not None and want > spec.maxReplicas:
        waits = f" + {waiting} waiting" if waiting else ""
        shared = f" at claimsPerPod {spec.claimsPerPod}" if spec.claimsPerPod > 1 else ""
        asked = (
            f"spec.replicas {spec.replicas}"
            if spec.replicas >= needed
            else f"{claimed} claimed{waits}{shared} + warm.minIdle {min_idle}"
        )
        return (
            "AboveMaxReplicas",
            f"{asked} is above maxReplicas {spec.maxReplicas}: running {spec.maxReplicas}",
        )
    return None


def desired_replicas(spec: ContainerPoolSpec, claimed: int, waiting: int = 0) -> int:
    """max(replicas, the claims' demand), clamped to [minReplicas, maxReplicas].

    `claimed`: slots held (pods, when pods are exclusive). `waiting`: claims that found no pod with
    room and that a new pod would serve. They count as demand as held slots do: without them a pool
    with no warm.minIdle would never grow for a claim."""
    want = max(spec.replicas, demand(spec, claimed, waiting), spec.minReplicas)
    return want if spec.maxReplicas is None else min(want, spec.maxReplicas)


def _age(pod: PodView, now: datetime) -> float:
    return (now - pod.created).total_seconds()


def _not_ready_for(pod: PodView, now: datetime) -> float:
    since = pod.ready_changed if pod.ready_changed and pod.phase == "Running" else pod.created
    return (now - since).total_seconds()


def recycle_reason(pod: PodView, recycle: Recycle | None, template_hash: str, now: datetime) -> str | None:
    """Why a healthy pod is due for replacement, if it is (a claimed one is replaced after its claim)."""
    if recycle and recycle.maxAgeSeconds is not None and _age(pod, now) >= recycle.maxAgeSeconds:
        return "MaxAge"
    if recycle and recycle.maxClaims is not None and pod.claims >= recycle.maxClaims:
        return "MaxClaims"
    if pod.template_hash != template_hash:
        return "TemplateChanged"
    return None


def plan(
    spec: ContainerPoolSpec,
    pool_uid: str,
    pods: list[PodView],
    template_hash: str,
    now: datetime,
    waiting: int = 0,
    usage: Mapping[str, Mapping[str, Decimal]] | None = None,
) -> Plan:
    """`waiting`: claims waiting for a pod that a new pod of the pool would serve; `usage`: the pods'
    live usage (pod -> resource -> amount), read for pools whose selection ranks by it."""
    recycle = spec.recycle or Recycle()
    deletions: list[Deletion] = []
    adopt: list[str] = []
    wake: list[float] = []
    live: list[tuple[PodView, str]] = []  # (pod, observed state) of pods that count towards the size
    kept_failed = 0

    for pod in pods:
        if pod.controller_uid not in (None, pool_uid):
            continue  # another controller's pod that happens to carry our label
        if pod.controller_uid is None:
            if pod.deleting:
                continue
            if pod.template_hash == template_hash:
                adopt.append(pod.name)
            else:
                deletions.append(Deletion(pod.name, pod.uid, "Orphan"))
                continue
        state = observed_state(pod)
        if state == DRAINING:
            continue
        if state == FAILED:
            if recycle.onUnhealthy == "Replace":
                deletions.append(Deletion(pod.name, pod.uid, "Failed"))
            else:
                kept_failed += 1
            continue
        if state in (PENDING, WARMING):
            overdue = _not_ready_for(pod, now) - recycle.unhealthyAfterSeconds
            if overdue >= 0 and recycle.onUnhealthy == "Replace":
                deletions.append(Deletion(pod.name, pod.uid, "NotReadyTimeout"))
                continue
            if overdue < 0:
                wake.append(-overdue)
        if recycle.maxAgeSeconds is not None and state in (IDLE, CLAIMED, WARMING, PENDING):
            wake.append(max(1.0, recycle.maxAgeSeconds - _age(pod, now)))
        live.append((pod, state))

    slots = spec.claimsPerPod
    claimed = sum(p.slots_held(slots) for p, s in live if s == CLAIMED)
    # Pods already starting serve the waiting claims once ready: not counted twice.
    desired = desired_replicas(spec, claimed, waiting)

    # Healthy idle pods past their limits are replaced a few at a time, replacements first.
    starting = sum(1 for _, s in live if s in (PENDING, WARMING))
    budget = max(1, math.ceil(desired * RECYCLE_SURGE)) - starting
    due = [
        (pod, reason)
        for pod, s in sorted(live, key=lambda ps: ps[0].created)
        if s == IDLE and (reason := recycle_reason(pod, spec.recycle, template_hash, now))
    ]
    for pod, reason in due[: max(0, budget)]:
        deletions.append(Deletion(pod.name, pod.uid, reason))
    gone = {d.pod for d in deletions}
    live = [(p, s) for p, s in live if p.name not in gone]
    if len(due) > max(0, budget):
        wake.append(5.0)  # more to recycle once the replacements are ready

    create = max(0, desired - len(live))
    excess = len(live) - desired
    if excess > 0:
        # Least useful first: never-started pods (newest first), then idle ones (outdated, oldest first).
        order = {PENDING: 0, WARMING: 1, IDLE: 2}
        removable = sorted(
            ((p, s) for p, s in live if s in order),
            key=lambda ps: (
                order[ps[1]],
                -ps[0].created.timestamp() if ps[1] != IDLE else ps[0].created.timestamp(),
                ps[0].template_hash == template_hash,
            ),
        )
        for pod, _ in removable[:excess]:
            deletions.append(Deletion(pod.name, pod.uid, "ScaleDown"))
        gone = {d.pod for d in deletions}
        live = [(p, s) for p, s in live if p.name not in gone]

    counts = Counts(
        replicas=len(live) + create,
        ready=sum(1 for p, s in live if s in (IDLE, CLAIMED) and p.ready),
        idle=sum(1 for _, s in live if s == IDLE),
        claimed=sum(1 for _, s in live if s == CLAIMED),
        pending=sum(1 for _, s in live if s == PENDING) + create,
        warming=sum(1 for _, s in live if s == WARMING),
        failed=kept_failed + sum(1 for d in deletions if d.reason in ("Failed", "NotReadyTimeout")),
        claimed_slots=claimed,  # no claimed pod is deleted above: the count from before holds
        slots=slots,
    )
    relabel = {p.name: state_label(s) for p, s in live if p.state_label != state_label(s)}
    loads = {
        p.name: load_state(p, pod_load(p, (usage or {}).get(p.name, {}).get("cpu")))
        for p, s in live
        if s == CLAIMED
    }
    load_labels = {p.name: loads.get(p.name) for p, _ in live if p.load_label != loads.get(p.name)}
    counts.overloaded = sum(1 for v in loads.values() if v == OVERLOADED)
    if recycle.onUnhealthy == "Keep":  # failed pods left for debugging still show their state
        for pod in pods:
            if pod.controller_uid == pool_uid and observed_state(pod) == FAILED and pod.state_label != FAILED:
                relabel[pod.name] = FAILED
    return Plan(
        desired=desired,
        create=create,
        delete=deletions,
        relabel=relabel,
        load_labels=load_labels,
        adopt=adopt,
        counts=counts,
        requeue_after=min(wake) if wake else None,
    )
