"""B2: scaling quality. Demand traces replayed through Shoal's engine, a reference of the HPA v2
algorithm, KEDA as it behaves (that HPA fed a fresh value at every sync, its own polling only for
activation from zero), a perfect-foresight oracle and a causal floor.

The world: each replica serves 1 unit of load; a new pod serves only after `startup` seconds.
Two metrics are replayed: `cpu` (utilization of ready pods, which saturates at 100 %, as CPU does)
and `queue` (the total load, as a queue-depth metric per replica: AverageValue / targetPerReplica).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shoal.api.scaler import WorkerScalerSpec
from shoal.scaling.engine import config, decide
from shoal.scaling.types import EngineConfig, History, MetricReading, Observation, PodSample

TRACES = Path(__file__).resolve().parent / "traces"
REAL_TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
TARGET = 0.7  # target utilization for every scaler (HPA's averageUtilization 70 %)
# Real traces (../shared/traces, 5 s bins of requests per second), each multiplied by a constant so
# that one replica serves one unit: the Twitter stream (mean 65/s, bursts to 290/s) at 0.1, the Azure
# LLM services (mean 5/s) at 2. One constant per trace, chosen for replica counts of a few to a few
# dozen, never tuned to a result.
REAL = {
    "twitter": ("twitter_stream_2021-08_day2_23.5h_5s.csv", 0.1),
    "azure-code": ("azure_llm_inference_2023_code_1h_5s.csv", 2.0),
    "azure-conv": ("azure_llm_inference_2023_conv_1h_5s.csv", 2.0),
}


def load_trace(name: str) -> list[tuple[float, float]]:
    """A synthetic trace of bench/traces, or a real one (REAL) scaled by its constant."""
    if name in REAL:
        file, factor = REAL[name]
        with open(REAL_TRACES / file) as f:
            return [(float(r["t_seconds"]), float(r["load"]) * factor) for r in csv.DictReader(f)]
    with open(TRACES / f"{name}.csv") as f:
        return [(float(r["time_s"]), float(r["load"])) for r in csv.DictReader(f)]


@dataclass
class Cluster:
    """Pods: creation times. A pod is ready `startup` seconds after creation."""

    startup: float
    pods: list[float] = field(default_factory=list)

    def ready(self, now: float) -> int:
        return sum(1 for c in self.pods if now - c >= self.startup)

    def resize(self, n: int, now: float) -> None:
        if n > len(self.pods):
            self.pods += [now] * (n - len(self.pods))
        elif n < len(self.pods):
            self.pods = sorted(self.pods)[:n]  # the newest (least ready) go first


def observe_cpu(load: float, ready: int) -> float:
    return min(1.0, load / ready) if ready else 1.0


# --- HPA v2 reference ------------------------------------------------------------------------------


@dataclass
class Hpa:
    """kube-controller-manager's HPA: 15 s sync, 0.1 tolerance, scale-up max(4 pods, 100 %) per 15 s,
    scale-down 100 % per 15 s after a 300 s stabilization window (the v2 defaults)."""

    min_r: int
    max_r: int
    tolerance: float = 0.1
    down_window: float = 300.0
    recs: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas before)

    def compute(self, current: int, ready: int, metric: str, value: float) -> int:
        if metric == "cpu":
            if ready == 0:
                return current
            ratio = value / TARGET
            if abs(ratio - 1) <= self.tolerance:
                return current
            if current > ready and ratio > 1:
                # unready pods count as 0 % on scale-up
                ratio2 = value * ready / (current * TARGET)
                if abs(ratio2 - 1) <= self.tolerance or ratio2 < 1:
                    return current
                return math.ceil(ratio2 * current)
            return math.ceil(ratio * ready)
        # queue: AverageValue target, value = total load; target per replica = TARGET
        usage = value / max(current, 1)
        ratio = usage / TARGET
        if current and abs(ratio - 1) <= self.tolerance:
            return current
        return math.ceil(value / TARGET)

    def step(self, now: float, current: int, ready: int, metric: str, value: float) -> int:
        raw = max(self.min_r, min(self.max_r, self.compute(current, ready, metric, value)))
        self.recs = [r for r in self.recs if now - r[0] < self.down_window] + [(now, raw)]
        desired = raw
        if raw < current:
            desired = min(current, max(r for _, r in self.recs))
        self.events = [e for e in self.events if now - e[0] < 15]
        base = min((e[1] for e in self.events), default=current)
        if desired > current:
            desired = min(desired, max(base + 4, base * 2))
        elif desired < current:
            desired = max(desired, 0)  # 100 % per period
        desired = max(self.min_r, min(self.max_r, desired))
        if desired != current:
            self.events.append((now, current))
        return desired


# --- Shoal ----------------------------------------------------------------------------------------


def shoal_config(
    min_r: int, max_r: int, startup: float, metric: str, predictive: bool = False
) -> EngineConfig:
    """Shoal's defaults, as a user gets them (prediction off); with `predictive`, prediction switched on
    with the horizon at the pods' start-up time, the one setting a user must then give."""
    if metric == "cpu":
        metrics = [
            {"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": round(TARGET * 100)}}
        ]
    else:
        metrics = [
            {"type": "Prometheus", "prometheus": {"query": "sum(queue)", "targetPerReplica": str(TARGET)}}
        ]
    spec = WorkerScalerSpec.model_validate(
        {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sim"},
            "minReplicas": min_r,
            "maxReplicas": max_r,
            "pollIntervalSeconds": 15,
            "metrics": metrics,
            **({"predictive": {"enabled": True, "horizonSeconds": int(startup)}} if predictive else {}),
        }
    )
    return config(spec)


