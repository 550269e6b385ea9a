"""Which pod a claim gets among those with room (idle ones, and on shared pools claimed ones with a free
slot). Strategies are pure functions of the candidates and the request."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from shoal.api.common import parse_quantity
from shoal.api.pool import Recycle
from shoal.claims.affinity import score
from shoal.pool.plan import recycle_reason
from shoal.pool.pods import PodView, observed_state, pod_load
from shoal.vocab import CLAIMED, IDLE

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ClaimRequest:
    signature: str | None = None  # job signature (JSON, pool/jobs.py), for Affinity
    requests: dict[str, str] = field(default_factory=dict)  # resource -> quantity, for ResourceAware
    cursor: str | None = None  # name of the pod claimed last, for RoundRobin (cursor_of the pool)
    # pod -> resource -> amount in use now (metrics.k8s.io), for LeastLoaded and ResourceAware
    usage: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    # False: the pod's requests must cover CPU, memory and disk too. A TrainingSession's resources are
    # the requests and limits its own pod would have; a warm pod cannot change its own, so it must
    # already have them.
    burstable: bool = True


# Strategies that rank by live usage: the claim path reads the pool's pod metrics for them.
LIVE_USAGE = frozenset({"LeastLoaded", "ResourceAware"})


def cursor_of(pods: Sequence[PodView]) -> str | None:
    """The pod of the pool claimed most recently (claimed now or since released): RoundRobin goes on
    from it. It lives on the pods (their last-claimed times), so it survives an operator restart."""
    claimed = [p for p in pods if p.last_claimed is not None]
    return max(claimed, key=lambda p: (p.last_claimed, p.name)).name if claimed else None


def claimable(
    pods: Sequence[PodView], recycle: Recycle | None, template_hash: str, now: datetime, slots: int = 1
) -> list[PodView]:
    """Pods with room for a claim that are not about to be replaced: idle ones, and with `slots`
    (claimsPerPod) above 1 claimed ones with a free slot, unless marked busy."""

    def room(p: PodView) -> bool:
        state = observed_state(p)
        return state == IDLE or (state == CLAIMED and p.ready and p.slots_held(slots) < slots)

    return [p for p in pods if room(p) and recycle_reason(p, recycle, template_hash, now) is None]


def _lru_key(p: PodView) -> tuple[datetime, datetime, str]:
    return (p.last_released or _NEVER, p.created, p.name)


def least_recently_used(pods: Sequence[PodView], _: ClaimRequest) -> PodView | None:
    return min(pods, key=_lru_key, default=None)


def round_robin(pods: Sequence[PodView], req: ClaimRequest) -> PodView | None:
    ordered = sorted(pods, key=lambda p: p.name)
    if not ordered:
        return None
    return next((p for p in ordered if req.cursor is None or p.name > req.cursor), ordered[0])


def load(p: PodView, req: ClaimRequest) -> float:
    """What the pod reports itself (shoal.dev/load), else its CPU in use over its CPU request; a pod
    with no sample yet (new, so idle) counts as unloaded."""
    found = pod_load(p, req.usage.get(p.name, {}).get("cpu"))
    return 0.0 if found is None else found


def least_loaded(pods: Sequence[PodView], req: ClaimRequest) -> PodView | None:
    """The lowest load, so an overloaded pod (at OVERLOAD or more) only when every other one is too
    (Invok's rule); ties by fewest claims served."""
    return min(pods, key=lambda p: (load(p, req), p.claims, p.name), default=None)


def free(p: PodView, req: ClaimRequest) -> dict[str, Decimal]:
    """Per resource the pod requests: its request minus what it uses now (not below zero)."""
    used = req.usage.get(p.name, {})
    return {k: max(Decimal(0), parse_quantity(v) - used.get(k, Decimal(0))) for k, v in p.requests}


def _slack(p: PodView, req: ClaimRequest) -> Decimal | None:
    """How much free headroom the pod has beyond the claim's needs, relative to them; None: too little."""
    have = free(p, req)
    total = Decimal(0)
    for k, v in req.requests.items():
        need = parse_quantity(v)
        if have.get(k, Decimal(0)) < need:
            return None
        total += (have[k] - need) / (need or Decimal(1))
    return total


def resource_aware(pods: Sequence[PodView], req: ClaimRequest) -> PodView | None:
    """The pod whose free headroom (requests minus live usage) covers the claim's with the least to
    spare, keeping roomier pods for bigger claims; none if no pod has room."""
    fitting = [(s, p) for p in pods if (s := _slack(p, req)) is not None]
    return min(fitting, key=lambda sp: (sp[0], _lru_key(sp[1])), default=(None, None))[1]


def affinity(pods: Sequence[PodView], req: ClaimRequest) -> PodView | None:
    """The pod whose past jobs are most like this one (signature similarity), then the one whose
    similar jobs succeeded most often, then the one that ran them fastest, then least recently used."""
    return min(
        pods,
        key=lambda p: (score(p.history, p.last_signature, req.signature).key(), _lru_key(p)),
        default=None,
    )


def weight(p: PodView) -> float:
    """What the pod declares of its capacity (shoal.dev/weight, written by its workload), else its CPU
    request in cores, else 1."""
    if p.weight is not None:
        return p.weight
    cpu = parse_quantity(dict(p.requests).get("cpu", "0"))
    return float(cpu) if cpu > 0 else 1.0


def weighted_round_robin(pods: Sequence[PodView], _: ClaimRequest) -> PodView | None:
    """The pod furthest behind its share: fewest claims served (shoal.dev/claims, kept on the pod, so
    it survives restarts) per unit of weight, then by name. Claims then go round the pods in proportion
    to their weights, without state of its own; a pod new to the pool catches up first."""
    return min(pods, key=lambda p: (p.claims / weight(p), p.name), default=None)


def least_connections(pods: Sequence[PodView], _: ClaimRequest) -> PodView | None:
    """The pod serving the fewest claims now (shared pools spread their claims), then the one used least
    recently."""
    return min(pods, key=lambda p: (len(p.holders), _lru_key(p)), default=None)


STRATEGIES: dict[str, Callable[[Sequence[PodView], ClaimRequest], PodView | None]] = {
    "LeastRecentlyUsed": least_recently_used,
    "RoundRobin": round_robin,
    "LeastLoaded": least_loaded,
    "ResourceAware": resource_aware,
    "Affinity": affinity,
    "LeastConnections": least_connections,
    "WeightedRoundRobin": weighted_round_robin,
}


# CPU, memory and disk a pod may use beyond its request (burstable); a device it does not request it
# does not have at all: a GPU claim must never get a CPU-only pod, whatever the strategy.
_BURSTABLE = frozenset({"cpu", "memory", "ephemeral-storage"})


def missing_devices(pod: PodView, request: ClaimRequest) -> dict[str, str]:
    """Extended resources (GPUs, GPU memory, ...) the claim asks for and the pod's requests do not cover
    (and CPU, memory and disk when the request is not `burstable`)."""
    have = dict(pod.requests)
    out = {}
    for name, need in request.requests.items():
        if name in _BURSTABLE and request.burstable:
            continue
        if parse_quantity(have.get(name, "0")) < parse_quantity(need):
            out[name] = need
    return out


def unfit_reason(strategy: str, candidates: Sequence[PodView], request: ClaimRequest) -> str | None:
    """Why no idle pod was handed out although some were idle (None: there was a fitting one or none idle)."""
    if not candidates:
        return None
    if all(missing_devices(p, request) for p in candidates):
        asked = ", ".join(f"{k} {v}" for k, v in sorted(missing_devices(candidates[0], request).items()))
        return f"{len(candidates)} idle pod(s), none with the {asked} asked for"
    fitting = [p for p in candidates if not missing_devices(p, request)]
    if strategy == "ResourceAware" and all(_slack(p, request) is None for p in fitting):
        asked = ", ".join(f"{k} {v}" for k, v in sorted(request.requests.items()))
        return f"{len(candidates)} idle pod(s), none with {asked} free (requests minus live usage)"
    return None


def select_pod(strategy: str, candidates: Sequence[PodView], request: ClaimRequest) -> PodView | None:
    """The strategy's choice among the idle pods that have every device the claim asks for."""
    fitting = [p for p in candidates if not missing_devices(p, request)]
    return STRATEGIES[strategy](fitting, request)
