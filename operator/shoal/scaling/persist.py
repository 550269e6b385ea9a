"""A scaler's demand history as it is kept between operator processes: the forecaster's grid series,
downsampled until it fits, in one ConfigMap the scaler owns (reconcile/scaler.py reads and writes
it). Pure: encode a Fit, decode into a fresh Fit by replaying the series once.

Bounded: at most MAX_POINTS points (pairs averaged, the step doubled, as often as needed) and at
most MAX_BYTES of text, so seven days of a one-second poll cost the same as seven days of a minute.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from shoal.scaling.forecast import Fit, extend, new_fit

FORMAT = 1
KEY = "history.json"
MAX_POINTS = 8192
MAX_BYTES = 100 * 1024


def _number(v: float) -> str:
    return f"{v:.4g}"


def encode(fit: Fit) -> str:
    """The series of `fit` as compact JSON (at most MAX_BYTES)."""
    values = np.array(fit.series, dtype=float)
    step = fit.step
    while True:
        while len(values) > MAX_POINTS:
            values, step = _halve(values), step * 2
        text = json.dumps(
            {
                "format": FORMAT,
                "step": step,
                "end": fit.t,  # wall time (UTC seconds) of the last point
                "values": ",".join(_number(v) for v in values),
            },
            separators=(",", ":"),
        )
        if len(text) <= MAX_BYTES or len(values) < 2:
            return text
        values, step = _halve(values), step * 2


def _halve(values: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Pairs averaged, newest point kept on the grid: the series at twice the step."""
    odd = len(values) % 2
    head = values[:odd]
    pairs = values[odd:].reshape(-1, 2).mean(axis=1)
    out: np.ndarray[Any, np.dtype[np.float64]] = np.concatenate([head, pairs])
    return out


def decode(text: str, step: float, season: float | None, history: float, now: float) -> Fit | None:
    """A Fit for (step, season, history) that has seen the stored series, resampled onto `step`; None
    if the text is not a history this version wrote, or all of it is older than `history`."""
    try:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            return None
        stored_step, end = float(data["step"]), float(data["end"])
        values = [float(v) for v in str(data["values"]).split(",") if v]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not values or stored_step <= 0 or not math.isfinite(end) or now - end > history:
        return None
    times = end - stored_step * np.arange(len(values) - 1, -1, -1)
    start = max(times[0], end - history)
    grid = np.arange(end, start - step / 2, -step)[::-1]
    series = np.interp(grid, times, np.array(values, dtype=float))
    return extend(new_fit(step, season, history), float(grid[0]), [float(v) for v in series])