def shoal_reading(metric: str, load: float, current: int, ready: int) -> MetricReading:
    if metric == "cpu":
        u = observe_cpu(load, ready)
        pods = tuple(PodSample(f"p{i}", i < ready, u if i < ready else None, 1.0) for i in range(current))
        return MetricReading("cpu", "Resource", pods=pods, target_utilization=TARGET)
    return MetricReading("queue", "Prometheus", value=load, target_per_replica=TARGET)


# --- replay -------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    times: list[float] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    under: float = 0.0
    over: float = 0.0
    cost: float = 0.0
    events: int = 0


def replay(
    trace: list[tuple[float, float]],
    name: str,
    decide_fn: Callable[[float, int, int, float], int] | None,
    poll: float,
    startup: float,
    min_r: int,
    oracle: bool = False,
    dt: float = 1.0,
) -> Run:
    loads = [x for _, x in trace]
    step = trace[1][0] - trace[0][0]
    end = trace[-1][0]

    def load_at(t: float) -> float:
        return loads[min(len(loads) - 1, int(t // step))]

    cluster = Cluster(startup)
    cluster.resize(max(min_r, math.ceil(load_at(0) / TARGET)), -startup)  # start warm, at target
    run = Run(name)
    desired = len(cluster.pods)
    t = 0.0
    next_poll = 0.0
    while t <= end:
        load = load_at(t)
        ready = cluster.ready(t)
        if oracle:
            # Perfect foresight: a pod asked for now serves from t + startup, and a pod let go now
            # cannot be back before then, so keep what any moment of the coming start-up window needs.
            want = max(
                min_r,
                max(math.ceil(load_at(t + s) / TARGET) for s in range(0, int(startup) + 1, int(step))),
            )
            if want != desired:
                run.events += 1
            desired = want
            cluster.resize(desired, t)
        elif t >= next_poll and decide_fn is not None:
            want = decide_fn(t, len(cluster.pods), ready, load)
            if want != len(cluster.pods):
                run.events += 1
                cluster.resize(want, t)
            next_poll += poll
        ready = cluster.ready(t)
        run.under += max(0.0, load - ready) * dt
        run.over += max(0.0, ready - load) * dt
        run.cost += len(cluster.pods) * dt
        if int(t) % 15 == 0:
            run.times.append(t)
            run.replicas.append(len(cluster.pods))
            run.ready.append(ready)
        t += dt
    return run


def _shoal_fn(cfg: EngineConfig, metric: str, startup: float) -> Callable[[float, int, int, float], int]:
    state = {"h": History()}

    def shoal(t: float, cur: int, rdy: int, load: float) -> int:
        d, state["h"] = decide(
            cfg, Observation(cur, (shoal_reading(metric, load, cur, rdy),), startup), state["h"], t
        )
        return d.desired

    return shoal


def hpa_run(
    trace: list[tuple[float, float]],
    metric: str,
    startup: float,
    min_r: int,
    max_r: int,
    name: str = "HPA v2",
) -> Run:
    """The HPA v2 reference on a Deployment, replayed on `trace`."""
    hpa = Hpa(min_r, max_r)
    return replay(
        trace,
        name,
        lambda t, cur, rdy, load: hpa.step(
            t, cur, rdy, metric, observe_cpu(load, rdy) if metric == "cpu" else load
        ),
        15,
        startup,
        min_r,
    )


def simulate(
    trace_name: str, metric: str, startup: float = 60.0, min_r: int = 1, max_r: int = 60
) -> dict[str, Run]:
    trace = load_trace(trace_name)
    out: dict[str, Run] = {"hpa": hpa_run(trace, metric, startup, min_r, max_r)}

    # KEDA as it behaves: it creates an HPA whose External metric its metrics server answers by asking
    # the scaler afresh at every HPA sync (15 s), so above zero it is HPA on the same value; only
    # activation (0 <-> 1, with minReplicaCount 0) follows KEDA's own pollingInterval (30 s).
    keda_hpa = Hpa(max(min_r, 1), max_r)
    polled = {"t": -1e9}

    def keda(t: float, cur: int, rdy: int, load: float) -> int:
        if cur == 0 or min_r == 0:
            if t - polled["t"] < 30:
                return cur
            polled["t"] = t
            if load <= 0:
                return 0 if min_r == 0 else cur
            if cur == 0:
                return 1
        return keda_hpa.step(t, cur, rdy, metric, observe_cpu(load, rdy) if metric == "cpu" else load)

    out["keda"] = replay(trace, "KEDA (HPA fed fresh, 30 s activation)", keda, 15, startup, min_r)

    for key, label, predictive in (
        ("shoal", "Shoal", False),
        ("shoal_predictive", "Shoal, prediction on", True),
    ):
        cfg = shoal_config(min_r, max_r, startup, metric, predictive)
        out[key] = replay(trace, label, _shoal_fn(cfg, metric, startup), 15, startup, min_r)
    out["oracle"] = replay(trace, "Oracle (perfect foresight)", None, 15, startup, min_r, oracle=True)
    # The least under-provisioning any scaler without foresight can have: it sees every second, sizes
    # for the load at once with no step limit, and never scales down (cost is no concern here).
    out["floor"] = replay(
        trace,
        "Causal floor",
        lambda t, cur, rdy, load: max(cur, math.ceil(load / TARGET)),
        1,
        startup,
        min_r,
    )
    return out
