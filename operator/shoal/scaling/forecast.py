"""Demand forecasting, online: Holt's linear trend, and Holt-Winters additive seasonality once two
periods of history exist, each run for a grid of smoothing constants at once (one numpy column per
constant set); the set with the least recent one-step error forecasts.

Online because a scaler evaluates every poll: a new point costs one update of every candidate
(tens of microseconds), never a refit over the whole history (the grid search over seven days of
samples this replaced took about a second). A restart replays the persisted series once
(scaling/persist.py). statsmodels' ExponentialSmoothing refits from scratch on every call and would
be a heavy dependency for the operator.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from shoal.scaling.types import Forecast

Array = npt.NDArray[np.float64]
# (alpha, beta) for Holt, (alpha, beta, gamma) for Holt-Winters.
_HOLT = np.array(list(itertools.product((0.2, 0.4, 0.6, 0.8), (0.05, 0.2, 0.4))), dtype=float).T
_HW = np.array(list(itertools.product((0.2, 0.4, 0.6, 0.8), (0.05, 0.2, 0.4), (0.1, 0.3))), dtype=float).T
MIN_SAMPLES = 6
MAX_SEASON_STEPS = 1440  # a season is kept no finer than 1/1440 of its period (a minute a day)


def grid_step(poll: float, season: float | None) -> float:
    """Seconds between the forecaster's points: the poll, or coarser for a long season."""
    return max(poll, season / MAX_SEASON_STEPS) if season else poll


@dataclass(frozen=True)
class Fit:
    """Every candidate's state after the points seen so far, on a grid of `step` seconds. Frozen:
    each update returns a new Fit (the engine is pure); the arrays are never changed in place."""

    step: float
    m: int  # season length in steps; 0: no season
    history: float  # seconds: the errors fade over it, and a gap longer than it starts again
    t: float = -math.inf  # time of the last point
    y: float = 0.0  # its value
    n: int = 0  # points seen
    first: tuple[float, ...] = ()  # the points before a model can start (2 for Holt, 2m for HW)
    holt: Array | None = field(default=None, compare=False)  # rows: level, trend, error, weight
    hw: Array | None = field(default=None, compare=False)  # the same rows, then m season rows
    pos: int = 0  # the season row of the next point
    series: tuple[float, ...] = ()  # the last `history` of points, what is persisted

    @property
    def keep(self) -> int:
        return max(2, math.ceil(self.history / self.step) + 1)

    @property
    def decay(self) -> float:
        return math.exp(-self.step / max(self.history, self.step))


def new_fit(step: float, season: float | None, history: float) -> Fit:
    m = round(season / step) if season else 0
    return Fit(step=step, m=m if m >= 2 else 0, history=history)


class _Run:
    """A Fit being advanced: its arrays copied once, then updated in place point by point."""

    def __init__(self, fit: Fit) -> None:
        self.fit = fit
        self.n, self.first, self.pos = fit.n, list(fit.first), fit.pos
        self.series = list(fit.series)
        self.holt = None if fit.holt is None else fit.holt.copy()
        self.hw = None if fit.hw is None else fit.hw.copy()
        self.decay = fit.decay

    def _smooth(self, st: Array, y: float, a: Array, b: Array, s: Array | float) -> None:
        level, trend = st[0].copy(), st[1]
        err = y - (level + trend + s)
        st[0] = a * (y - s) + (1 - a) * (level + trend)
        st[1] = b * (st[0] - level) + (1 - b) * trend
        st[2] = self.decay * st[2] + err * err
        st[3] = self.decay * st[3] + 1

    def add(self, y: float) -> None:
        m = self.fit.m
        self.n += 1
        self.series.append(y)
        if self.hw is None and len(self.first) < max(2, 2 * m):
            self.first.append(y)
        if self.holt is None and self.n == 2:  # level y0, trend y1 - y0
            y0, k = self.first[0], _HOLT.shape[1]
            self.holt = np.stack([np.full(k, y0), np.full(k, y - y0), np.zeros(k), np.zeros(k)])
        if self.holt is not None:
            self._smooth(self.holt, y, _HOLT[0], _HOLT[1], 0.0)
        if self.hw is not None:
            self._season_step(self.hw, y, m)
        elif m and self.n == 2 * m:
            self._start_season(m)

    def _start_season(self, m: int) -> None:
        """Holt-Winters from its first two periods (level: the first period's mean, trend: the
        change of the mean per step, season: the first period's deviations), then the second
        period replayed through it."""
        y = np.array(self.first, dtype=float)
        level = float(np.mean(y[:m]))
        self.hw = np.zeros((4 + m, _HW.shape[1]))
        self.hw[0], self.hw[1] = level, (np.mean(y[m:]) - level) / m
        self.hw[4:] = (y[:m] - level)[:, None]
        self.pos, self.first = 0, []
        for x in y[m:]:  # Holt has seen them already; only the new model takes them in
            self._season_step(self.hw, float(x), m)

    def _season_step(self, hw: Array, y: float, m: int) -> None:
        """One Holt-Winters point: level and trend from the season's row, then that row."""
        row = 4 + self.pos
        season = hw[row].copy()
        self._smooth(hw, y, _HW[0], _HW[1], season)
        hw[row] = _HW[2] * (y - hw[0]) + (1 - _HW[2]) * season
        self.pos = (self.pos + 1) % m

    def done(self, t: float, y: float) -> Fit:
        series = tuple(self.series[-self.fit.keep :])
        return replace(
            self.fit,
            t=t,
            y=y,
            n=self.n,
            first=tuple(self.first),
            holt=self.holt,
            hw=self.hw,
            pos=self.pos,
            series=series,
        )


