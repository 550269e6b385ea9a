"""A plain, typed view of a pod as pool logic needs it, parsed from the API's dict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shoal.api.common import parse_quantity
from shoal.pool.jobs import Job, outcome, parse_history
from shoal.times import parse_time
from shoal.vocab import (
    ANN_BUSY,
    ANN_CLAIMED_BY,
    ANN_CLAIMS,
    ANN_HISTORY,
    ANN_JOB_OUTCOME,
    ANN_LAST_CLAIMED,
    ANN_LAST_RELEASED,
    ANN_LAST_SIGNATURE,
    ANN_LOAD,
    ANN_WEIGHT,
    CLAIMED,
    DRAINING,
    FAILED,
    HEALTHY,
    IDLE,
    LABEL_LOAD_STATE,
    LABEL_STATE,
    LABEL_TEMPLATE_HASH,
    OVERLOADED,
    PENDING,
    UNCLAIMED,
    WARMING,
)


def state_label(state: str) -> str:
    """The label value for an observed state."""
    return state if state in (CLAIMED, FAILED) else UNCLAIMED


_CRASH_REASONS = {"CrashLoopBackOff"}


def holders_of(claimed_by: str | None) -> tuple[str, ...]:
    """Who holds a pod, from its shoal.dev/claimed-by: one holder, or on a shared pod (claimsPerPod
    above 1) several, separated by commas (no object name can contain one)."""
    return tuple(h for h in (claimed_by or "").split(",") if h)


@dataclass(frozen=True)
class PodView:
    name: str
    uid: str
    created: datetime
    phase: str = "Pending"
    scheduled: bool = False
    ready: bool = False
    ready_changed: datetime | None = None  # last transition of the Ready condition
    deleting: bool = False
    crashlooping: bool = False
    restarts: int = 0
    state_label: str | None = None
    load_label: str | None = None  # shoal.dev/load-state as the pool last wrote it
    template_hash: str | None = None
    controller_uid: str | None = None  # uid of the controlling owner, if any
    busy: bool = False
    claimed_by: str | None = None
    claims: int = 0
    last_released: datetime | None = None
    last_signature: str | None = None
    last_claimed: datetime | None = None
    load: float | None = None  # as the pod reports it; None: it does not (metrics.k8s.io then)
    weight: float | None = None  # as the pod declares it (a positive number); None: it does not
    node: str | None = None
    ip: str | None = None
    requests: tuple[tuple[str, str], ...] = ()
    history: tuple[Job, ...] = ()  # the last jobs it served (Affinity)
    job_outcome: bool | None = None  # what the job it holds said of itself

    @property
    def claimed(self) -> bool:
        return self.busy or bool(self.claimed_by)

    @property
    def holders(self) -> tuple[str, ...]:
        return holders_of(self.claimed_by)

    def slots_held(self, slots: int) -> int:
        """Of its `slots`, how many are taken: a pod marked busy took itself out of the pool whole."""
        return slots if self.busy else min(slots, len(self.holders))


def _positive(text: str | None) -> float | None:
    """A positive, finite number from an annotation a workload wrote; None for anything else."""
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and 0 < value < float("inf") else None


def pod_view(pod: dict[str, Any]) -> PodView:
    meta = pod.get("metadata", {})
    status = pod.get("status", {}) or {}
    labels = meta.get("labels") or {}
    ann = meta.get("annotations") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready_cond = conditions.get("Ready", {})
    statuses = status.get("containerStatuses") or []
    controller = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    try:
        claims = int(ann.get(ANN_CLAIMS, "0"))
    except ValueError:
        claims = 0
    try:
        load: float | None = float(ann[ANN_LOAD]) if ANN_LOAD in ann else None
    except ValueError:
        load = None
    weight = _positive(ann.get(ANN_WEIGHT))
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    requests = ((containers[0].get("resources") or {}).get("requests")) or {}
    return PodView(
        name=meta["name"],
        uid=meta.get("uid", ""),
        created=parse_time(meta.get("creationTimestamp")) or datetime.now(UTC),
        phase=status.get("phase", "Pending"),
        scheduled=conditions.get("PodScheduled", {}).get("status") == "True"
        or bool(pod.get("spec", {}).get("nodeName")),
        ready=ready_cond.get("status") == "True",
        ready_changed=parse_time(ready_cond.get("lastTransitionTime")),
        deleting=bool(meta.get("deletionTimestamp")),
        crashlooping=any(
            (s.get("state", {}).get("waiting") or {}).get("reason") in _CRASH_REASONS for s in statuses
        ),
        restarts=sum(int(s.get("restartCount", 0)) for s in statuses),
        state_label=labels.get(LABEL_STATE),
        load_label=labels.get(LABEL_LOAD_STATE),
        template_hash=labels.get(LABEL_TEMPLATE_HASH),
        controller_uid=controller.get("uid") if controller else None,
        busy=ann.get(ANN_BUSY, "").lower() == "true",
        claimed_by=ann.get(ANN_CLAIMED_BY) or None,
        claims=claims,
        last_released=parse_time(ann.get(ANN_LAST_RELEASED)),
        last_signature=ann.get(ANN_LAST_SIGNATURE) or None,
        last_claimed=parse_time(ann.get(ANN_LAST_CLAIMED)),
        load=load,
        weight=weight,
        node=(pod.get("spec") or {}).get("nodeName"),
        ip=status.get("podIP"),
        requests=tuple(sorted((k, str(v)) for k, v in requests.items())),
        history=parse_history(ann.get(ANN_HISTORY)),
        job_outcome=outcome(ann.get(ANN_JOB_OUTCOME)),
    )


OVERLOAD = 0.9  # a claimed pod at this load or more is Overloaded (Invok's rule: served last)


def pod_load(pod: PodView, cpu_in_use: Decimal | None) -> float | None:
    """What the pod reports itself (shoal.dev/load), else its CPU in use over its CPU request (the CPU
    in use itself without one); None with neither (no sample yet)."""
    if pod.load is not None:
        return pod.load
    if cpu_in_use is None:
        return None
    requested = parse_quantity(dict(pod.requests).get("cpu", "0"))
    return float(cpu_in_use / requested) if requested else float(cpu_in_use)


def load_state(pod: PodView, load: float | None) -> str | None:
    """The load-state label a pod should carry: none unclaimed, else Overloaded at OVERLOAD or more,
    else Healthy (an unknown load too: nothing says otherwise)."""
    if not pod.claimed:
        return None
    return OVERLOADED if load is not None and load >= OVERLOAD else HEALTHY


def observed_state(pod: PodView) -> str:
    """The state a pod is in, from what the cluster says about it."""
    if pod.deleting:
        return DRAINING
    if pod.phase in ("Failed", "Succeeded") or pod.crashlooping:
        return FAILED
    if pod.claimed:
        return CLAIMED
    if pod.phase == "Running" and pod.ready:
        return IDLE
    if pod.phase == "Running" or pod.scheduled:
        return WARMING
    return PENDING
