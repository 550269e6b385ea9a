"""Demand forecasting: Holt's linear trend, Holt-Winters additive seasonality when a period is set."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shoal.scaling.types import Forecast

_ALPHAS = (0.2, 0.4, 0.6, 0.8)
_BETAS = (0.05, 0.2, 0.4)
_GAMMAS = (0.1, 0.3)
MIN_SAMPLES = 6


def resample(samples: tuple[tuple[float, float], ...], step: float) -> npt.NDArray[np.float64]:
    """Samples on a regular grid of `step` seconds (linear interpolation), oldest first."""
    t = np.array([s[0] for s in samples], dtype=float)
    y = np.array([s[1] for s in samples], dtype=float)
    grid = np.arange(t[0], t[-1] + step / 2, step)
    out: npt.NDArray[np.float64] = np.interp(grid, t, y)
    return out


def holt(y: npt.NDArray[np.float64], alpha: float, beta: float, h: int) -> tuple[float, float]:
    """h-step forecast and the RMSE of one-step-ahead forecasts."""
    level, trend = y[0], y[1] - y[0]
    sq = 0.0
    for x in y[1:]:
        err = x - (level + trend)
        sq += err * err
        new_level = alpha * x + (1 - alpha) * (level + trend)
        trend = beta * (new_level - level) + (1 - beta) * trend
        level = new_level
    return float(level + h * trend), float(np.sqrt(sq / (len(y) - 1)))


def holt_winters(
    y: npt.NDArray[np.float64], m: int, alpha: float, beta: float, gamma: float, h: int
) -> tuple[float, float]:
    level = float(np.mean(y[:m]))
    trend = float((np.mean(y[m : 2 * m]) - np.mean(y[:m])) / m)
    season = list(y[:m] - level)
    sq, n = 0.0, 0
    for i in range(m, len(y)):
        s = season[i - m]
        err = y[i] - (level + trend + s)
        sq += err * err
        n += 1
        new_level = alpha * (y[i] - s) + (1 - alpha) * (level + trend)
        trend = beta * (new_level - level) + (1 - beta) * trend
        season.append(gamma * (y[i] - new_level) + (1 - gamma) * s)
        level = new_level
    idx = len(y) - m + ((h - 1) % m)
    return float(level + h * trend + season[idx]), float(np.sqrt(sq / max(n, 1)))


def forecast(
    samples: tuple[tuple[float, float], ...], step: float, horizon: float, season: float | None = None
) -> Forecast | None:
    """Fit the smoothing constants on the history (least one-step error) and forecast `horizon` ahead."""
    if len(samples) < MIN_SAMPLES or samples[-1][0] - samples[0][0] < step * (MIN_SAMPLES - 1):
        return None
    y = resample(samples, step)
    h = max(1, round(horizon / step))
    m = round(season / step) if season else 0
    best: tuple[float, float] | None = None
    if m >= 2 and len(y) >= 2 * m + 2:
        for a in _ALPHAS:
            for b in _BETAS:
                for g in _GAMMAS:
                    f = holt_winters(y, m, a, b, g, h)
                    if best is None or f[1] < best[1]:
                        best = f
    else:
        for a in _ALPHAS:
            for b in _BETAS:
                f = holt(y, a, b, h)
                if best is None or f[1] < best[1]:
                    best = f
    assert best is not None
    demand = max(0.0, best[0])
    return Forecast(
        demand=demand,
        replicas=int(np.ceil(round(demand, 6))),
        horizon_seconds=h * step,
        error=best[1],
        samples=len(y),
    )
