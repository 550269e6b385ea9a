"""Per-metric replica proposals: the HPA algorithm (Target mode) and utilization bands (Thresholds)."""

from __future__ import annotations

import math
from dataclasses import replace

from shoal.scaling.types import EngineConfig, MetricReading, PodSample, Proposal


def _ceil(x: float) -> int:
    # Guard against float noise: 3.0000000001 replicas is 3.
    return math.ceil(round(x, 9))


def resource_utilization(
    pods: tuple[PodSample, ...], direction: int, target: float | None
) -> tuple[float, int]:
    """Average usage/request over the pods HPA would count, and how many pods that is.

    direction 0: ready pods with metrics only. direction +1 (scaling up): pods without metrics and
    not-ready pods count as 0 %. direction -1 (scaling down): pods without metrics count as the
    target (HPA uses 100 % of the target), not-ready pods are left out. This damps both ways.
    """
    usage = request = 0.0
    count = 0
    for p in pods:
        if p.request is None or p.request <= 0:
            continue
        if p.usage is not None and p.ready:
            usage += p.usage
        elif direction > 0:
            pass  # counts with zero usage
        elif direction < 0 and p.usage is None:
            usage += p.request * (target if target is not None else 1.0)
        else:
            continue
        request += p.request
        count += 1
    return (usage / request if request else 0.0), count


# kube-controller-manager's defaults for --horizontal-pod-autoscaler-cpu-initialization-period and
# --horizontal-pod-autoscaler-initial-readiness-delay.
CPU_INITIALIZATION_SECONDS = 300.0
INITIAL_READINESS_DELAY_SECONDS = 30.0


def _cpu_unready(p: PodSample, now: float) -> bool:
    """HPA's groupPods for CPU: a pod's samples are not trusted while it starts."""
    if p.started is None or p.ready_since is None:
        return True  # no Ready condition or no start time
    if p.started + CPU_INITIALIZATION_SECONDS > now:
        # Within the initialization period: unready, or no full metric window since it became ready.
        stale = p.sampled is not None and p.window is not None and p.sampled < p.ready_since + p.window
        return not p.ready or stale
    # Afterwards: unready only if it has never been ready since it started.
    return not p.ready and p.started + INITIAL_READINESS_DELAY_SECONDS > p.ready_since


def group_pods(
    pods: tuple[PodSample, ...], cpu: bool, now: float
) -> tuple[list[PodSample], list[PodSample], list[PodSample]]:
    """(ready with metrics, unready, missing metrics), as HPA's groupPods: deleting and Failed pods are
    left out, Pending ones are unready; readiness is judged for CPU only."""
    ready: list[PodSample] = []
    unready: list[PodSample] = []
    missing: list[PodSample] = []
    for p in pods:
        if p.deleting or p.phase == "Failed":
            continue
        if p.phase == "Pending":
            unready.append(p)
        elif p.usage is None:
            missing.append(p)
        elif cpu and _cpu_unready(p, now):
            unready.append(p)
        else:
            ready.append(p)
    return ready, unready, missing


def _ratio(samples: list[tuple[float, float]], target: float) -> float:
    """Usage over requests of the pods counted, against the target (metricsclient's ratio)."""
    request = sum(r for _, r in samples)
    return (sum(u for u, _ in samples) / request / target) if request else 0.0


def hpa_replicas(
    ready: list[PodSample],
    unready: list[PodSample],
    missing: list[PodSample],
    target: float,
    tolerance: float,
    current: int,
) -> int:
    """GetResourceReplicas of kube-controller-manager's replica calculator, for Target mode."""
    counted = [(float(p.usage or 0.0), float(p.request or 0.0)) for p in ready]
    usage_ratio = _ratio(counted, target)
    scale_up_with_unready = bool(unready) and usage_ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - usage_ratio) <= tolerance:
            return current
        return _ceil(usage_ratio * len(ready))
    if missing and usage_ratio < 1.0:
        # On a scale-down a pod without metrics counts as using max(100 %, target) of its request.
        counted += [(float(p.request or 0.0) * max(1.0, target), float(p.request or 0.0)) for p in missing]
    elif missing and usage_ratio > 1.0:
        counted += [(0.0, float(p.request or 0.0)) for p in missing]
    if scale_up_with_unready:
        counted += [(0.0, float(p.request or 0.0)) for p in unready]
    new_ratio = _ratio(counted, target)
    if (
        abs(1.0 - new_ratio) <= tolerance
        or (usage_ratio < 1.0 and new_ratio > 1.0)
        or (usage_ratio > 1.0 and new_ratio < 1.0)
    ):
        return current  # too small a change, or the pods set aside would reverse the direction
    replicas = _ceil(new_ratio * len(counted))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas


