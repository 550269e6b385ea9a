"""Whether a scaler's forecast has earned its say: its recent error at the horizon against persistence.

A reactive scaler sizes for the demand it sees now, which is the forecast "demand stays as it is"
(persistence). A forecast is worth acting on only while, looking `horizon` ahead, it has recently
been closer to what came than persistence was: the ratio of their decayed mean absolute errors (the
MASE of forecasting practice) below 1. No threshold to tune: above 1 the reactive answer was simply
better lately, and the scaler goes by it alone (AWS predictive scaling and Alibaba's AHPA likewise
fall back while the forecast misses). Only the forecast's upward say is gated; it never scales in.

Each evaluation files its forecast for `now + horizon` with the demand of the moment; the first
evaluation at or after that time scores it against the demand it sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MIN_SCORED = 8  # forecasts scored before any is trusted: a fresh forecaster learns first
MAX_PENDING = 2048


@dataclass(frozen=True)
class Skill:
    pending: tuple[tuple[float, float, float], ...] = ()  # (due, forecast, demand when it was made)
    forecast_error: float = 0.0  # decayed sums of absolute errors
    persistence_error: float = 0.0
    count: int = 0  # forecasts scored, ever (for MIN_SCORED)
    at: float = 0.0  # when the sums were last brought up to date

    @property
    def ratio(self) -> float | None:
        """Forecast error / persistence error; None until scored or while persistence was exact."""
        if self.count == 0 or self.persistence_error <= 0:
            return None
        return self.forecast_error / self.persistence_error

    @property
    def trusted(self) -> bool:
        ratio = self.ratio
        return self.count >= MIN_SCORED and ratio is not None and ratio < 1.0


def score(skill: Skill, now: float, demand: float, memory: float) -> Skill:
    """`skill` after scoring the forecasts due by `now` against `demand`; older scores fade over
    `memory` seconds (the forecaster's own history)."""
    due = [p for p in skill.pending if p[0] <= now]
    if not due:
        return skill
    fade = math.exp(-max(0.0, now - skill.at) / memory) if memory > 0 and skill.count else 1.0
    return replace(
        skill,
        pending=tuple(p for p in skill.pending if p[0] > now),
        forecast_error=fade * skill.forecast_error + sum(abs(f - demand) for _, f, _ in due),
        persistence_error=fade * skill.persistence_error + sum(abs(then - demand) for _, _, then in due),
        count=skill.count + len(due),
        at=now,
    )


def file(skill: Skill, now: float, horizon: float, predicted: float, demand: float) -> Skill:
    """`skill` with the forecast made `now` for `now + horizon` to be scored when that time comes."""
    pending = (*skill.pending, (now + horizon, predicted, demand))[-MAX_PENDING:]
    return replace(skill, pending=pending)
