"""A predictive scaler's look ahead, each evaluation (pure): the season it works with, the forecast,
and whether the forecast may raise the size now.

The recipe of the systems that scale on forecasts in production (AWS predictive scaling, Alibaba's
AHPA): the forecast only ever raises the reactive answer (never scales in); it has its say only while
its recent error at the horizon beats the reactive assumption (scaling/skill.py); a season is found
in the history when none is configured (scaling/seasons.py); and `observeOnly` runs all of it, showing
in status what it would have done, without acting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from shoal.scaling.forecast import MAX_SEASON_STEPS, Fit, extend, grid_step, new_fit, observe, predict
from shoal.scaling.seasons import detect
from shoal.scaling.skill import MIN_SCORED, Skill, file, score
from shoal.scaling.types import EngineConfig, Forecast, History

DETECT_EVERY = 900.0  # seconds between looks for a season (a week of points: a few ms)

# Why the forecast does or does not have its say (status.forecast.gate).
TRUSTED = "Trusted"
LEARNING = "Learning"  # fewer than skill.MIN_SCORED forecasts scored yet
OUTDONE = "LessAccurateThanReactive"
OBSERVING = "ObserveOnly"


@dataclass(frozen=True)
class Outlook:
    forecast: Forecast | None
    fit: Fit
    skill: Skill
    season: float | None  # seconds, configured or detected
    season_source: str | None  # Configured | Detected
    detected: float | None  # what History keeps: the detected season
    checked: float  # when a season was last looked for
    gate: str

    @property
    def may_raise(self) -> bool:
        return self.gate == TRUSTED

    def remembered(self, history: History) -> History:
        """`history` with what the next evaluation needs of this one: the fit, the scores, the season."""
        return replace(
            history, fit=self.fit, skill=self.skill, season=self.detected, season_checked=self.checked
        )


def fit_for(cfg: EngineConfig, fit: Fit | None, season: float | None) -> Fit:
    """The forecaster for `cfg` and `season`: `fit` if made for the same grid, season and history; else
    a new one that has replayed `fit`'s series when that lies on the same grid (a season found or
    dropped keeps what was learned), or a new, empty one."""
    want = new_fit(grid_step(cfg.poll, season), season, cfg.history_seconds)
    if fit is None:
        return want
    if (fit.step, fit.m, fit.history) == (want.step, want.m, want.history):
        return fit
    if fit.step == want.step and fit.series:
        return extend(want, fit.t - (len(fit.series) - 1) * fit.step, list(fit.series))
    return want


def _season(cfg: EngineConfig, history: History, wall: float) -> tuple[float | None, float]:
    """The detected season (None: none) and when it was looked for."""
    fit = history.fit
    if cfg.season is not None or fit is None or wall - history.season_checked < DETECT_EVERY:
        return history.season, history.season_checked
    if fit.step != grid_step(cfg.poll, None):
        return history.season, history.season_checked  # a series on another grid: wait for this one's
    return detect(fit.series, fit.step, MAX_SEASON_STEPS), wall


def look_ahead(
    cfg: EngineConfig, history: History, demand: float | None, wall: float, lead: float
) -> Outlook:
    detected, checked = _season(cfg, history, wall)
    season = cfg.season or detected
    skill = history.skill or Skill()
    if detected != history.season:
        skill = Skill()  # another model: it earns its say afresh
    fit = fit_for(cfg, history.fit, season)
    if demand is not None:
        fit = observe(fit, wall, float(demand))  # wall time: the fit outlives this process
    fc = predict(fit, lead)
    if demand is not None:
        skill = score(skill, wall, float(demand), cfg.history_seconds)
        if fc is not None:
            skill = file(skill, wall, fc.horizon_seconds, fc.demand, float(demand))
    if cfg.observe_only:
        gate = OBSERVING
    elif skill.trusted:
        gate = TRUSTED
    else:
        gate = LEARNING if skill.count < MIN_SCORED else OUTDONE
    return Outlook(
        forecast=fc,
        fit=fit,
        skill=skill,
        season=season,
        season_source="Configured" if cfg.season else "Detected" if detected else None,
        detected=detected,
        checked=checked,
        gate=gate,
    )


def describe_gate(outlook: Outlook) -> str:
    """For the decision's message when the forecast wanted more than it was given."""
    ratio = outlook.skill.ratio
    if outlook.gate == OBSERVING:
        return "observe only"
    if outlook.gate == LEARNING:
        return f"not used yet: {outlook.skill.count} of its first {MIN_SCORED} forecasts scored"
    shown = "n/a" if ratio is None or not math.isfinite(ratio) else f"{ratio:.2f}"
    return f"not used: its recent error is {shown}x the reactive one's"
