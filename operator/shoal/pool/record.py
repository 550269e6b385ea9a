"""What a pool's status and Events say, pure (as scaling/record.py is for scalers): the conditions a
pass's plan and its outcome imply, the Events it posts, and the status written after it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from shoal import conditions
from shoal.api.pool import ContainerPoolSpec
from shoal.pool.plan import Plan, size_limit
from shoal.times import format_time
from shoal.vocab import LABEL_POOL

NAMES_SHOWN = 5  # pod names an Event lists before "and N more"


def names(pods: Iterable[str]) -> str:
    pods = list(pods)
    shown = ", ".join(pods[:NAMES_SHOWN])
    return shown + (f" and {len(pods) - NAMES_SHOWN} more" if len(pods) > NAMES_SHOWN else "")


def invalid_spec(message: str) -> list[dict[str, Any]]:
    """A spec the CRD schema let through but the model refuses (what the schema cannot express)."""
    return [
        conditions.condition("Ready", False, "InvalidSpec", message[:512]),
        conditions.condition("Degraded", True, "InvalidSpec", message[:512]),
    ]


def scaling(p: Plan, created: int, deleted: dict[str, list[str]]) -> dict[str, Any]:
    if created:
        return conditions.condition(
            "Scaling", True, "ScalingUp", f"creating {created} pod(s) towards {p.desired}"
        )
    if deleted.get("ScaleDown"):
        return conditions.condition(
            "Scaling", True, "ScalingDown", f"removing {len(deleted['ScaleDown'])} idle pod(s)"
        )
    if p.counts.pending or p.counts.warming:
        return conditions.condition(
            "Scaling", True, "PodsStarting", f"{p.counts.pending + p.counts.warming} pod(s) starting"
        )
    return conditions.condition("Scaling", False, "Stable", f"{p.counts.replicas} pod(s), as desired")


def conditions_of(
    p: Plan,
    spec: ContainerPoolSpec,
    waiting: int,
    created: int,
    deleted: dict[str, list[str]],
    create_error: str,
) -> list[dict[str, Any]]:
    """Ready, Scaling, ScalingLimited and Degraded after a pass that planned `p` (with `waiting`
    claims and sessions waiting for a pod), created `created` pods and deleted `deleted` (by reason)."""
    ready = p.counts.ready >= p.desired
    limit = size_limit(spec, p.counts.claimed_slots, waiting)
    failed = p.counts.failed
    return [
        conditions.condition(
            "Ready",
            ready,
            "AllReplicasReady" if ready else "ReplicasNotReady",
            f"{p.counts.ready}/{p.desired} pods ready",
        ),
        scaling(p, created, deleted),
        conditions.condition(
            "ScalingLimited",
            limit is not None,
            limit[0] if limit else "WithinBounds",
            limit[1] if limit else f"spec.replicas {spec.replicas} is within the pool's bounds",
        ),
        conditions.condition(
            "Degraded",
            bool(create_error or failed),
            "CreateFailed" if create_error else ("PodsFailing" if failed else "AsExpected"),
            create_error or (f"{failed} pod(s) failed or never became ready" if failed else ""),
        ),
    ]


def events_of(
    p: Plan, created: int, deleted: dict[str, list[str]], create_error: str
) -> list[tuple[str, str, str]]:
    """The Events (type, reason, message) a pass posts about its pool."""
    events: list[tuple[str, str, str]] = []
    if created:
        events.append(("Normal", "ScaledUp", f"Created {created} pod(s); desired {p.desired}"))
    if deleted.get("ScaleDown"):
        pods = deleted["ScaleDown"]
        events.append(
            ("Normal", "ScaledDown", f"Deleted {len(pods)} idle pod(s) ({names(pods)}); desired {p.desired}")
        )
    for reason in ("MaxAge", "MaxClaims", "TemplateChanged"):
        if deleted.get(reason):
            events.append(("Normal", "Recycled", f"Replacing pod(s) {names(deleted[reason])}: {reason}"))
    for reason in ("Failed", "NotReadyTimeout"):
        if deleted.get(reason):
            events.append(
                ("Warning", "PodFailed", f"Replacing unhealthy pod(s) {names(deleted[reason])}: {reason}")
            )
    if deleted.get("Orphan"):
        events.append(
            (
                "Normal",
                "OrphanRemoved",
                f"Deleted unowned pod(s) {names(deleted['Orphan'])} from an older template",
            )
        )
    if p.adopt:
        events.append(("Normal", "Adopted", f"Adopted pod(s) {names(p.adopt)}"))
    if create_error:
        events.append(("Warning", "CreateFailed", create_error))
    return events


def compose(
    pool: dict[str, Any],
    p: Plan | None,
    conds: list[dict[str, Any]],
    now: datetime,
    scaled: bool = False,
    created: int = 0,
    waiting: int = 0,
) -> dict[str, Any]:
    """The status after a pass: counts from the plan (pods it meant to create and did not are not
    counted) and the claims waiting for a pod, conditions merged with the old ones, lastScaleTime
    when it created or scaled down."""
    meta = pool["metadata"]
    old = pool.get("status") or {}
    generation = meta.get("generation")
    status: dict[str, Any] = {"observedGeneration": generation}
    if p is not None:
        c = p.counts
        status.update(
            replicas=c.replicas - p.create + created,
            desiredReplicas=p.desired,
            readyReplicas=c.ready,
            idleReplicas=c.idle,
            claimedReplicas=c.claimed,
            claimedSlots=c.claimed_slots,
            selector=f"{LABEL_POOL}={meta['name']}",
            utilization=c.utilization,
            overloadedReplicas=c.overloaded,
            waitingClaims=waiting,
        )
    if scaled:
        status["lastScaleTime"] = format_time(now)
    status["conditions"] = conditions.merge(old.get("conditions"), conds, generation, now)
    return status
