"""Per-metric replica proposals: the HPA algorithm (Target mode) and utilization bands (Thresholds)."""

from __future__ import annotations

import math

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


def _resource(r: MetricReading, cfg: EngineConfig, current: int) -> Proposal:
    pods = r.pods
    if not pods:
        return Proposal(r.name, r.kind, None, error="no pods of the target to measure")
    if any(p.request is None or p.request <= 0 for p in pods):
        return Proposal(r.name, r.kind, None, error=f"some pods of the target have no {r.name} request")
    if not any(p.usage is not None for p in pods):
        return Proposal(r.name, r.kind, None, error=f"no {r.name} metrics for the target's pods yet")
    target = r.target_utilization
    util, counted = resource_utilization(pods, 0, target)
    incomplete = any(p.usage is None or not p.ready for p in pods)
    total = len(pods)
    target_txt = f"{round(target * 100)}%" if target is not None else None
    if cfg.mode == "Thresholds" or target is None:
        if incomplete:
            direction = 1 if util > cfg.scale_up else -1 if util < cfg.scale_down else 0
            util, counted = resource_utilization(pods, direction, None)
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
    ratio = util / target
    if abs(ratio - 1) <= cfg.tolerance:
        replicas = current
    elif not incomplete:
        replicas = _ceil(ratio * counted)
    else:
        direction = 1 if ratio > 1 else -1
        util2, _ = resource_utilization(pods, direction, target)
        ratio2 = util2 / target
        flipped = (ratio2 > 1) != (ratio > 1)
        replicas = current if flipped or abs(ratio2 - 1) <= cfg.tolerance else _ceil(ratio2 * total)
        replicas = max(replicas, current) if direction > 0 else min(replicas, current)
    return Proposal(
        r.name,
        r.kind,
        replicas,
        util,
        demand=util / target * max(counted, 1),
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


def propose(r: MetricReading, cfg: EngineConfig, current: int) -> Proposal:
    if r.error:
        return Proposal(r.name, r.kind, None, error=r.error)
    if r.kind == "Resource":
        return _resource(r, cfg, current)
    return _prometheus(r, cfg, current)
