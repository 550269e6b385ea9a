"""A scaler's demand history through its ConfigMap form: a week of a daily pattern encoded, bounded,
decoded by a later process, and forecasting the next day as the process that learned it would."""

from __future__ import annotations

import json
import math

import pytest

from shoal.scaling.forecast import Fit, grid_step, new_fit, observe, predict
from shoal.scaling.persist import MAX_BYTES, MAX_POINTS, decode, encode

DAY = 86400.0
WEEK = 7 * DAY


def daily(t: float) -> float:
    """Replicas' worth of demand: a night low of 2, a midday peak of 14."""
    return 8.0 - 6.0 * math.cos(2 * math.pi * t / DAY)


def learn(poll: float, season: float | None, history: float, until: float) -> Fit:
    fit = new_fit(grid_step(poll, season), season, history)
    t = 0.0
    while t <= until:
        fit = observe(fit, t, daily(t))
        t += poll
    return fit


@pytest.fixture(scope="module")
def week() -> Fit:
    return learn(60.0, DAY, WEEK, WEEK)


def test_a_week_of_a_daily_pattern_fits_in_the_bound_and_forecasts_the_same_after_a_restore(
    week: Fit,
) -> None:
    text = encode(week)
    assert len(text) <= MAX_BYTES and len(json.loads(text)["values"].split(",")) <= MAX_POINTS
    later = week.t + 120  # the next process starts two minutes after the last save
    restored = decode(text, week.step, DAY, WEEK, later)
    assert restored is not None and restored.hw is not None and restored.n >= 2 * restored.m
    for horizon in (3600.0, 6 * 3600.0, 12 * 3600.0):
        want = daily(week.t + horizon)
        kept, back = predict(week, horizon), predict(restored, horizon)
        assert kept is not None and back is not None and back.model == "HoltWinters"
        assert abs(back.demand - want) < 0.5, (horizon, back.demand, want)
        assert abs(back.demand - kept.demand) < 0.2


def test_a_fresh_process_without_the_history_cannot_see_the_day() -> None:
    fresh = learn(60.0, DAY, WEEK, 3600.0)  # an hour since a start from nothing
    f = predict(fresh, 12 * 3600.0)
    assert f is not None and f.model == "Holt"  # no season yet: a trend, not the day


def test_history_too_dense_for_the_bound_is_downsampled_and_resampled_back() -> None:
    fit = learn(30.0, None, WEEK, WEEK)  # 20,161 points at 30 s: more than MAX_POINTS
    text = encode(fit)
    stored = json.loads(text)
    assert stored["step"] == 120.0 and len(stored["values"].split(",")) <= MAX_POINTS
    assert len(text) <= MAX_BYTES
    back = decode(text, 30.0, None, WEEK, fit.t + 30)
    assert back is not None and back.step == 30.0
    assert abs(back.series[-1] - fit.series[-1]) < 0.1  # the newest point survives the averaging


def test_a_history_older_than_its_window_or_not_ours_is_not_restored(week: Fit) -> None:
    text = encode(week)
    assert decode(text, week.step, DAY, WEEK, week.t + WEEK + 1) is None  # all of it expired
    assert decode("{not json", week.step, DAY, WEEK, week.t) is None
    assert decode(json.dumps({"format": 99, "step": 60, "end": 0, "values": "1"}), 60, None, 600, 0) is None
    assert decode(json.dumps({"format": 1, "step": 60, "end": 0}), 60, None, 600, 0) is None


def test_a_restore_onto_a_shorter_history_keeps_only_its_window(week: Fit) -> None:
    back = decode(encode(week), week.step, None, 6 * 3600.0, week.t)
    assert back is not None and back.hw is None and back.m == 0
    assert len(back.series) == back.keep and back.n == round(6 * 3600.0 / week.step) + 1
