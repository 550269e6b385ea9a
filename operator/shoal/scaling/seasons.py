"""A season found in the demand history itself (autocorrelation), for predictive scalers that name none.

The series (less its mean) is correlated with itself at every lag. Each run of lags whose
autocorrelation is above the white-noise band (1.96/sqrt(n), the usual 95 % bound) and at least
MIN_STRENGTH is a candidate at its highest lag, if it rises at least MIN_STRENGTH above the lowest
lag before it: a pattern that repeats dips between its repeats, while a drift or a random walk
(whose autocorrelation is high at every short lag) only decays. The first run (lag 1 on) is the
series' own smoothness, never a season. A strong trend can hide a season this way; Holt's trend
still forecasts it, and the skill gate judges whatever is found.
Among such peaks the shortest lag within PEAK_SHARE of the strongest wins, so a multiple of the true
period (which correlates as well) is not taken for it. At least two periods must be in the history,
as Holt-Winters needs two to start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

MIN_STRENGTH = 0.3
PEAK_SHARE = 0.9
MIN_LAG = 4  # a season of fewer points is noise to Holt-Winters
EDGE = 0.01


def autocorrelation(x: Array, max_lag: int) -> Array:
    """Lags 0..max_lag (< len(x)) of the sample autocorrelation, by FFT (n log n: a week of points in a few ms)."""
    x = x - x.mean()
    n = len(x)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x, size)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), size)[: max_lag + 1]
    # Each lag's mean over the pairs it has (n - k of them), so a far lag is not shrunk towards 0
    # just for having fewer: a season of half the history peaks where it is.
    acov = acov / (n - np.arange(max_lag + 1))
    out: Array = acov / acov[0] if acov[0] > 0 else np.zeros(max_lag + 1)
    return out


def detect(series: Sequence[float] | Array, step: float, max_steps: int) -> float | None:
    """The season of `series` (points `step` seconds apart) in seconds, or None; at most `max_steps`
    points long (the forecaster's grid keeps a season no longer)."""
    y = np.asarray(series, dtype=float)
    n = len(y)
    # A little past the longest season allowed: a peak there is seen whole (the estimate may put the
    # peak of a season of exactly max_steps a lag beyond it; it is taken at max_steps).
    reach = min(n // 2, math.ceil(max_steps * (1 + EDGE)))
    if reach < MIN_LAG + 1 or np.ptp(y) <= 1e-12:
        return None
    acf = autocorrelation(y, reach)
    band = max(MIN_STRENGTH, 1.96 / np.sqrt(n))
    peaks: list[int] = []
    k = 1
    while k <= reach:  # each run of lags above the band, by its highest lag
        if acf[k] < band:
            k += 1
            continue
        end = k
        while end + 1 <= reach and acf[end + 1] >= band:
            end += 1
        top = k + int(np.argmax(acf[k : end + 1]))
        # A repeat dips between its repeats; a drift or a random walk (high at every short lag) only decays.
        seen_whole = end < reach or top < end  # a run cut off by `reach` while still rising: not yet
        if k > 1 and top >= MIN_LAG and seen_whole and acf[top] - acf[1:k].min() >= MIN_STRENGTH:
            peaks.append(top)
        k = end + 1
    if not peaks:
        return None
    strongest = max(acf[p] for p in peaks)
    lag = min(p for p in peaks if acf[p] >= PEAK_SHARE * strongest)
    if lag > max_steps * (1 + EDGE) or (n - lag) < lag:
        return None
    return min(lag, max_steps) * step
