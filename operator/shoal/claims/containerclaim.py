"""A ContainerClaim's next step, decided from its spec, its status, its pod and `now`: no IO.

    Pending --pod claimed--> Bound --holdSeconds passed--> Expired
       ^  (waits: NoIdlePod,   |  \\--pod deleted or taken--> Lost
       |   NoFittingPod,       |
       |   PoolNotFound)       `-- claim deleted: its pool gives the pod back (no finalizer)

Expired and Lost are final: the job that ran in the pod cannot move, so a dispatcher makes a new claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shoal import conditions
from shoal.api.claim import ClaimResources, ContainerClaimSpec
from shoal.api.common import gpu_memory_mapping, resource_names
from shoal.claims.holders import FINAL_CLAIM, ClaimOutcome, signature_text
from shoal.claims.selection import ClaimRequest
from shoal.times import format_time, parse_time

WAIT_RECHECK = 30.0  # a waiting claim is woken when a pod of its pool turns idle; this is the fallback


@dataclass(frozen=True)
class HeldPod:
    """The pod status.podName names, as the API server has it now (None: it is gone)."""

    name: str
    mine: bool  # still claimed by this claim
    ip: str | None = None
    node: str | None = None


@dataclass
class ClaimStep:
    status: dict[str, Any]
    needs_claim: bool = False
    release: str | None = None  # a pod to give back to its pool
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    requeue: float | None = None
    bound: tuple[bool, str, str] | None = None  # the Bound condition: status, reason, message


def claim_request(spec: ContainerClaimSpec, gpu_resource: str, gpu_memory_resource: str = "") -> ClaimRequest:
    names = resource_names(spec.resources or ClaimResources(), gpu_resource, gpu_memory_resource)
    return ClaimRequest(signature=signature_text(spec.signature), requests=names)


def decide(
    spec: ContainerClaimSpec,
    status: Mapping[str, Any],
    pod: HeldPod | None,
    outcome: ClaimOutcome | None,
    now: datetime,
) -> ClaimStep:
    new = dict(status)
    step = ClaimStep(new)
    phase = new.get("phase") or "Pending"
    if phase in FINAL_CLAIM:
        return step
    held = new.get("podName")
    if held:
        if pod is None or not pod.mine:
            how = "was deleted" if pod is None else "was taken by another holder"
            message = f"pod {held} {how} while bound; delete this claim and create a new one"
            new.update(phase="Lost", podIP=None, expiryTime=None)
            step.bound = (False, "PodLost", message)
            step.events.append(("Warning", "PodLost", message))
            return step
        bound_at = parse_time(new.get("boundTime")) or now
        expiry = bound_at + timedelta(seconds=spec.holdSeconds) if spec.holdSeconds else None
        if expiry is not None and now >= expiry:
            message = f"held pod {held} for holdSeconds {spec.holdSeconds}: given back to the pool"
            new.update(phase="Expired", podIP=None, expiryTime=format_time(expiry))
            step.bound = (False, "HoldExpired", message)
            step.release = held
            step.events.append(("Normal", "Expired", message))
            return step
        new.update(
            phase="Bound",
            podIP=pod.ip or new.get("podIP"),
            nodeName=pod.node or new.get("nodeName"),
            expiryTime=format_time(expiry) if expiry else None,
        )
        step.bound = (True, "PodClaimed", f"holding pod {held} of pool {spec.poolRef.name}")
        step.requeue = (expiry - now).total_seconds() if expiry else None
        return step
    if outcome is None:
        step.needs_claim = True
        return step
    if outcome.pod is None:
        pool = spec.poolRef.name
        message = {
            "PoolNotFound": f"ContainerPool {pool} not found",
            "NoFittingPod": f"pool {pool}: {outcome.message}",
        }.get(
            outcome.reason, f"no idle pod in pool {pool}; it grows for waiting claims up to its maxReplicas"
        )
        old: Mapping[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Bound"), {}
        )
        if old.get("reason") != outcome.reason:
            step.events.append(("Normal", "Waiting", message))
        new.update(phase="Pending", waitingSince=new.get("waitingSince") or format_time(now))
        step.bound = (False, outcome.reason, message)
        step.requeue = WAIT_RECHECK
        return step
    expiry = now + timedelta(seconds=spec.holdSeconds) if spec.holdSeconds else None
    new.update(
        phase="Bound",
        podName=outcome.pod,
        podIP=outcome.pod_ip,
        nodeName=outcome.node,
        boundTime=format_time(now),
        expiryTime=format_time(expiry) if expiry else None,
        waitingSince=None,
        bindMilliseconds=round(outcome.latency_ms, 1),
    )
    message = f"holding pod {outcome.pod} of pool {spec.poolRef.name}"
    step.bound = (True, "PodClaimed", message)
    step.events.append(("Normal", "Bound", f"bound to pod {outcome.pod} in {outcome.latency_ms:.0f} ms"))
    step.requeue = float(spec.holdSeconds) if spec.holdSeconds else None
    return step


def record(
    old: Mapping[str, Any],
    status: dict[str, Any],
    bound: dict[str, Any] | None,
    generation: int | None,
    now: datetime,
    gpu_memory: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The status a pass writes: the step's fields, observedGeneration, and the Bound (and
    GpuMemoryEnforced) conditions merged with the old ones; an old one the pass says nothing of is kept."""
    said = [c for c in (bound, gpu_memory) if c]
    return {
        **status,
        "observedGeneration": generation,
        "conditions": conditions.merge_keeping(old.get("conditions"), said, generation, now),
    }


def gpu_memory_condition(spec: ContainerClaimSpec, gpu_memory_resource: str) -> dict[str, Any] | None:
    """GpuMemoryEnforced for a claim asking for gpuMemory: whether pods are fitted against it."""
    mapping = gpu_memory_mapping((spec.resources or ClaimResources()).gpuMemory, gpu_memory_resource)
    return conditions.condition("GpuMemoryEnforced", *mapping) if mapping else None
