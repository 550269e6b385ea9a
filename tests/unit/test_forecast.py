from __future__ import annotations

import math

import numpy as np

from shoal.scaling.engine import decide
from shoal.scaling.forecast import Fit, forecast, new_fit, observe
from shoal.scaling.schedule import floor_at, valid_cron
from shoal.scaling.types import EngineConfig, History, MetricReading, Observation, Rules


def learned(samples: tuple[tuple[float, float], ...], step: float = 15, history: float = 3600) -> Fit:
    fit = new_fit(step, None, history)
    for t, y in samples:
        fit = observe(fit, t, y)
    return fit


def test_holt_extrapolates_a_linear_ramp() -> None:
    samples = tuple((t * 15.0, 2.0 + 0.1 * t) for t in range(40))
    f = forecast(samples, 15, 150)
    assert f is not None
    assert abs(f.demand - (2.0 + 0.1 * 49)) < 0.05  # 10 steps ahead of the last sample (t=39)
    assert f.error is not None and f.error < 0.05


def test_holt_winters_follows_a_seasonal_pattern() -> None:
    period = 20
    samples = tuple((t * 15.0, 10 + 5 * math.sin(2 * math.pi * t / period)) for t in range(6 * period))
    f = forecast(samples, 15, 15 * 5, season=15.0 * period)
    want = 10 + 5 * math.sin(2 * math.pi * (6 * period - 1 + 5) / period)
    assert f is not None and abs(f.demand - want) < 0.8


def test_too_little_history_gives_no_forecast() -> None:
    assert forecast(((0.0, 1.0), (15.0, 2.0)), 15, 60) is None


def test_predictive_scales_ahead_of_a_ramp_once_its_forecasts_have_beaten_the_reactive_answer() -> None:
    c = EngineConfig(
        min_replicas=1, max_replicas=80, predictive=True, horizon=120, poll=15, up=Rules(0, 0, None, None, 15)
    )
    hist, current, reasons = History(), 2, []
    for t in range(40):  # demand rising 2 replicas a minute, the size following each decision
        reading = MetricReading("q", "Prometheus", value=(2.0 + 0.5 * t) * 10, target_per_replica=10.0)
        d, hist = decide(c, Observation(current, (reading,)), hist, t * 15.0)
        reasons.append((d.reason, d.outlook.gate if d.outlook else None))
        if d.forecast_wants is not None and d.reason != "PredictiveScaleUp":
            assert "the forecast asks for" in d.message, d.message
        current = d.desired
    # Until eight forecasts were scored at their horizon (120 s = 8 polls after the first), the reactive
    # answer alone; then the forecast, which on a ramp beats "demand stays as it is", leads.
    first_trusted = next(i for i, (_, gate) in enumerate(reasons) if gate == "Trusted")
    assert first_trusted >= 6 + 8
    assert all(reason != "PredictiveScaleUp" for reason, _ in reasons[:first_trusted])
    assert reasons[-1] == ("PredictiveScaleUp", "Trusted")
    assert d.forecast is not None and np.isclose(d.forecast.horizon_seconds, 120)
    assert d.desired > 2.0 + 0.5 * 39  # ahead of the demand it sees
    assert hist.skill is not None and hist.skill.ratio is not None and hist.skill.ratio < 0.5


def test_cron_windows() -> None:
    assert valid_cron("0 9 * * 1-5") and not valid_cron("61 * * * *")
    monday_0930 = 1_799_659_800.0  # 2027-01-11T09:30:00Z
    assert floor_at((("0 9 * * 1-5", 3600.0, 4),), monday_0930) == 4
    assert floor_at((("0 9 * * 1-5", 1200.0, 4),), monday_0930) is None


def test_predictive_ignores_noise_within_the_tolerance_band() -> None:
    c = EngineConfig(
        min_replicas=1, max_replicas=50, predictive=True, horizon=120, poll=15, up=Rules(0, 0, None, None, 15)
    )
    rng = np.random.default_rng(3)
    hist = History(fit=learned(tuple((t * 15.0, 6.0 + float(rng.normal(0, 0.3))) for t in range(40))))
    reading = MetricReading("q", "Prometheus", value=6.0 * 10, target_per_replica=10.0)
    d, _ = decide(c, Observation(6, (reading,)), hist, 40 * 15.0)
    assert d.reason != "PredictiveScaleUp" and d.desired == 6
