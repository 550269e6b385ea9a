"""B2's warm-capacity rows: a WorkerScaler on a ContainerPool with `warm.minIdle`, against HPA on a
Deployment, on the same trace, with the idle pods' cost counted.

The pool keeps `minIdle` idle, ready pods on top of the claimed ones: a rise of demand claims them at
once (claim time, a fraction of a second here, against a pod's start-up), and the pool starts new
ones to restore its idle count. So at every second the pool holds max(the scaler's size, demand +
minIdle) pods, and demand is short only where it rose by more than minIdle within one start-up time.

minIdle is sized from the trace's own past, as a user would from their history, and judged on what
comes after: the first half of each trace sizes it (the 95th percentile of the demand's rise within
one start-up time), the second half is replayed for both rows. One rule for every trace, no tuning.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench import scaling_sim
from bench.scaling_sim import TARGET, Cluster, Run, observe_cpu
from shoal.scaling.engine import decide
from shoal.scaling.types import EngineConfig, History, MetricReading, Observation, PodSample

PERCENTILE = 95


def rise_within(loads: list[float], step: float, startup: float) -> list[float]:
    """For each moment, how far demand climbs within the next start-up time (0 where it does not)."""
    k = max(1, round(startup / step))
    return [max(0.0, max(loads[i : i + k + 1]) - loads[i]) for i in range(max(0, len(loads) - k))]


def min_idle(loads: list[float], step: float, startup: float) -> int:
    """The idle pods that cover the PERCENTILE-th rise within one start-up (one pod serves one unit)."""
    rises = rise_within(loads, step, startup)
    return math.ceil(float(np.percentile(rises, PERCENTILE))) if rises else 0


def split(trace: list[tuple[float, float]]) -> tuple[list[float], list[tuple[float, float]]]:
    """(the first half's loads, the second half with its times from 0)."""
    half = len(trace) // 2
    t0 = trace[half][0]
    return [x for _, x in trace[:half]], [(t - t0, x) for t, x in trace[half:]]


def replay_pool(
    trace: list[tuple[float, float]],
    scaler: Any,
    idle: int,
    startup: float,
    min_r: int,
    poll: float = 15.0,
    dt: float = 1.0,
) -> tuple[Run, int]:
    """scaling_sim.replay with the pool between the scaler and the pods: (the run, pool changes).
    Run.events counts the scaler's size changes; the pool's own (restoring its idle pods, letting
    extra ones go) are returned beside it."""
    loads = [x for _, x in trace]
    step = trace[1][0] - trace[0][0]

    def load_at(t: float) -> float:
        return loads[min(len(loads) - 1, int(t // step))]

    cluster = Cluster(startup)
    size = max(min_r, math.ceil(load_at(0) / TARGET))
    wanted = size
    cluster.resize(max(size, math.ceil(load_at(0)) + idle), -startup)  # start warm, as the other rows
    run, pool_changes, t, next_poll = Run("WorkerScaler + warm pool"), 0, 0.0, 0.0
    while t <= trace[-1][0]:
        load = load_at(t)
        ready = cluster.ready(t)
        if t >= next_poll:
            want = scaler(t, len(cluster.pods), ready, load)
            if want != wanted:
                run.events += 1
                wanted = want
            next_poll += poll
        pool = max(wanted, math.ceil(load) + idle)  # claimed (demand) plus minIdle, or the scaler's size
        if pool != len(cluster.pods):
            pool_changes += 1
            cluster.resize(pool, t)
        ready = cluster.ready(t)
        run.under += max(0.0, load - ready) * dt
        run.over += max(0.0, ready - load) * dt
        run.cost += len(cluster.pods) * dt
        t += dt
    return run, pool_changes


def _at_full(cfg: EngineConfig, metric: str, startup: float) -> Any:
    """Shoal's engine at its defaults but a 100 % target (utilization, or one unit per replica)."""
    state = {"h": History()}

    def shoal(t: float, cur: int, rdy: int, load: float) -> int:
        if metric == "cpu":
            u = observe_cpu(load, rdy)
            pods = tuple(PodSample(f"p{i}", i < rdy, u if i < rdy else None, 1.0) for i in range(cur))
            reading = MetricReading("cpu", "Resource", pods=pods, target_utilization=1.0)
        else:
            reading = MetricReading("queue", "Prometheus", value=load, target_per_replica=1.0)
        d, state["h"] = decide(cfg, Observation(cur, (reading,), startup), state["h"], t)
        return int(d.desired)

    return shoal


def row(
    trace_name: str, metric: str, startup: float = 60.0, min_r: int = 1, max_r: int = 60
) -> dict[str, Any]:
    trace = scaling_sim.load_trace(trace_name)
    history, later = split(trace)
    step = trace[1][0] - trace[0][0]
    idle = min_idle(history, step, startup)
    h = scaling_sim.hpa_run(later, metric, startup, min_r, max_r, "HPA v2 + Deployment")
    # The idle pods are the headroom: the scaler sizes for the demand itself (100 % target), where on
    # a Deployment the 70 % target is what absorbs a rise while new pods start.
    cfg = scaling_sim.shoal_config(min_r, max_r, startup, metric)
    scaler = _at_full(cfg, metric, startup)
    warm, pool_changes = replay_pool(later, scaler, idle, startup, min_r)

    def figures(r: Run) -> dict[str, Any]:
        return {
            "under_replica_s": round(r.under),
            "cost_replica_s": round(r.cost),
            "scale_events": r.events,
        }

    return {
        "min_idle": idle,
        "held_out_s": round(later[-1][0]),
        "hpa": figures(h),
        "shoal_warm": {**figures(warm), "pool_changes": pool_changes},
    }
