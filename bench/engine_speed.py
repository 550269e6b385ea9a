"""B5: evaluations per second of the pure engine on one core, and what the forecaster costs with
seven days of history (a daily season on a 60 s grid): per evaluation, to restore from the
persisted series, and the persisted size."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

from shoal.scaling.engine import decide
from shoal.scaling.persist import decode, encode
from shoal.scaling.types import EngineConfig, History, MetricReading, Observation, PodSample

DAY = 86400.0
WEEK = 7 * DAY


def _obs() -> Observation:
    pods = tuple(PodSample(f"p{i}", True, 0.5 + 0.01 * i, 1.0) for i in range(10))
    return Observation(
        10,
        (
            MetricReading("cpu", "Resource", pods=pods, target_utilization=0.6),
            MetricReading("q", "Prometheus", value=80.0, target_per_replica=10.0),
        ),
    )


def measure(predictive: bool, seconds: float = 3.0, season: float | None = DAY) -> float:
    """Steady-state evaluations per second; with prediction, over seven days of learned history (with
    `season` None, the season is the one the scaler found in that history itself)."""
    cfg = EngineConfig(min_replicas=1, max_replicas=100)
    history, now, step = History(), 10_000.0, 15.0
    if predictive:
        cfg, history, now = week_of_history(season)
        step = 60.0
    obs = _obs()
    n = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        # Threaded like the operator does: each evaluation adds one grid point to the history.
        _, history = decide(cfg, obs, history, now + n * step)
        n += 1
    return n / (time.process_time() - start)


def week_of_history(season: float | None = DAY) -> tuple[EngineConfig, History, float]:
    cfg = EngineConfig(
        min_replicas=1,
        max_replicas=100,
        predictive=True,
        horizon=300,
        season=season,
        history_seconds=WEEK,
        poll=60,
    )
    history, t = History(), 0.0
    obs = _obs()
    while t < WEEK:
        load = 8.0 + 4 * math.sin(2 * math.pi * t / DAY)
        reading = MetricReading("q", "Prometheus", value=load * 10, target_per_replica=10.0)
        _, history = decide(cfg, replace(obs, metrics=(reading,)), history, t)
        t += 60.0
    return cfg, history, t


def forecast_costs() -> dict[str, Any]:
    _, history, now = week_of_history()
    assert history.fit is not None
    per_eval = 1000.0 / measure(predictive=True, seconds=2.0)
    # The same week with no season configured: found in the history (every 15 minutes), then used.
    _, found, _ = week_of_history(None)
    detecting = 1000.0 / measure(predictive=True, seconds=2.0, season=None)
    text = encode(history.fit)
    started = time.process_time()
    restored = decode(text, 60.0, DAY, WEEK, now)
    restore_ms = (time.process_time() - started) * 1000
    assert restored is not None
    return {
        "history_points": history.fit.n,
        "evaluation_ms_at_7_days": round(per_eval, 3),
        "goal_ms": 5.0,
        "goal_met": per_eval <= 5.0,
        "detected_season_seconds": found.season,
        "evaluation_ms_at_7_days_detecting": round(detecting, 3),
        "restore_ms": round(restore_ms, 1),
        "persisted_bytes": len(text),
        "persisted_goal_bytes": 100 * 1024,
    }