def observe(fit: Fit, t: float, y: float) -> Fit:
    """`fit` after a sample `y` at time `t`: the grid points since the last one, interpolated from
    it; a sample within half a step of the last point is not a new point; a gap longer than the
    history starts again from `t`."""
    if fit.n and t - fit.t > fit.history:
        fit = new_fit(fit.step, fit.m * fit.step or None, fit.history)
    if fit.n == 0:
        run = _Run(fit)
        run.add(y)
        return run.done(t, y)
    steps = round((t - fit.t) / fit.step)
    if steps < 1:
        return fit
    run = _Run(fit)
    for i in range(1, steps + 1):
        run.add(fit.y + (y - fit.y) * i / steps)
    return run.done(fit.t + steps * fit.step, y)


def extend(fit: Fit, start: float, values: list[float]) -> Fit:
    """`fit` after grid points `values` from `start` on (a restored series): one copy, then in place."""
    if not values:
        return fit
    run = _Run(fit)
    for v in values:
        run.add(v)
    return run.done(start + (len(values) - 1) * fit.step, values[-1])


def _best(st: Array) -> int:
    return int(np.argmin(st[2] / np.maximum(st[3], 1e-12)))


def predict(fit: Fit, horizon: float) -> Forecast | None:
    """The best candidate's forecast `horizon` seconds after the last point (None: too little history)."""
    if fit.n < MIN_SAMPLES or fit.holt is None:
        return None
    h = max(1, round(horizon / fit.step))
    st = fit.hw if fit.hw is not None else fit.holt
    k = _best(st)
    value = st[0, k] + h * st[1, k]
    if fit.hw is not None:
        value += st[4 + (fit.pos + h - 1) % fit.m, k]
    demand = max(0.0, float(value))
    return Forecast(
        demand=demand,
        replicas=int(np.ceil(round(demand, 6))),
        horizon_seconds=h * fit.step,
        error=float(np.sqrt(st[2, k] / max(st[3, k], 1e-12))),
        samples=fit.n,
        model="HoltWinters" if fit.hw is not None else "Holt",
        step_seconds=fit.step,
    )


def forecast(
    samples: tuple[tuple[float, float], ...], step: float, horizon: float, season: float | None = None
) -> Forecast | None:
    """The forecast after `samples` (time, demand), oldest first, all of them fitted."""
    if not samples:
        return None
    fit = new_fit(step, season, samples[-1][0] - samples[0][0] + step)
    for t, y in samples:
        fit = observe(fit, t, y)
    return predict(fit, horizon)


def describe(fit: Fit) -> dict[str, Any]:
    """For logs and tests: which model and constants forecast now."""
    st, names = (fit.hw, ("alpha", "beta", "gamma")) if fit.hw is not None else (fit.holt, ("alpha", "beta"))
    if st is None:
        return {"model": None, "points": fit.n}
    grid = _HW if fit.hw is not None else _HOLT
    k = _best(st)
    return {"model": "HoltWinters" if fit.hw is not None else "Holt", "points": fit.n} | {
        name: float(grid[i, k]) for i, name in enumerate(names)
    }
