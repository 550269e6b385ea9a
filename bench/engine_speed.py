"""B5: evaluations per second of the pure engine on one core."""

from __future__ import annotations

import time
from dataclasses import replace

from shoal.scaling.engine import decide
from shoal.scaling.types import EngineConfig, History, MetricReading, Observation, PodSample


def measure(predictive: bool, seconds: float = 3.0) -> float:
    cfg = EngineConfig(min_replicas=1, max_replicas=100)
    if predictive:
        cfg = replace(cfg, predictive=True, horizon=60)
    pods = tuple(PodSample(f"p{i}", True, 0.5 + 0.01 * i, 1.0) for i in range(10))
    obs = Observation(
        10,
        (
            MetricReading("cpu", "Resource", pods=pods, target_utilization=0.6),
            MetricReading("q", "Prometheus", value=80.0, target_per_replica=10.0),
        ),
    )
    history = History(
        samples=tuple((t * 15.0, 8.0 + (t % 7) * 0.1) for t in range(240)) if predictive else ()
    )
    now = 10_000.0
    n = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        decide(cfg, obs, history, now + n)  # the same history each time: a steady-state evaluation
        n += 1
    return n / (time.process_time() - start)