def _resource(r: MetricReading, cfg: EngineConfig, current: int, now: float) -> Proposal:
    pods = tuple(p for p in r.pods if not p.deleting and p.phase != "Failed")  # as HPA: not counted
    if not pods:
        return Proposal(r.name, r.kind, None, error="no pods of the target to measure")
    if any(p.request is None or p.request <= 0 for p in pods):
        return Proposal(r.name, r.kind, None, error=f"some pods of the target have no {r.name} request")
    if not any(p.usage is not None for p in pods):
        return Proposal(r.name, r.kind, None, error=f"no {r.name} metrics for the target's pods yet")
    target = r.target_utilization
    target_txt = f"{round(target * 100)}%" if target is not None else None
    if cfg.mode == "Thresholds" or target is None:
        util, _ = resource_utilization(pods, 0, target)
        if any(p.usage is None or not p.ready for p in pods):
            direction = 1 if util > cfg.scale_up else -1 if util < cfg.scale_down else 0
            util, _ = resource_utilization(pods, direction, None)
        replicas = _band(util, cfg, current)
        return Proposal(
            r.name,
            r.kind,
            replicas,
            util,
            demand=current * util / _setpoint(cfg),
            value=f"{round(util * 100)}%",
            target=target_txt,
        )
    ready, unready, missing = group_pods(pods, r.name == "cpu", now)
    if not ready:
        return Proposal(r.name, r.kind, None, error=f"no {r.name} metrics for the target's ready pods yet")
    util = _ratio([(float(p.usage or 0.0), float(p.request or 0.0)) for p in ready], 1.0)
    replicas = hpa_replicas(ready, unready, missing, target, cfg.tolerance, current)
    return Proposal(
        r.name,
        r.kind,
        replicas,
        util,
        demand=util / target * len(ready),
        value=f"{round(util * 100)}%",
        target=target_txt,
    )


def _setpoint(cfg: EngineConfig) -> float:
    return (cfg.scale_up + cfg.scale_down) / 2


def _band(util: float, cfg: EngineConfig, current: int) -> int:
    """Thresholds mode: outside [scaleDown, scaleUp], aim for the middle of the band."""
    want = _ceil(current * util / _setpoint(cfg)) if current else (1 if util > 0 else 0)
    if util > cfg.scale_up:
        return max(current + 1, want)
    if util < cfg.scale_down:
        return max(0, min(current - 1, want))
    return current


def _prometheus(r: MetricReading, cfg: EngineConfig, current: int) -> Proposal:
    if r.value is None or math.isnan(r.value) or math.isinf(r.value):
        return Proposal(r.name, r.kind, None, error="query returned no usable value")
    v = max(0.0, r.value)
    if v <= r.activation:
        # Inactive (KEDA's activation): no replicas asked for; minReplicas decides whether that is 0.
        return Proposal(r.name, r.kind, 0, None, 0.0, f"{v:g}", f"activation {r.activation:g}")
    active = _prometheus_active(r, cfg, current, v)
    if active.replicas is not None and active.replicas < 1:
        return replace(active, replicas=1)  # above the activation value: at least one
    return active


def _prometheus_active(r: MetricReading, cfg: EngineConfig, current: int, v: float) -> Proposal:
    if r.target_per_replica:
        t = r.target_per_replica
        demand = v / t
        util = demand / current if current else (math.inf if v > 0 else 0.0)
        if cfg.mode == "Thresholds":
            replicas = _band(util, cfg, current) if current else _ceil(demand)
            return Proposal(r.name, r.kind, replicas, util, demand, f"{v:g}", f"{t:g}/replica")
        replicas = current if current and abs(util - 1) <= cfg.tolerance else _ceil(demand)
        # In Target mode a per-replica value is not a utilization: no emergency band applies.
        return Proposal(r.name, r.kind, replicas, None, demand, f"{v:g}", f"{t:g}/replica")
    if r.target_value_utilization:
        t = r.target_value_utilization
        ratio = v / t
        if cfg.mode == "Thresholds":
            replicas = _band(v, cfg, current)
        else:
            replicas = current if abs(ratio - 1) <= cfg.tolerance else _ceil(current * ratio)
        return Proposal(r.name, r.kind, replicas, v, current * ratio, f"{v:g}", f"{t:g}")
    return Proposal(r.name, r.kind, None, error="metric has no target")


def propose(r: MetricReading, cfg: EngineConfig, current: int, now: float = 0.0) -> Proposal:
    """`now`: wall-clock UTC seconds, for CPU's initialization rules (pods' start and Ready times)."""
    if r.error:
        return Proposal(r.name, r.kind, None, error=r.error)
    if r.kind == "Resource":
        return _resource(r, cfg, current, now)
    return _prometheus(r, cfg, current)
