"""Prediction that earns its place: the skill gate, a season found in the history, observe-only."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shoal.scaling.engine import decide
from shoal.scaling.outlook import DETECT_EVERY, look_ahead
from shoal.scaling.record import outlook_status
from shoal.scaling.seasons import detect
from shoal.scaling.skill import MIN_SCORED, Skill, file, score
from shoal.scaling.types import Decision, EngineConfig, History, MetricReading, Observation, Rules

# --- the skill gate --------------------------------------------------------------------------------


def test_skill_compares_the_forecasts_error_at_its_horizon_with_persistences() -> None:
    s = Skill()
    for t in range(MIN_SCORED):
        s = file(s, t * 10.0, 60.0, predicted=10.0 + t, demand=5.0)  # demand was 5 when it was made
    assert s.count == 0 and s.ratio is None and not s.trusted  # nothing due yet
    s = score(s, 60.0 + 5.0, demand=11.0, memory=3600.0)  # the first one is due: it said 10, 11 came
    assert s.count == 1 and s.ratio == pytest.approx(1 / 6)  # |10-11| against |5-11|
    assert not s.trusted  # one score is not a record
    s = score(s, 10_000.0, demand=12.0, memory=3600.0)
    assert s.count == MIN_SCORED and s.trusted and s.pending == ()


def test_a_forecast_worse_than_persistence_is_not_trusted_and_old_scores_fade() -> None:
    s = Skill()
    for t in range(MIN_SCORED):  # said 20 where 10 came; persistence said 9
        s = score(file(s, t * 15.0, 15.0, 20.0, 9.0), t * 15.0 + 15.0, 10.0, 600.0)
    assert s.count == MIN_SCORED and s.ratio == pytest.approx(10.0) and not s.trusted
    # Then a long run of good forecasts: the bad ones fade over `memory` and trust comes back.
    t0 = MIN_SCORED * 15.0 + 3600.0
    for t in range(40):
        s = score(file(s, t0 + t * 15.0, 15.0, 10.0, 9.0), t0 + t * 15.0 + 15.0, 10.0, 600.0)
    assert s.trusted and s.ratio is not None and s.ratio < 0.01


# --- seasons from the history ------------------------------------------------------------------------


def test_a_season_is_found_in_bursts_and_in_smooth_waves_and_not_in_noise_trends_or_walks() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(360)  # an hour and a half of 15 s polls
    bursts = 5 + np.where(t % 120 < 8, 10.0, 0.0) + rng.normal(0, 0.5, 360)  # every 30 minutes
    assert detect(bursts, 15, 1440) == 1800
    assert detect(bursts[:240], 15, 1440) is None  # two periods exactly: the second peak not seen whole
    days = np.arange(int(2.2 * 1440))  # a little over two days of minutes, a daily wave
    wave = detect(10 + 5 * np.sin(2 * np.pi * days / 1440) + rng.normal(0, 0.3, len(days)), 60, 1440)
    assert wave == 86400  # at the grid's limit (1440 points), taken there
    assert detect(5 + rng.normal(0, 1, 360), 15, 1440) is None
    assert detect(5 + 0.05 * t + rng.normal(0, 0.2, 360), 15, 1440) is None
    assert detect(np.cumsum(rng.normal(0, 1, 360)), 15, 1440) is None
    assert detect(np.full(360, 3.0), 15, 1440) is None
    assert detect(bursts[:9], 15, 1440) is None  # too short to hold two of anything


def test_the_shortest_period_wins_over_its_multiples_and_a_season_longer_than_the_grid_allows_is_not_taken() -> (
    None
):
    t = np.arange(400)
    y = np.where(t % 20 < 3, 8.0, 1.0)
    assert detect(y, 15, 1440) == 300
    assert detect(y, 15, 10) is None  # at most 10 points long


# --- the engine with them -----------------------------------------------------------------------------


def cfg(**kw: object) -> EngineConfig:
    base: dict[str, object] = dict(
        min_replicas=1, max_replicas=80, predictive=True, horizon=120, poll=15, up=Rules(0, 0, None, None, 15)
    )
    return EngineConfig(**{**base, **kw})  # type: ignore[arg-type]


def run(c: EngineConfig, demand: list[float]) -> tuple[list[Decision], History]:
    hist, current = History(), max(1, math.ceil(demand[0]))
    out: list[Decision] = []
    for t, y in enumerate(demand):
        reading = MetricReading("q", "Prometheus", value=y * 10, target_per_replica=10.0)
        d, hist = decide(c, Observation(current, (reading,)), hist, t * 15.0)
        out.append(d)
        current = d.desired
    return out, hist


def test_observe_only_scores_and_shows_the_forecast_but_never_acts_on_it() -> None:
    ramp = [2.0 + 0.5 * t for t in range(40)]
    watched, hist = run(cfg(observe_only=True), ramp)
    reactive, _ = run(cfg(predictive=False), ramp)
    assert [d.desired for d in watched] == [d.desired for d in reactive]  # it never acted
    last = watched[-1]
    assert last.outlook is not None and last.outlook.gate == "ObserveOnly"
    assert hist.skill is not None and hist.skill.trusted  # it would have been
    shown = outlook_status(last)
    assert shown["gate"] == "ObserveOnly" and shown["wouldScaleTo"] > last.desired
    assert shown["errorRatio"] < 1 and shown["seasonSource"] is None
    assert all(d.reason != "PredictiveScaleUp" for d in watched)


def test_a_season_found_in_the_history_rebuilds_the_forecaster_from_it_and_it_earns_trust_afresh() -> None:
    c = cfg(history_seconds=7200)
    t = np.arange(500)
    demand = [float(5 + (10 if k % 120 < 8 else 0)) for k in t]  # a burst each 30 minutes
    decisions, hist = run(c, demand)
    assert hist.season == 1800 and hist.fit is not None and hist.fit.m == 120 and hist.fit.hw is not None
    found = next(i for i, d in enumerate(decisions) if d.outlook and d.outlook.season_source == "Detected")
    # Looked for each DETECT_EVERY seconds: found at a look once a little over two periods were in the
    # history (the second repeat's peak seen whole).
    assert 2 * 1800 < found * 15 <= 2 * 1800 + 2 * DETECT_EVERY
    after = decisions[found].outlook
    assert after is not None and after.skill.count == 0 and after.gate == "Learning"  # a new model
    before = decisions[found - 1].outlook
    assert before is not None and before.skill.count > 0
    assert outlook_status(decisions[-1])["seasonSeconds"] == 1800


def test_a_configured_season_is_never_replaced_by_a_detected_one() -> None:
    c = cfg(season=600.0, history_seconds=7200)
    view = look_ahead(c, History(), 5.0, 10_000.0, 120.0)
    assert view.season == 600 and view.season_source == "Configured" and view.detected is None


def test_observe_only_runs_the_forecaster_even_with_enabled_false() -> None:
    from shoal.api.scaler import WorkerScalerSpec
    from shoal.scaling.engine import config

    base = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"},
        "maxReplicas": 10,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 60}}],
    }
    watching = config(WorkerScalerSpec.model_validate({**base, "predictive": {"observeOnly": True}}))
    assert watching.predictive and watching.observe_only
    off = config(WorkerScalerSpec.model_validate({**base, "predictive": {"enabled": False}}))
    assert not off.predictive
